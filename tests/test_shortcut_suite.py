"""The ``shortcut`` suite (#16): the ``cue_energy_share`` metric wired as a per-image metric of
kind ``cue`` (each image's cue mask built from the corner its sample carries), variants trained
on data of their own (``train: {data: …}``) and scored on the suite's, and the ``shortcut``
table and figure of the report. Sizes are tiny: the end-to-end run trains four ResNet-10-T for
one epoch on 48 faces of 64 px and scores 16 test faces."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from aubench.bench.results import read_manifest, read_per_image, read_results
from aubench.bench.runner import check_suite, plan, run_suite
from aubench.bench.suite import SuiteError, load_suite
from aubench.data.shortcut import (
    CUE_KEY,
    NO_CUE,
    cue_corners,
    cue_region_masks,
    synthetic_faces,
)
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.synth import CUE_COLOURS
from aubench.metrics import METRICS, BatchContext, LayerMaps, describe_column, scorers
from aubench.report import write_report
from aubench.report.shortcut import shortcut_rho
from aubench.train.data import open_split

RHOS = ("0", "0.5", "0.9", "1.0")
TINY_DATA = "synthetic:n=48,shortcut=1.0"  # 12 test faces, each with a patch


def _context(maps: torch.Tensor, corners: torch.Tensor | None, valid=None) -> BatchContext:
    """A batch context for the cue scorer: nothing but the maps' validity and the cues."""
    size = maps.shape[0]
    valid = torch.ones(size, dtype=torch.bool) if valid is None else valid
    masks = None if corners is None else (lambda shape: cue_region_masks(corners, shape))
    blank = torch.zeros(size, *maps.shape[-2:])
    return BatchContext(None, None, None, blank, valid, None, masks)


def _scored(maps: torch.Tensor, corners: torch.Tensor | None, valid=None) -> torch.Tensor:
    (scorer,) = scorers(["cue_energy_share"])
    context = _context(maps, corners, valid)
    return scorer.update(context, LayerMaps(maps, None))["cue_energy_share"]


# --- the metric's wiring ----------------------------------------------------------------------


def test_cue_masks_are_the_patch_box_at_any_size():
    masks = cue_region_masks(torch.tensor([0, 1, NO_CUE]), (64, 64))
    # side round(0.12·64) = 8, margin round(0.03·64) = 2: rows 54–61, columns 2–9 or 54–61
    expected = torch.zeros(3, 64, 64, dtype=torch.bool)
    expected[0, 54:62, 2:10] = True
    expected[1, 54:62, 54:62] = True
    assert torch.equal(masks, expected)
    small = cue_region_masks(torch.tensor([1]), (16, 16))  # side 2, margin 0
    assert small[0].nonzero().tolist() == [[14, 14], [14, 15], [15, 14], [15, 15]]
    with pytest.raises(ValueError, match="corners must be -1, 0 or 1"):
        cue_region_masks(torch.tensor([2]), (16, 16))


def test_cue_share_golden_all_on_the_cue_none_and_no_cue():
    corners = torch.tensor([0, 1, 1, NO_CUE])
    cue = cue_region_masks(corners, (32, 32)).float()
    maps = torch.stack([cue[0], 1 - cue[1], 0.5 * cue[2] + 0.5 * (1 - cue[2]), torch.ones(32, 32)])
    share = _scored(maps, corners)
    on_cue = cue[2].sum() * 0.5 / (cue[2].sum() * 0.5 + (1024 - cue[2].sum()) * 0.5)
    assert share[:3].tolist() == [1.0, 0.0, pytest.approx(float(on_cue), abs=1e-7)]
    assert math.isnan(share[3])  # no cue: excluded (NaN), counted as no-cue per image
    invalid = _scored(maps, corners, torch.tensor([True, False, True, True]))
    assert math.isnan(invalid[1]) and invalid[0] == 1.0
    # every producer of a batch scored in one call gives what each alone gives
    (scorer,) = scorers(["cue_energy_share"])
    peers = [scorer, scorers(["cue_energy_share"])[0]]
    layers = [LayerMaps(maps, None), LayerMaps(maps.flip(0), None)]
    together = type(scorer).update_together(peers, _context(maps, corners), layers)
    exact = {"rtol": 0, "atol": 0, "equal_nan": True}
    torch.testing.assert_close(together[0]["cue_energy_share"], share, **exact)
    alone = _scored(maps.flip(0), corners)
    torch.testing.assert_close(together[1]["cue_energy_share"], alone, **exact)


def test_cue_share_is_a_registered_cue_metric_with_a_clear_error_off_synthetic():
    column = describe_column("cue_energy_share")
    assert (column.kind, column.higher_is_better, column.category) == ("cue", False, "mass")
    assert METRICS["cue_energy_share"].kind == "cue"
    with pytest.raises(ValueError, match="only the built-in synthetic faces know"):
        _scored(torch.ones(2, 8, 8), None)
    with pytest.raises(ValueError, match="known only on the built-in synthetic faces"):
        synthetic_faces(TensorDataset(torch.zeros(2, 3)))
    suite = load_suite("shortcut", ["data=folder:/nowhere"])
    with pytest.raises(SuiteError, match="cue_energy_share scores the shortcut cue's pixels"):
        check_suite(suite)


def test_samples_carry_the_corner_of_the_patch_they_show():
    faces = SyntheticFaces(8, 64, "test", shortcut=0.5)
    corners = cue_corners(faces, range(8))
    assert {int(c) for c in corners} >= {NO_CUE}  # ρ = 0.5: some faces have none
    for index in range(8):
        sample = faces[index]
        assert sample[CUE_KEY] == int(corners[index])
        assert (sample[CUE_KEY] != NO_CUE) == sample["shortcut"]
        if sample[CUE_KEY] == NO_CUE:
            continue
        pixels = faces.render(index).image[
            cue_region_masks(corners[index : index + 1], (64, 64))[0]
        ]
        colour = np.abs(pixels.astype(float).mean(0)[None] - CUE_COLOURS).sum(1)
        assert colour.min() < 120  # a class colour fills the box (lighting varies its shade)


# --- the suite ----------------------------------------------------------------------------------


def test_suite_builds_eight_variants_trained_at_each_rho_scored_on_the_decorrelated_split():
    suite = load_suite("shortcut")
    names = [v.name for v in suite.variants]
    assert names == [f"{kind}-rho{rho}" for rho in RHOS for kind in ("baseline", "guided")]
    assert [v.guided for v in suite.variants] == [False, True] * 4
    cells = plan(suite)
    assert len(cells) == 8
    for cell, rho in zip(cells, [r for r in RHOS for _ in range(2)], strict=True):
        assert shortcut_rho(cell.config.data) == float(rho)
        assert cell.eval_config.data == suite.data == "synthetic:n=1500,shortcut=1.0"
        assert cell.eval_config.size == 64 and cell.config.epochs == 3
    quick = {c.variant: c.config.run_name() for c in plan(load_suite("quick"))}
    assert cells[0].config.run_name() == quick["baseline"]  # ρ 0: quick's models, reused
    assert cells[1].config.run_name() == quick["guided"]
    test = open_split(cells[0].eval_config.replace(data=TINY_DATA), "test")
    corners = cue_corners(synthetic_faces(test), range(len(test)))
    assert len(test) == 12 and (corners != NO_CUE).all()  # every test face shows a patch


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shortcut")
    rho0, rho1 = "synthetic:n=48", "synthetic:n=48,shortcut=1.0"
    variants = (
        f'[{{name: baseline-rho0, train: {{data: "{rho0}"}}}}, '
        f'{{name: guided-rho0, guided: true, train: {{data: "{rho0}"}}}}, '
        f'{{name: baseline-rho1.0, train: {{data: "{rho1}"}}}}, '
        f'{{name: guided-rho1.0, guided: true, train: {{data: "{rho1}"}}}}]'
    )
    overrides = [
        f"data={TINY_DATA}",
        f"variants={variants}",
        "train.epochs=1",
        "train.batch_size=16",
        "eval.max_images=16",
        "eval.batch_size=8",
        "eval.samples_per_class=1",
        "aggregation.bootstrap=20",
    ]
    suite = load_suite("shortcut", overrides)
    run = run_suite(suite, out=root / "run", runs_root=root / "runs", device="cpu", progress=False)
    return run, write_report(run)


def test_tiny_run_scores_the_cue_share_of_every_producer(tiny_run):
    run, _ = tiny_run
    results = read_results(run)
    share = results[(results["metric"] == "cue_energy_share") & (results["class"] == "all")]
    producers = {"attention", "cam", "gradcam", "layercam"}
    producers |= {"control:random", "control:centre", "control:generic"}
    for variant in ("baseline-rho0", "guided-rho0", "baseline-rho1.0", "guided-rho1.0"):
        mine = share[share["variant"] == variant]
        assert set(mine["method"]) == producers
        assert mine["value"].between(0, 1).all()
    manifest = read_manifest(run)
    assert manifest["data"]["spec"] == TINY_DATA
    assert manifest["metrics"]["cue_energy_share"]["higher_is_better"] is False
    per_image = read_per_image(run)
    rows = per_image[per_image["metric"] == "cue_energy_share"]
    assert set(rows["reason"]) <= {"valid", "no-aus", "undefined"}  # every face has a patch
    centre = rows[(rows["method"] == "control:centre") & (rows["reason"] == "valid")]
    assert (centre["value"] < 0.05).all()  # the centre prior puts little on a corner patch


def test_tiny_run_report_has_the_shortcut_table_and_figure(tiny_run):
    _, report = tiny_run
    tex = (report / "tables" / "shortcut.tex").read_text()
    assert "cue\\_energy\\_share" in tex and "w/o AU" in tex and "w/ AU" in tex
    page = (report / "report.md").read_text()
    assert "shortcut probability" in page
    assert (report / "figures" / "shortcut.png").stat().st_size > 10_000
    table = pd.read_csv(tiny_run[0] / "results.csv")
    accuracy = table[(table["metric"] == "accuracy") & (table["class"] == "all")]
    assert len(accuracy) == 4
