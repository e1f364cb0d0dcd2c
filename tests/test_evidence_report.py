"""The report of a run scored against per-image AU evidence, on hand-written run folders: the
paired table (each method against the codebook and against the evidence) from literal numbers,
the agreement table (golden Markdown and LaTeX rows, long AU lists cut, several agreements in
blocks), the notes' evidence counts, a cell without its evidence file; and the headline's line
for a cell whose evidence maps were all invalid. The end-to-end run of the ``evidence`` suite is
in ``tests/test_bench_builtin_suites.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aubench.bench.evaluate import EVIDENCE_SUFFIX as SCORED_SUFFIX
from aubench.bench.results import (
    PER_IMAGE_COLUMNS,
    RESULT_COLUMNS,
    per_image_file,
    read_manifest,
    read_results,
    write_manifest,
    write_per_image,
    write_results,
)
from aubench.bench.summary import headline
from aubench.report.build import write_report
from aubench.report.latex import render_latex
from aubench.report.markdown import escape, render_markdown
from aubench.report.runs import EVIDENCE_SUFFIX, RunData
from aubench.report.tables import agreement_table, evidence_table, report_tables
from tests.report_fixtures import METRICS, MODEL, SPLIT, make_tiny_run

#: AU → the share of surprise's images showing it: ten AUs besides its prototype's AU1 + AU2
#: (AU2 on none of them).
AUS = (1, 2, 4, 5, 7, 9, 10, 14, 15, 17, 20, 23)
SHARES = dict(zip(AUS, (1.0, 0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1), strict=True))
#: Two classes: neutral (no AU, its empty prototype matched) and surprise.
AGREEMENT = {
    "neutral": {"n": 2, "prototype": [], "exact": 2, "jaccard": 1.0, "au_frequency": {}},
    "surprise": {
        "n": 3,
        "prototype": [1, 2],
        "exact": 1,
        "jaccard": 0.5,
        "au_frequency": {str(au): share for au, share in SHARES.items()},
    },
}
#: What the cells' evidence was (``evidence_summary`` less codebook and agreement).
COUNTS = {
    "evidence": "facs",
    "source": "openface",
    "images": 5,
    "no_evidence": 1,
    "unmatched": {"id mismatch (no image of the dataset has this key)": 2},
    "unmatched_examples": {
        "id mismatch (no image of the dataset has this key)": ["au.csv:3", "au.csv:9"]
    },
    "skipped_rows": {},
    "invalid": {"no_present_aus": 2, "no_region_aus": 1},
    "unregioned_aus": {"AU45": 1},
}
#: (method, variant) → macro cosine against the codebook and against the evidence.
COSINE = {("cam", "baseline"): 0.5, ("cam", "guided"): 0.7, ("gradcam", "baseline"): 0.4}
EVIDENCE = {("cam", "baseline"): 0.45, ("cam", "guided"): 0.75, ("gradcam", "baseline"): 0.35}


def cell(variant: str) -> str:
    return f"{MODEL}__{variant}__0__{SPLIT}"


def evidence_run(root: Path, found: dict[str, tuple[str, dict]] | None = None) -> Path:
    """The tiny run of the report tests (methods cam and gradcam; baseline and guided) scored
    against evidence ``facs`` too: ``cosine@evidence`` rows, the manifest's ``evidence``, and
    per variant its cell's evidence file with ``found[variant]`` = (codebook, agreement),
    default (``belharbi2024-fixed``, :data:`AGREEMENT`)."""
    kl = {(m, v): 1.0 for m, v in COSINE}
    run = make_tiny_run(root, kl=kl, cosine=COSINE)
    table = read_results(run)
    against = table[table.metric == "cosine"].assign(metric="cosine" + EVIDENCE_SUFFIX)
    against["value"] = [
        EVIDENCE[(m, v)] for m, v in zip(against.method, against.variant, strict=True)
    ]
    write_results(run, pd.concat([table, against], ignore_index=True)[RESULT_COLUMNS])
    manifest = read_manifest(run)
    manifest["metrics"]["cosine" + EVIDENCE_SUFFIX] = METRICS["cosine"]
    variants = ("baseline", "guided")
    manifest["evidence"] = {"evidence": "facs", "cells": {cell(v): COUNTS for v in variants}}
    write_manifest(run, manifest)
    (run / "cells").mkdir()
    for variant in variants:
        codebook, agreement = (found or {}).get(variant, ("belharbi2024-fixed", AGREEMENT))
        summary = {**COUNTS, "codebook": codebook, "agreement": agreement}
        (run / "cells" / f"{cell(variant)}.evidence.json").write_text(json.dumps(summary))
    return run


def test_the_report_names_evidence_scores_as_the_evaluation_does():
    assert EVIDENCE_SUFFIX == SCORED_SUFFIX


def test_paired_table_holds_each_method_against_codebook_and_evidence(tmp_path):
    run = RunData(evidence_run(tmp_path))
    table = evidence_table(run, ["cosine"])
    assert table.columns == [
        ("cosine ↑ w/o AU", "vs codebook"),
        ("cosine ↑ w/o AU", "vs evidence"),
        ("cosine ↑ w/ AU", "vs codebook"),
        ("cosine ↑ w/ AU", "vs evidence"),
    ]
    assert table.rows == [("cam",), ("gradcam",)]
    expected = [[0.5, 0.45, 0.7, 0.75], [0.4, 0.35, np.nan, np.nan]]
    np.testing.assert_array_equal(table.value.to_numpy(), expected)
    assert table.best().tolist() == [[True, True, False, False], [False, False, False, False]]
    assert table.notes()[-1].startswith("vs codebook: against the heatmap of the label's")
    # ``cosine@evidence`` chosen stands for its pair; a metric without evidence scores: none
    assert evidence_table(run, ["cosine@evidence"]).columns == table.columns
    assert evidence_table(run, ["kl"]) is None
    names = [t.name for t in report_tables(run)]
    assert names[:3] == ["main", "evidence", "agreement"]


def test_agreement_table_golden_rows(tmp_path):
    run = RunData(evidence_run(tmp_path))
    table = agreement_table(run)
    assert table.header == (
        "Class",
        "n",
        "Prototype AUs",
        "Exact match",
        "Jaccard",
        "AUs shown (share)",
    )
    markdown = render_markdown(table).splitlines()
    assert markdown[0] == (
        "**Codebook–evidence agreement per class: how the AUs each image shows (evidence facs) "
        "agree with the class's prototype (codebook belharbi2024-fixed).**"
    )
    assert markdown[2:6] == [
        "| Class | n | Prototype AUs | Exact match | Jaccard | AUs shown (share) |",
        "|:--|--:|:--|:-:|:-:|:--|",
        "| neutral | 2 | – | 1.00 (2/2) | 1.000 | – |",
        "| surprise | 3 | 1, 2 | 0.33 (1/3) | 0.500 | **1\u00a0(1.00)**, 4\u00a0(0.90), "
        "5\u00a0(0.80), 7\u00a0(0.70), 9\u00a0(0.60), 10\u00a0(0.50), 14\u00a0(0.40), "
        "15\u00a0(0.30), 17\u00a0(0.20), **2\u00a0(0.00)**, +2 more |",  # unbreakable spaces
    ]
    assert "count as showing no AU" in markdown[-1]  # a cell had an image without evidence
    latex = render_latex(table).splitlines()
    assert r"\begin{tabular}{lrp{0.16\linewidth}ccp{0.28\linewidth}}" in latex
    assert (
        r"surprise & 3 & \raggedright 1, 2 & 0.33 (1/3) & 0.500 & \raggedright \textbf{1~(1.00)}, "
        r"4~(0.90), 5~(0.80), 7~(0.70), 9~(0.60), 10~(0.50), 14~(0.40), 15~(0.30), 17~(0.20), "
        r"\textbf{2~(0.00)}, +2 more \tabularnewline" in latex
    )


@pytest.mark.parametrize(
    ("codebook", "lead"), [("emfacs", "Codebook"), ("belharbi2024-fixed", "Cells")]
)
def test_cells_that_found_different_agreements_are_blocks(tmp_path, codebook, lead):
    other = {**AGREEMENT, "neutral": {**AGREEMENT["neutral"], "n": 1, "exact": 1}}
    run = RunData(evidence_run(tmp_path, {"guided": (codebook, other)}))
    assert [a.cells for a in run.agreements] == [(cell("baseline"),), (cell("guided"),)]
    table = agreement_table(run)
    assert table.header[0] == lead and table.rules == frozenset({2})
    by_codebook = lead == "Codebook"
    first, second = ("belharbi2024-fixed", codebook) if by_codebook else map(cell, run.variants)
    assert [row[0] for row in table.rows] == [((first, False),), (), ((second, False),), ()]
    assert render_markdown(table).splitlines()[4].startswith(f"| {escape(first)} | neutral | 2 |")


def test_a_cell_without_its_evidence_file_keeps_its_counts(tmp_path):
    path = evidence_run(tmp_path)
    (path / "cells" / f"{cell('guided')}.evidence.json").unlink()
    run = RunData(path)
    assert run.evidence_cells[cell("guided")] == COUNTS
    assert [a.cells for a in run.agreements] == [(cell("baseline"),)]
    (path / "cells" / f"{cell('baseline')}.evidence.json").write_text('{"agreement": 3}')
    with pytest.raises(ValueError, match=r"baseline__0__test\.evidence\.json: agreement is malf"):
        _ = RunData(path).agreements


def test_report_page_tells_the_evidence_counts_and_draws_the_agreement(tmp_path):
    report = write_report(evidence_run(tmp_path))
    page = (report / "report.md").read_text()
    assert "- per-image AU evidence: facs\n" in page
    assert "| guided | yes | 4 | layer4 | ce+cos |\n" in page  # no training evidence: no column
    assert (
        "- Evidence, every cell: 5 images scored; 1 without evidence; evidence maps invalid: "
        "no-present-aus 2, no-region-aus 1; AUs without a region (images showing them; not "
        "drawn): AU45 1; evidence keys fitting no image or several: id mismatch (no image of "
        "the dataset has this key) 2 (e.g. au.csv:3, au.csv:9); rows the reader skipped: none.\n"
    ) in page
    assert "Per-image AU evidence `facs` (source: openface)" in page
    assert sorted(p.name for p in (report / "tables").glob("*.tex"))[:2] == [
        "agreement.tex",
        "evidence.tex",
    ]
    assert (report / "figures" / "agreement.png").is_file()


def test_headline_says_when_no_image_was_scored_against_the_evidence(tmp_path):
    """A cell whose evidence maps are all invalid (its images show no AU with a region): the
    codebook's scores stand, and a line says why the evidence scores are missing."""
    run = tmp_path / "run"
    keys = {"suite": "s", "model": "m", "variant": "baseline", "seed": 0, "split": "test"}
    rows = [
        ("classifier", "", "accuracy", "all", 50.0, 3),
        ("cam", "layer4", "cosine", "macro", 0.5, 3),
        ("cam", "layer4", "cosine", "all", 0.5, 3),
        ("cam", "layer4", "cosine@evidence", "macro", np.nan, 0),
        ("cam", "layer4", "cosine@evidence", "all", np.nan, 0),
    ]
    columns = ["method", "layer", "metric", "class", "value", "n"]
    table = pd.DataFrame(rows, columns=columns).assign(**keys, ci_low=np.nan, ci_high=np.nan)
    write_results(run, table.assign(n_excluded=3 - table.n)[RESULT_COLUMNS])
    write_manifest(run, {"suite": {"metrics": ["cosine"]}})
    reasons = ["no-region-aus", "no-region-aus", "no-present-aus"]
    images = [(f"i{k}", 1, "classifier", "", "pred", 1.0, "valid") for k in range(3)] + [
        (f"i{k}", 1, "cam", "layer4", "cosine@evidence", np.nan, r) for k, r in enumerate(reasons)
    ]
    per_image = pd.DataFrame(images, columns=PER_IMAGE_COLUMNS[4:]).assign(**keys)
    write_per_image(per_image_file(run, "m", "baseline", 0, "test"), per_image[PER_IMAGE_COLUMNS])
    *_, line = headline(run).splitlines()
    assert line == (
        "m baseline (seed 0): no test image was scored against its AU evidence, every one of "
        "the 3 was excluded (no-region-aus 2, no-present-aus 1): the AUs the images show have "
        "no region in aubench (AU45, …; unregioned_aus in cells/<cell>.evidence.json); no image "
        "shows an AU of the evidence (not coded, or not matched): check that the evidence's "
        "keys fit the images (no_evidence and unmatched in cells/<cell>.evidence.json)"
    )
