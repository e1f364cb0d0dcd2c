"""Registry, metadata, input checks, dtypes, chunking and the shared-work family path."""

import math

import numpy as np
import pytest
import torch

from aubench import metrics
from aubench.metrics import METRICS, MapBatch, get_metric, score_maps
from aubench.metrics import base as metrics_base
from aubench.metrics._ranking import average_ranks, twice_mean_ranks
from tests.metrics_reference import nasty_batch

MAP_METRICS = [name for name, m in METRICS.items() if m.kind == "map"]


@pytest.fixture(scope="module")
def nasty():
    maps, heat, valid = nasty_batch(np.random.default_rng(0), 6)
    return torch.tensor(maps), torch.tensor(heat), torch.tensor(valid)


# --- registry and metadata --------------------------------------------------------------------


def test_every_metric_declares_its_metadata():
    expected = {
        "cosine", "pearson", "spearman", "iou", "iou_otsu", "iou_best", "dice", "dice_otsu",
        "dice_best", "pixel_ap", "pxap", "pointing_game", "energy_pointing_game",
        "relevance_mass_accuracy", "relevance_rank_accuracy", "top_k_intersection", "roc_auc",
        "sim", "kl", "nss", "per_au_energy", "deletion_auc", "insertion_auc", "average_drop",
        "increase_in_confidence", "au_occlusion", "cascading_randomisation", "cue_energy_share",
        "au_agreement", "au_top1", "dose_slope", "dose_corr", "mirror_equivariance",
        "lateral_share",
    }  # fmt: skip
    assert set(METRICS) == expected
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.category in metrics.CATEGORIES and metric.kind in metrics.KINDS
        low, high = metric.range
        assert low < high
        assert metric.arrow == ("↑" if metric.higher_is_better else "↓")
    lower_is_better = {n for n, m in METRICS.items() if not m.higher_is_better}
    assert lower_is_better == {
        "kl", "deletion_auc", "average_drop", "cascading_randomisation", "cue_energy_share"
    }  # fmt: skip


def test_variants_bind_their_options(nasty):
    maps, heat, valid = nasty
    otsu = get_metric("iou_otsu")
    assert otsu.fn is metrics.iou and otsu.options == {"threshold": "otsu"}
    torch.testing.assert_close(
        otsu(maps, heat, valid), metrics.iou(maps, heat, valid, threshold="otsu"), equal_nan=True
    )


def test_unknown_metric_suggests_near_matches():
    with pytest.raises(KeyError, match="did you mean 'cosine'"):
        get_metric("cosin")
    with pytest.raises(KeyError, match="unknown metric 'zzz'"):
        get_metric("zzz")


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="already registered"):
        metrics.register("cosine", higher_is_better=True, range=(0, 1), category="correlation")(
            lambda: None
        )


def test_metadata_rejects_unknown_category():
    with pytest.raises(ValueError, match="category must be one of"):
        metrics.Metric("x", lambda: None, True, (0.0, 1.0), "vibes")


# --- the family path ----------------------------------------------------------------------------


def test_score_maps_equals_each_metric_alone(nasty):
    maps, heat, valid = nasty
    together = score_maps(maps, heat, valid)
    assert list(together) == MAP_METRICS
    for name in MAP_METRICS:
        alone = get_metric(name)(maps, heat, valid)
        torch.testing.assert_close(together[name], alone, equal_nan=True, atol=0, rtol=0)


@pytest.mark.parametrize("stack_elements", [1 << 24, 4000])  # one MapBatch; 2 + 2 + 1
def test_stacked_producers_score_exactly_as_each_alone(nasty, monkeypatch, stack_elements):
    maps, heat, valid = nasty
    flipped = maps.flip(-1).contiguous()
    producers = torch.stack([maps, maps.square(), flipped, torch.zeros_like(maps), maps.round()])
    monkeypatch.setattr(metrics_base, "STACK_ELEMENTS", stack_elements)
    together = score_maps(producers, heat, valid)
    for name in MAP_METRICS:
        assert together[name].shape == (5, len(maps)), name
        for p, alone_maps in enumerate(producers):
            alone = get_metric(name)(alone_maps, heat, valid)
            torch.testing.assert_close(together[name][p], alone, equal_nan=True, atol=0, rtol=0)
    direct = metrics.spearman(producers, heat, valid)  # a metric takes stacked maps too
    torch.testing.assert_close(direct, together["spearman"], equal_nan=True, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"heatmaps must have the shape of maps \(18, 9, 11\)"):
        score_maps(producers, heat[:, :, :4], valid)


def test_score_maps_passes_mask_threshold_and_options(nasty):
    maps, heat, valid = nasty
    scores = score_maps(
        maps,
        heat,
        valid,
        ["roc_auc", "top_k_intersection", "cosine"],
        mask_threshold=0.3,
        options={"top_k_intersection": {"k": 5}},
    )
    expected = metrics.top_k_intersection(maps, heat, valid, k=5, mask_threshold=0.3)
    torch.testing.assert_close(scores["top_k_intersection"], expected, equal_nan=True)
    expected = metrics.roc_auc(maps, heat, valid, mask_threshold=0.3)
    torch.testing.assert_close(scores["roc_auc"], expected, equal_nan=True)
    with pytest.raises(ValueError, match="not a map metric"):
        score_maps(maps, heat, valid, ["deletion_auc"])


def test_a_map_batch_is_shared_not_recomputed(nasty):
    batch = MapBatch(*nasty)
    assert batch.ranked(0.5) is batch.ranked(0.5)
    assert batch.mask(0.5) is batch.mask(0.5)
    with pytest.raises(ValueError, match="not with a MapBatch"):
        metrics.cosine(batch, nasty[1])
    with pytest.raises(ValueError, match=r"heatmaps .* are required"):
        metrics.cosine(nasty[0])


# --- input checks -------------------------------------------------------------------------------


def test_bad_inputs_raise_errors_naming_the_argument():
    maps = torch.rand(2, 4, 5)
    with pytest.raises(TypeError, match=r"maps must be a torch.Tensor of shape \(B, H, W\)"):
        metrics.cosine(maps.numpy(), maps)
    with pytest.raises(
        ValueError, match=r"maps must have shape \(B, H, W\) or \(P, B, H, W\), got \(4, 5\)"
    ):
        metrics.cosine(maps[0], maps[0])
    with pytest.raises(ValueError, match=r"heatmaps must have the shape of maps \(2, 4, 5\)"):
        metrics.cosine(maps, maps[:, :, :4])
    with pytest.raises(ValueError, match=r"valid must have shape \(2,\), got \(3,\)"):
        metrics.cosine(maps, maps, torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="valid must be a bool tensor"):
        metrics.cosine(maps, maps, torch.ones(2))
    with pytest.raises(ValueError, match=r"mask_threshold must be a number in \(0.0, 1.0\]"):
        metrics.roc_auc(maps, maps, mask_threshold=0)
    with pytest.raises(ValueError, match="ties must be"):
        metrics.pointing_game(maps, maps, ties="first")
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 20\]"):
        metrics.top_k_intersection(maps, maps, k=21)
    with pytest.raises(ValueError, match=r"fraction must be a number in \(0.0, 1.0\]"):
        metrics.top_k_intersection(maps, maps, fraction=1.5)
    with pytest.raises(TypeError, match="maps must be real"):
        metrics.cosine(maps.to(torch.complex64), maps)


def test_valid_accepts_a_list_of_bools():
    maps = torch.rand(2, 3, 3)
    assert metrics.cosine(maps, maps, [True, False])[1].isnan()


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_scores_come_in_the_maps_precision(dtype, expected, nasty):
    maps, heat, valid = nasty
    for name in MAP_METRICS:
        scores = get_metric(name)(maps.to(dtype), heat, valid)
        assert scores.dtype == expected, name
        assert scores.shape == (maps.shape[0],)


def test_bool_heatmaps_are_masks():
    maps = torch.tensor([[[0.9, 0.1], [0.2, 0.3]]])
    region = torch.tensor([[[True, False], [False, False]]])
    assert metrics.pointing_game(maps, region).item() == 1.0


def test_results_do_not_depend_on_the_chunk_size(nasty, monkeypatch):
    maps, heat, valid = nasty
    whole = score_maps(maps, heat, valid)
    monkeypatch.setattr(metrics_base, "CHUNK_ELEMENTS", 150)  # one 9×11 row per chunk
    chunked = score_maps(maps, heat, valid)
    for name in MAP_METRICS:
        torch.testing.assert_close(chunked[name], whole[name], equal_nan=True, atol=0, rtol=0)


# --- the sort engine ---------------------------------------------------------------------------


def test_twice_mean_ranks_span_each_tie_group():
    rng = np.random.default_rng(1)
    values = torch.tensor(rng.integers(-3, 4, (7, 50)) / 2, dtype=torch.float32)
    values[0, :3] = torch.tensor([-0.0, 0.0, -0.0])  # −0.0 == 0.0: one tie group
    ordered = values.sort(1).values
    twice = twice_mean_ranks(ordered)
    assert twice.dtype == torch.int32
    for row in range(7):
        for i in range(50):
            same = (ordered[row] == ordered[row, i]).nonzero().squeeze(1)
            assert twice[row, i] == same.min() + same.max() + 2
    assert torch.equal(twice_mean_ranks(ordered[:, :1]), torch.full((7, 1), 2, dtype=torch.int32))


def test_threshold_counts_from_the_sort_equal_direct_counts(nasty):
    maps, heat, valid = nasty
    batch = MapBatch(maps, heat, valid)
    rows, mask = batch.sorted_rows(), batch.mask(0.5)
    flat = batch.maps.view(-1, batch.pixels)
    for bounds, strict in ((torch.tensor([[-1.0, 0.0, 1 / 3, 0.5, 1.0, 2.0]]), False),
                           (torch.rand(len(rows), 3, dtype=torch.float64), True)):  # fmt: skip
        count, inside = batch.count_from(0.5, rows.double(), bounds, strict)
        edges = bounds[:, None, :]
        hit = flat.double()[:, :, None] > edges if strict else flat[:, :, None] >= edges
        assert torch.equal(count.view(len(rows), -1), hit.sum(1))
        expected = (hit & mask.view(-1, batch.pixels)[:, :, None]).sum(1)
        assert torch.equal(inside.view(len(rows), -1), expected)


def test_average_ranks_equal_scipy_rankdata():
    from scipy import stats as scipy_stats

    values = torch.tensor(np.random.default_rng(2).integers(0, 6, (5, 40)), dtype=torch.float32)
    expected = scipy_stats.rankdata(values.numpy(), axis=1)
    np.testing.assert_array_equal(average_ranks(values).numpy(), expected)
    np.testing.assert_array_equal(average_ranks(values.double()).numpy(), expected)


def test_empty_batch_gives_empty_scores():
    empty = torch.zeros(0, 4, 4)
    for name in MAP_METRICS:
        assert get_metric(name)(empty, empty).shape == (0,), name


def test_nan_is_never_a_silent_true(nasty):
    maps, heat, valid = nasty
    for name, scores in score_maps(maps, heat, valid).items():
        assert math.isnan(scores[8]), f"{name}: invalid sample scored"  # invalid
        assert math.isnan(scores[7]), f"{name}: NaN map scored"  # NaN in the map
        if get_metric(name).accepts("mask_threshold"):
            assert math.isnan(scores[4]), f"{name}: empty region scored"
