"""Metric kinds: one scorer per kind behind one interface, and the column names and metadata
they write (the names results, manifests and reports rely on)."""

import pytest
import torch
from torch import nn

from aubench.metrics import (
    KINDS,
    METRICS,
    SCORERS,
    BatchContext,
    LayerMaps,
    PxAP,
    au_occlusion,
    cascading_randomisation,
    deletion_auc,
    derived_column,
    describe_column,
    per_au_energy,
    randomisable_layers,
    score_maps,
    scorers,
)


def test_every_kind_has_a_scorer():
    assert set(SCORERS) == set(KINDS)


def test_columns_describe_themselves():
    per_au = describe_column("au_energy:AU12")
    assert (per_au.metric, per_au.family, per_au.label, per_au.order) == (
        "per_au_energy",
        "au_energy",
        "AU12",
        12,
    )
    assert per_au.kind == "per_au" and per_au.derived
    assert per_au.metadata() == {"higher_is_better": True, "range": [0.0, 1.0], "category": "mass"}
    sanity = describe_column("sanity_spearman:layer4.1")
    assert (sanity.metric, sanity.label, sanity.kind) == (
        "cascading_randomisation",
        "layer4.1",
        "sanity",
    )
    assert sanity.metadata() == {
        "higher_is_better": False,
        "range": [-1.0, 1.0],
        "category": "sanity",
    }
    assert describe_column("accuracy").metadata() == {
        "higher_is_better": True,
        "range": [0.0, 100.0],
        "category": "classification",
    }
    cosine = describe_column("cosine")
    assert not cosine.derived and cosine.label == "cosine" and cosine.kind == "map"
    assert derived_column("cosine") is None and derived_column("cosine:x") is None
    assert derived_column("au_energy:AU6").name == "au_energy:AU6"
    with pytest.raises(KeyError, match="'nope'"):
        describe_column("nope")


def test_au_occlusion_is_scored_per_model_not_per_map():
    assert METRICS["au_occlusion"].scope == "model"
    assert {m.scope for n, m in METRICS.items() if n != "au_occlusion"} == {"map"}


@pytest.fixture
def batch():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)
    ).eval()
    images = torch.randn(4, 3, 8, 8)
    heatmaps = torch.rand(4, 8, 8)
    regions = torch.rand(4, 2, 8, 8)

    def au_regions(size):
        assert size == (8, 8)
        return regions, (6, 12)

    valid = torch.tensor([True, True, False, True])
    return BatchContext(model, images, torch.tensor([0, 1, 2, 1]), heatmaps, valid, au_regions)


def _maps_of(model, images, targets):
    return model[0](images).mean(1)


def test_one_interface_scores_every_kind(batch):
    names = ["cosine", "pxap", "au_occlusion", "deletion_auc"]
    names += ["cascading_randomisation", "per_au_energy", "iou"]
    made = scorers(names)
    assert [type(s).__name__ for s in made] == [
        "MapScores",
        "ModelScores",
        "PerAUScores",
        "SanityScores",
        "DatasetScores",
    ]
    maps = torch.rand(4, 8, 8)
    layer = LayerMaps(maps, _maps_of)
    columns = {}
    for scorer in made:
        columns |= scorer.update(batch, layer)
    depths = list(reversed(randomisable_layers(batch.model)))
    assert list(columns) == [
        "cosine",
        "iou",
        "deletion_auc",
        "au_energy:AU6",
        "au_energy:AU12",
        *(f"sanity_spearman:{d}" for d in depths),
    ]
    expected = score_maps(maps, batch.heatmaps, batch.valid, ["cosine", "iou"])
    torch.testing.assert_close(columns["cosine"], expected["cosine"], equal_nan=True)
    deletion = deletion_auc(batch.model, batch.images, maps, batch.targets, batch.valid)
    torch.testing.assert_close(columns["deletion_auc"], deletion, equal_nan=True)
    regions, _ = batch.au_regions((8, 8))
    shares = per_au_energy(maps, regions, batch.valid)
    torch.testing.assert_close(columns["au_energy:AU12"], shares[:, 1], equal_nan=True)
    sanity = cascading_randomisation(
        batch.model, batch.images, batch.targets, _maps_of, batch.valid
    )
    torch.testing.assert_close(
        columns[f"sanity_spearman:{depths[-1]}"], sanity.similarity[-1], equal_nan=True
    )
    reference = PxAP()
    reference.update(maps, batch.heatmaps, batch.valid)
    assert made[-1].compute() == {"pxap": float(reference.compute())}
    assert all(scorer.compute() == {} for scorer in made[:-1])


def test_model_scope_scores_the_heatmaps_once_and_controls_skip_sanity(batch):
    (once,) = scorers(["cosine", "au_occlusion", "cascading_randomisation"], "model")
    got = once.update(batch, None)
    expected = au_occlusion(batch.model, batch.images, batch.heatmaps, batch.targets, batch.valid)
    assert list(got) == ["au_occlusion"]
    torch.testing.assert_close(got["au_occlusion"], expected, equal_nan=True)
    (sanity,) = scorers(["cascading_randomisation"])
    assert sanity.update(batch, LayerMaps(torch.rand(4, 8, 8), _maps_of, control=True)) == {}
    with pytest.raises(ValueError, match="no model scope"):
        sanity.update(batch, None)
