"""The headline table ``aubench run`` prints: accuracy, then macro scores per method × variant."""

from __future__ import annotations

import os

import pandas as pd

from aubench.bench.evaluate import EVIDENCE_SUFFIX
from aubench.bench.results import CLASSIFIER, per_image_file, read_manifest, read_results
from aubench.metrics import derived_column


def headline(run: str | os.PathLike, max_metrics: int = 3) -> str:
    """Plain text for run ``run``: one accuracy line (top-1 %, all test images, mean over seeds),
    then a table with rows = (method, layer) and columns = (metric, variant) holding the macro
    average over non-neutral classes (mean over seeds) of the suite's first ``max_metrics``
    metrics (``cascading_randomisation`` as its fully randomised depth; per-AU shares are left
    to the report). Variants appear in the suite's order (the manifest stores them sorted)."""
    table = read_results(run)
    manifest = read_manifest(run)
    variants = list(dict.fromkeys(table["variant"]))
    present = list(dict.fromkeys(table.metric))
    metrics = [_shown(m, present) for m in manifest["suite"]["metrics"]]
    metrics = [m for m in metrics if m is not None][:max_metrics]
    is_accuracy = (table.method == CLASSIFIER) & (table.metric == "accuracy")
    accuracy = table[is_accuracy & (table["class"] == "all")]
    acc = accuracy.groupby("variant").value.mean()
    first = "accuracy (%): " + ", ".join(f"{v} {acc.get(v, float('nan')):.1f}" for v in variants)
    scores = table[(table["class"] == "macro") & table.metric.isin(metrics)]
    means = scores.groupby(["method", "layer", "metric", "variant"], sort=False).value.mean()
    lines = [["method", "layer"] + [f"{m} [{v}]" for m in metrics for v in variants]]
    for (method, layer), group in means.groupby(level=["method", "layer"], sort=False):
        values = group.droplevel(["method", "layer"])
        cells = [values.get((m, v), float("nan")) for m in metrics for v in variants]
        lines.append([method, layer] + [f"{value:.3f}" for value in cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rows = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    rows.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([first, "macro over non-neutral classes:", *rows, *_unscored(run, table)])


#: What to do when every image of a cell was excluded, by reason (``no-present-aus`` and
#: ``no-region-aus``: the reasons of the evidence maps, per-image AU evidence only).
ADVICE = {
    "no-landmarks": "landmarks failed or are missing: compute them with `aubench landmarks`",
    "no-aus": "neutral faces have no AU heatmap",
    "outside": "every face's AU regions fall outside the image: check the crop and landmarks",
    "no-present-aus": "no image shows an AU of the evidence (not coded, or not matched): check "
    "that the evidence's keys fit the images (no_evidence and unmatched in "
    "cells/<cell>.evidence.json)",
    "no-region-aus": "the AUs the images show have no region in aubench (AU45, …; "
    "unregioned_aus in cells/<cell>.evidence.json)",
}


def _unscored(run: str | os.PathLike, table: pd.DataFrame) -> list[str]:
    """One line per (model, variant, seed) whose map metrics scored no image, saying which
    reasons excluded its images (from its per-image table), instead of a bare ``nan``; and
    likewise per cell whose metrics against per-image AU evidence (``<metric>@evidence``)
    scored none, with the evidence maps' reasons."""
    scored = table[(table.method != CLASSIFIER) & (table["class"] == "all")]
    evidence = scored.metric.str.endswith(EVIDENCE_SUFFIX).rename("evidence")
    cells = scored.groupby(["model", "variant", "seed", "split", evidence], sort=False).n.max()
    lines = []
    for (model, variant, seed, split, against), n in cells.items():
        if n > 0:
            continue
        images = pd.read_parquet(per_image_file(run, model, variant, seed, split))
        if against:  # one producer's rows of one metric: the evidence maps' reasons
            rows = images[images.metric.str.endswith(EVIDENCE_SUFFIX)]
            first = rows.iloc[0]
            rows = rows[(rows.metric == first.metric) & (rows.method == first.method)]
        else:
            rows = images[images.metric == "pred"]
        reasons = rows.reason.value_counts()
        shown = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        advice = "; ".join(ADVICE[r] for r in reasons.index if r in ADVICE)
        what = " against its AU evidence" if against else ""
        lines.append(
            f"{model} {variant} (seed {seed}): no {split} image was scored{what}, every one of "
            f"the {int(reasons.sum())} was excluded ({shown})" + (f": {advice}" if advice else "")
        )
    return lines


def _shown(metric: str, present: list[str]) -> str | None:
    """The results-table metric standing for suite metric ``metric``: itself, or for cascading
    randomisation the last (fully randomised) ``sanity_spearman:<module>`` depth."""
    if metric in present:
        return metric
    columns = [(m, derived_column(m)) for m in present]
    depths = [m for m, c in columns if c is not None and c.kind == "sanity" and c.metric == metric]
    return depths[-1] if depths else None
