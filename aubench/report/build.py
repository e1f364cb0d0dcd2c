"""``aubench report RUN``: every table and figure of a run folder, and a Markdown summary.

Layout of the output folder (default ``RUN/report``)::

    tables/<name>.tex      booktabs tables (main, shortcut, evidence, agreement, layers,
                           lambda, ablation, per_au, sanity, counterfactual, metrics_<cat>)
    figures/<name>.png|pdf samples_<model> (a run of several methods: samples), agreement,
                           layers, metrics, shortcut, per_au, lambda, sanity, dose-response,
                           confusion
    report.md              run facts, the tables as Markdown, the figures, notes

Only the results store is read (results, per_image, samples, manifest); every file is written
atomically, and tables or figures of an earlier report in the same folder that this one does not
produce (other variants or metrics) are removed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from aubench.bench.results import sample_file
from aubench.io import write_atomic
from aubench.report import figures as fig
from aubench.report.latex import PACKAGES, render_latex
from aubench.report.markdown import render_report
from aubench.report.runs import CODEBOOK, RunData
from aubench.report.shortcut import shortcut_figure, shortcut_table
from aubench.report.stats import EXACT_MAX_PAIRS, RESAMPLES
from aubench.report.tables import DEFAULT_PROTOCOL, choose_metrics, report_tables, run_protocol


def write_report(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    ci: bool = False,
    *,
    split: str | None = None,
    variants: Sequence[str] | None = None,
) -> Path:
    """Write the report of run folder ``run``.

    Args:
        run: a run folder (results.parquet, manifest.json; per_image/ and samples/ optional).
        out: output folder; default ``run/report``.
        metrics: map metrics of the main table and figures; default ``cosine`` (else the first
            map metric). Every other metric appears in its category's table.
        ci: show the bootstrap CIs ``[low, high]`` in the tables.
        split: the split reported; default ``test`` (or the only one).
        variants: the variants reported, in this order; default all, in order of first
            appearance in the results.

    Returns:
        The output folder.
    """
    data = RunData(run, split, variants)
    out = Path(out) if out is not None else data.path / "report"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    tables = report_tables(data, metrics)
    shortcut = shortcut_table(data, choose_metrics(data, metrics))
    if shortcut is not None:  # a shortcut sweep (the shortcut suite): after the main table
        tables.insert(1, shortcut)
    kept = []
    for table in tables:
        path = out / "tables" / f"{table.name}.tex"
        kept.append(write_atomic(path, render_latex(table, ci).encode()))
    chosen = choose_metrics(data, metrics)
    drawn: list[tuple[str, str, Figure | None]]
    if data.trained:  # the methods of one run side by side: one figure, a row per method
        drawn = [("Sample faces", "samples", fig.sample_grid(data, data.models))]
    else:
        drawn = [
            (f"{model}: sample faces", f"samples_{_slug(model)}", fig.sample_grid(data, model))
            for model in data.models
        ]
    drawn += [
        ("AUs each class shows vs its prototype", "agreement", fig.agreement_figure(data)),
        ("Scores per layer", "layers", fig.layer_curves(data, chosen)),
        ("Accuracy and metrics per method", "metrics", fig.metric_bars(data, chosen)),
        ("Scores against the shortcut ρ in training", "shortcut", shortcut_figure(data)),
        ("Per-AU energy share", "per_au", fig.per_au_bars(data)),
        ("λ curve", "lambda", fig.lambda_curve(data, chosen)),
        ("Cascading randomisation", "sanity", fig.sanity_curves(data)),
        ("Dose-response per AU", "dose-response", fig.dose_response_map(data)),
        ("Confusion matrices (row-normalised)", "confusion", fig.confusion_figure(data)),
    ]
    written = []
    for caption, stem, figure in drawn:
        if figure is not None:
            kept += fig.save_figure(figure, out / "figures" / stem)
            written.append((caption, Path("figures") / f"{stem}.png"))
    page = render_report(data, tables, written, _notes(data), ci)
    write_atomic(out / "report.md", page.encode())
    figures = out / "figures"
    stale = [*(out / "tables").glob("*.tex"), *figures.glob("*.png"), *figures.glob("*.pdf")]
    for path in set(stale) - set(kept):  # from an earlier report with other options
        path.unlink()
    return out


def _notes(run: RunData) -> list[str]:
    """What the reader needs to know: conventions, the test, and what is missing."""
    main = ", ".join(f"{m} at {run.main_layer(m) or '(no layer)'}" for m in run.methods)
    notes = [
        f"Headline values: macro mean over the non-neutral classes (map metrics) and top-1 "
        f"accuracy over every image, split `{run.split}`, averaged over seeds "
        f"{', '.join(map(str, run.seeds))} (± = standard deviation over seeds).",
        f"Method tables show each method at its last layer: {main}.",
        f"The LaTeX tables need `\\usepackage{{{','.join(PACKAGES)}}}`.",
    ]
    if not run.tests.empty:
        notes.append(
            f"Significance: two-sided paired sign-flip permutation test of the per-image scores "
            f"of each guided variant against `{run.baseline}` (pairs: same model, seed, image, "
            f"method, layer, metric; exact up to {EXACT_MAX_PAIRS} pairs, else {RESAMPLES:,} "
            f"random sign flips; accuracy on per-image correctness), Holm-corrected over each "
            f"table; * p < 0.05, ** p < 0.01."
        )
    if run.controls:
        notes.append(
            "† cannot tell this method from a control: the best control's macro value is "
            "within the method's 95% CI, or better."
        )
    if run.per_image is None:
        notes.append(
            f"{run.path / 'per_image'} holds no per-image scores: no significance marks, "
            "no confusion matrices."
        )
    if run.baseline is None:
        notes.append("No unguided variant is shown: no paired tests.")
    notes += _protocol_notes(run)
    notes += _evidence_notes(run)
    for model in run.models:
        for variant in run.variants:
            path = sample_file(run.path, model, variant, run.seeds[0])
            if not path.is_file():
                notes.append(f"{path} is missing: the sample grid leaves it out.")
    return notes


def _protocol_notes(run: RunData) -> list[str]:
    """The evaluation protocol when it is not aubench's own, with what aubench's validity fixes
    changed in each cell (manifest ``fixes``), and the classes averaged into a macro with the
    ``aggregation.empty_class`` value (per-class rows with ``n`` 0)."""
    notes = []
    protocol = run_protocol(run)
    if protocol != DEFAULT_PROTOCOL:
        counts = "; ".join(
            f"{cell}: {c['no_landmarks']} and {c['vanished']} of {c['images']}"
            for cell, c in (run.manifest.get("fixes") or {}).items()
        )
        notes.append(
            f"Evaluation protocol `{protocol}`: the reference code's AU heatmaps, map "
            "post-processing and undefined scores counted 0 (README: the paper's evaluation "
            "protocol). aubench's validity fixes are kept: faces with non-finite landmarks "
            "(the reference raises) and faces whose AU regions vanish in the 28×28 sampling "
            "(the reference scores their all-zero maps as valid) are left out"
            + (f"; per cell, non-finite and vanished of the images: {counts}." if counts else ".")
        )
    rows = run.results
    empty = rows[(rows["n"] == 0) & ~rows["class"].isin(["macro", "all"])]
    if not empty.empty:
        value = ", ".join(f"{v:g}" for v in dict.fromkeys(empty["value"]))
        cells = empty.groupby(["model", "variant", "seed"], sort=False)["class"]
        shown = "; ".join(
            f"{model} {variant} seed {seed}: {', '.join(dict.fromkeys(classes))}"
            for (model, variant, seed), classes in cells
        )
        notes.append(
            f"Classes with no scored image count {value} in the macro averages "
            f"(aggregation.empty_class, the reference code's convention): {shown}."
        )
    return notes


def _evidence_notes(run: RunData) -> list[str]:
    """What the per-image AU evidence of a run scored against it was, per group of cells that
    found the same counts (:attr:`RunData.evidence_cells`): images scored and without evidence,
    evidence maps invalid by reason, AUs without a region, evidence keys that fit no image (or
    several) and rows its reader skipped, by reason."""
    if run.evidence == CODEBOOK:
        return []
    groups: dict[str, list[str]] = {}
    for key, found in run.evidence_cells.items():
        counts = {k: v for k, v in found.items() if k not in ("codebook", "agreement")}
        groups.setdefault(json.dumps(counts, sort_keys=True), []).append(key)
    source = ", ".join(
        dict.fromkeys(str(f.get("source", "?")) for f in run.evidence_cells.values())
    )
    notes = [
        f"Per-image AU evidence `{run.evidence}` (source: {source or '?'}): the `@evidence` "
        "scores compare the same maps with the heatmap of the AUs each image shows, over the "
        "images whose evidence map is valid."
    ]
    for text, cells in groups.items():
        found = json.loads(text)
        where = "every cell" if len(groups) == 1 else "cells " + ", ".join(cells)
        examples = found.get("unmatched_examples") or {}
        unmatched = {
            reason: f"{count} (e.g. {', '.join(examples[reason][:2])})"
            if examples.get(reason)
            else count
            for reason, count in (found.get("unmatched") or {}).items()
        }
        parts = [
            f"{found.get('images', '?')} images scored",
            f"{found.get('no_evidence', 0)} without evidence",
            f"evidence maps invalid: {_counts(found.get('invalid'), hyphens=True)}",
            f"AUs without a region (images showing them; not drawn): "
            f"{_counts(found.get('unregioned_aus'))}",
            f"evidence keys fitting no image or several: {_counts(unmatched)}",
            f"rows the reader skipped: {_counts(found.get('skipped_rows'))}",
        ]
        notes.append(f"Evidence, {where}: " + "; ".join(parts) + ".")
    return notes


def _counts(counts: dict | None, hyphens: bool = False) -> str:
    """``reason count, …`` of a reason → count mapping (``none`` when empty); ``hyphens``:
    reasons spelled as the per-image tables spell them (``no-present-aus``)."""
    if not counts:
        return "none"
    return ", ".join(
        f"{reason.replace('_', '-') if hyphens else reason} {count}"
        for reason, count in counts.items()
    )


def _slug(name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
