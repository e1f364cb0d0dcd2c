"""The causal metrics as a suite runs them (kinds ``causal`` and ``dose``).

Golden: a hand-built model whose sadness logit reads only the AU6 (cheek raiser) region, and a
producer whose map lies on that region with a share linear in the logit, scored through the
scorers the evaluation loop uses: agreement 1, top-1 1, dose slope 1/20 and r 1 on AU6, NaN
where undefined. Then a miniature ``counterfactual`` suite run end to end: its columns, its
report table and figure, and the refusal of data other than the synthetic faces.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aubench.bench.causal_scores import BatchCounterfactuals, require_synthetic, shown_aus
from aubench.bench.results import read_results
from aubench.bench.runner import run_suite
from aubench.bench.suite import load_suite
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.codebook import ALL_AUS
from aubench.faces.heatmaps import per_au_heatmaps
from aubench.faces.synth import Intervention
from aubench.metrics import BatchContext, LayerMaps, describe_column, scorers
from aubench.report import write_report
from aubench.report.runs import RunData
from aubench.report.tables import report_tables

SADNESS = 6
FACES = [0, 10, 2, 17]  # sadness, sadness, neutral, sadness (AUs 1, 4, 6, 15, 17)
METRICS = ["au_agreement", "au_top1", "dose_slope", "dose_corr"]


def au6_region(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 64, 64) float: each face's AU6 region (>= 0.5)."""
    maps, _ = per_au_heatmaps(landmarks, torch.zeros(len(landmarks), dtype=int), 64, "generic")
    return (maps[:, ALL_AUS.index(6)] >= 0.5).float()


class RegionLogit(nn.Module):
    """Logits (B, 7): zero but sadness's, the mean channel sum over ``mask``'s pixels."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", mask / mask.sum())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = images.new_zeros(len(images), 7)
        logits[:, SADNESS] = (images * self.weight).sum((1, 2, 3))
        return logits


def test_scorers_of_a_model_reading_one_au_region_golden():
    faces = SyntheticFaces(n=28, size=64, split="test")
    factual = faces.counterfactuals(FACES, Intervention())
    model = RegionLogit(au6_region(factual["landmarks"]).amax(0)).eval()

    def producers(images, targets, landmarks):  # the AU6 region, then its share of the logit
        z = model(images).gather(1, targets[:, None])[:, :, None]
        inside = au6_region(landmarks)
        share = (z + 10) / 20
        spread = inside / inside.sum((1, 2), True) * share
        return [inside, spread + (1 - share) * (1 - inside) / (1 - inside).sum((1, 2), True)]

    targets = torch.full((4,), SADNESS)
    source = BatchCounterfactuals(
        model, faces, FACES, targets, producers, scales=(0.0, 0.5, 1.0), batch_size=3
    )
    assert source.aus == shown_aus(faces) and 6 in source.aus
    valid = factual["label"] != 0  # the neutral face: invalid, as its heatmap
    context = BatchContext(model, factual["image"], targets, None, valid, None)
    context = BatchContext(**{**vars(context), "counterfactuals": source})
    maps = producers(factual["image"], targets, factual["landmarks"])
    layers = [LayerMaps(m, None) for m in maps]
    kinds = scorers(METRICS)
    assert [type(s).__name__ for s in kinds] == ["CausalScores", "DoseScores"]
    columns = [{}, {}]
    for scorer in kinds:
        for mine, scored in zip(
            columns, type(scorer).update_together([scorer] * 2, context, layers), strict=True
        ):
            mine |= scored
    nan = math.nan
    # the region alone: energy only on AU6, the only AU with an effect (the others tie at 0)
    expected = torch.tensor([1.0, 1.0, nan, 1.0])
    torch.testing.assert_close(columns[0]["au_agreement"], expected, equal_nan=True)
    for mine in columns:  # both maps put the most energy on AU6
        torch.testing.assert_close(mine["au_top1"], expected, equal_nan=True)
    spread = columns[1]
    # the energy on AU6 is (z + 10) / 20: slope 1/20, r 1; the other AUs do not move the logit
    torch.testing.assert_close(
        spread["dose_slope:AU6"], torch.tensor([0.05, 0.05, nan, 0.05]), equal_nan=True
    )
    torch.testing.assert_close(
        spread["dose_corr:AU6"], torch.tensor([1.0, 1.0, nan, 1.0]), equal_nan=True
    )
    assert spread["dose_slope:AU1"].isnan().all() and spread["dose_corr:AU12"].isnan().all()
    # each face's mean over its AUs with a score: AU6's alone
    torch.testing.assert_close(spread["dose_corr"], spread["dose_corr:AU6"], equal_nan=True)
    assert set(spread) == {
        *METRICS,
        *(f"dose_{m}:AU{au}" for m in ("slope", "corr") for au in source.aus),
    }
    assert (
        describe_column("dose_corr:AU6").kind == "dose"
        and describe_column("au_top1").kind == "causal"
    )
    bare = BatchContext(model, factual["image"], targets, None, valid, None)
    with pytest.raises(
        ValueError, match="au_agreement, au_top1 score maps against AU counterfactuals"
    ):
        kinds[0].update(bare, layers[0])


def test_only_the_synthetic_faces_have_counterfactuals():
    with pytest.raises(
        ValueError, match=r"dose_corr need AU counterfactuals.*data is rafdb:/data/RAF-DB"
    ):
        require_synthetic(["cosine", "dose_corr"], "rafdb:/data/RAF-DB")
    require_synthetic(["cosine"], "rafdb:/data/RAF-DB")  # no causal metric: no need
    require_synthetic(METRICS, "synthetic:n=48", SyntheticFaces(n=4, size=64))
    with pytest.raises(ValueError, match=r"synthetic:n=48 \(list\)"):
        require_synthetic(METRICS, "synthetic:n=48", [])


def test_counterfactual_suite_in_miniature(tmp_path):
    suite = load_suite(
        "counterfactual",
        [
            "data=synthetic:n=48",
            "train.epochs=1",
            "eval.max_images=8",
            "eval.batch_size=8",
            "aggregation.bootstrap=10",
            "explainers=[cam, gradcam]",
            "variants=[{name: baseline}]",
        ],
    )
    run = run_suite(suite, runs_root=tmp_path, progress=False)
    table = read_results(run)
    macro = table[table["class"] == "macro"]
    methods = ["cam", "gradcam", "control:random", "control:centre", "control:generic"]
    for metric in ["cosine", *METRICS, "dose_corr:AU6", "dose_slope:AU12"]:
        assert set(macro.loc[macro.metric == metric, "method"]) == set(methods), metric
    assert macro.loc[macro.metric == "au_agreement", "value"].notna().all()
    report = write_report(run)
    (counterfactual,) = [t for t in report_tables(RunData(run)) if t.name == "counterfactual"]
    assert [row[-1] for row in counterfactual.rows] == methods
    assert counterfactual.columns == [(f"{m} ↑", "w/o AU") for m in METRICS]
    assert counterfactual.value.loc[("cam",)].notna().all()
    assert (report / "tables" / "counterfactual.tex").is_file()
    assert (report / "figures" / "dose-response.png").is_file()
    assert "metrics_faithfulness" not in {t.name for t in report_tables(RunData(run))}
    assert "| cam |" in (report / "report.md").read_text()
