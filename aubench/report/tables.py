"""The paper's table shapes as format-independent data (:class:`Table`), rendered by
:mod:`aubench.report.latex` and :mod:`aubench.report.markdown`.

Tables (file stems in brackets):

- methods × {w/o AU, w/ AU} × {accuracy, chosen metrics} (``main``; the paper's Tables 1–2),
  and the same without accuracy for each metric category (``metrics_<category>``); in a run of
  several training methods (``manifest["methods"]``) one row per method's own map and per
  post-hoc explainer of the CAM model, in the paper's Table 1 order (:data:`PAPER_ROWS`), each
  with its own model's accuracy;
- per-layer scores, methods × layers × variants (``layers``);
- sweeps, variants × {accuracy, metric × method}: λ (``lambda``; the paper's Fig. 5 as a table)
  and aligned layers (``ablation``; the paper's Table 3);
- per-AU energy shares, methods × variants × AUs (``per_au``);
- the faithfulness scores on AU counterfactuals, methods × variants (``counterfactual``);
- in a run scored against per-image AU evidence too (``manifest["evidence"]``): each method's
  headline metrics against the codebook's heatmaps and against the evidence's, side by side
  per variant (``evidence``), and each class's codebook–evidence agreement (``agreement``, a
  :class:`TextTable`): how often its images show exactly its prototype's AUs, and which AUs
  they really show.

Every cell is a seed-averaged headline value (:attr:`RunData.summary`) with its CI, the seeds'
spread, the Holm-adjusted p-value of the paired test against the baseline (guided variants only;
:mod:`aubench.report.stats`) and the control flag (:func:`aubench.report.runs.control_flags`).
Control rows come last in each model's block and never compete for bold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from aubench.bench.results import CLASSIFIER
from aubench.metrics import COUNTERFACTUAL_KINDS, METRICS, derived_column
from aubench.report.runs import (
    ACCURACY,
    CELL_KEY,
    CELL_NUMBERS,
    CODEBOOK,
    EVIDENCE_SUFFIX,
    MetricInfo,
    RunData,
    is_control,
)
from aubench.report.stats import holm, significance_mark

Row = tuple[str, ...]
Column = tuple[str, str]
#: (model, variant, method, layer, metric): the :data:`aubench.report.runs.CELL_KEY` of a cell.
Key = tuple[str, str, str, str, str]
#: The map metric the main table shows when none is chosen (the paper's CAM-/ATT-COS).
DEFAULT_METRIC = "cosine"
#: The rows of the paper's Table 1, in its order, and their labels: a training method's own map
#: (on a model of that method), or a post-hoc explainer of the CAM model (GradCAM, GradCAM++,
#: LayerCAM; ``cam`` is both). Other explainers of the CAM model follow, in the run's order.
PAPER_ROWS = {
    "cam": "CAM",
    "wildcat": "WILDCAT",
    "gradcam": "GradCAM",
    "gradcam++": "GradCAM++",
    "acol": "ACoL",
    "prm": "PRM",
    "adl": "ADL",
    "cutmix": "CutMix",
    "layercam": "LayerCAM",
    "tscam": "TS-CAM",
    "apvit": "APViT",
}
#: Marks the row of a method whose only map is class-agnostic (its map metrics are left empty).
CLASS_AGNOSTIC_MARK = "‡"
#: The evaluation protocol of a run whose manifest names none: aubench's own.
DEFAULT_PROTOCOL = "aubench"
#: The most AUs the agreement table lists per class besides its prototype's (most frequent
#: first; the rest are counted).
SHOWN_AUS = 8


@dataclass(frozen=True)
class CellText:
    """One cell's formatted parts (a renderer adds its own markup)."""

    value: str  # "" when the cell is empty
    spread: str  # "" unless several seeds
    ci: tuple[str, str] | None
    stars: str  # "", "*" or "**"
    dagger: bool  # cannot tell this method from a control
    bold: bool  # best of its column (within its group)


@dataclass(frozen=True)
class Table:
    """A table: rows × columns of cells plus what the renderers need.

    ``value``, ``ci_low``, ``ci_high``, ``spread``, ``p`` (Holm-adjusted; NaN when untested)
    and ``flagged`` are DataFrames indexed by ``rows`` (names ``row_names``) with
    ``columns`` = (header group, sub-header) pairs; ``infos`` holds each column's metric.
    Bold marks the best value per column within blocks of equal leading ``group_levels`` row
    labels (``controls`` excluded), comparing the values as displayed. ``baseline`` is the
    column label the tests compare with; ``n_seeds`` the most seeds behind a cell. ``ranked``
    False: rows are not competitors (e.g. randomisation depths), so nothing is bold.
    ``remarks``: footnotes of the table's own, after those of its cells' marks.
    """

    name: str
    title: str
    value: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    spread: pd.DataFrame
    p: pd.DataFrame
    flagged: pd.DataFrame
    infos: tuple[MetricInfo, ...]
    controls: frozenset[Row]
    group_levels: int
    baseline: str
    n_seeds: int
    ranked: bool = True
    remarks: tuple[str, ...] = ()

    @property
    def rows(self) -> list[Row]:
        """Row labels (tuples: model when several, then method, layer, …) in display order."""
        return list(self.value.index)

    @property
    def columns(self) -> list[Column]:
        """(header group, sub-header) per column, in display order."""
        return list(self.value.columns)

    @property
    def row_names(self) -> list[str]:
        """Headers of the row-label columns."""
        return list(self.value.index.names)

    def row_labels(self) -> list[list[str]]:
        """Each row's labels as displayed: a label equal to the one above it (with everything
        to its left) is left blank."""
        rows = self.rows
        return [
            [
                "" if i and row[: k + 1] == rows[i - 1][: k + 1] else label
                for k, label in enumerate(row)
            ]
            for i, row in enumerate(rows)
        ]

    def rule_before(self, i: int) -> bool:
        """Whether a rule separates row ``i`` from the row above: a new block (model, or
        method in the layer table) or the first control of a block."""
        if i == 0:
            return False
        row, above = self.rows[i], self.rows[i - 1]
        new_block = row[: self.group_levels] != above[: self.group_levels]
        return new_block or (row in self.controls and above not in self.controls)

    def best(self) -> np.ndarray:
        """(R, C) bool: the cells shown in bold (none in a column whose values all tie)."""
        digits = np.array([info.digits for info in self.infos])
        rounded = np.stack(
            [np.round(self.value.iloc[:, j].to_numpy(np.float64), d) for j, d in enumerate(digits)],
            axis=1,
        )
        bold = np.zeros(rounded.shape, dtype=bool)
        if not self.ranked:
            return bold
        rows, levels = self.rows, self.group_levels
        for group in dict.fromkeys(row[:levels] for row in rows):
            members = np.array([r[:levels] == group and r not in self.controls for r in rows])
            for j, info in enumerate(self.infos):
                shown = rounded[members, j]
                shown = shown[np.isfinite(shown)]
                if len(np.unique(shown)) < 2:
                    continue
                top = shown.max() if info.higher_is_better else shown.min()
                bold[members, j] = rounded[members, j] == top
        return bold

    def texts(self, ci: bool = False) -> list[list[CellText]]:
        """Each cell's formatted parts; ``ci`` adds the CI bounds."""
        bold = self.best()
        out = []
        for i in range(len(self.rows)):
            line = []
            for j, info in enumerate(self.infos):
                value = self.value.iat[i, j]
                if not np.isfinite(value):
                    line.append(CellText("", "", None, "", False, False))
                    continue
                spread = self.spread.iat[i, j]
                low, high = self.ci_low.iat[i, j], self.ci_high.iat[i, j]
                bounds = (
                    (_number(low, info), _number(high, info))
                    if ci and np.isfinite(low) and np.isfinite(high)
                    else None
                )
                line.append(
                    CellText(
                        _number(value, info),
                        _number(spread, info) if np.isfinite(spread) else "",
                        bounds,
                        significance_mark(self.p.iat[i, j]),
                        bool(self.flagged.iat[i, j]),
                        bool(bold[i, j]),
                    )
                )
            out.append(line)
        return out

    def notes(self, ci: bool = False) -> list[str]:
        """Footnotes explaining what the table's cells show (plain text, Unicode marks)."""
        texts = [cell for line in self.texts(ci) for cell in line]
        notes = []
        if self.best().any():
            within = " within each block" if self.group_levels else ""
            notes.append(f"Bold: best per column{within} (controls excluded).")
        if any(cell.spread for cell in texts):
            notes.append(f"± standard deviation over {self.n_seeds} seeds.")
        if any(cell.ci for cell in texts):
            notes.append("[low, high]: bootstrap 95% CI (mean over seeds).")
        if any(cell.stars for cell in texts):
            notes.append(
                f"* p < 0.05, ** p < 0.01: two-sided paired sign-flip permutation test of the "
                f"per-image scores against {self.baseline}, Holm-corrected over this table."
            )
        if any(cell.dagger for cell in texts):
            notes.append(
                "† cannot tell this method from a control: the best control scores within this "
                "value's 95% CI or better."
            )
        return notes + list(self.remarks)


#: A run of text in a :class:`TextTable` cell: (text, emphasised).
Span = tuple[str, bool]
#: A space no line breaks at (an AU and its share stay together: ``~`` in LaTeX).
NBSP = "\u00a0"


@dataclass(frozen=True)
class TextTable:
    """A table of formatted text, nothing ranked or tested (the agreement table): ``header``
    names each column, ``align`` its LaTeX column type (``l``, ``c``, ``r``, or a wrapped
    ``p{width}``, left-aligned in Markdown), each row holds one cell per column, a cell being
    spans of text, some emphasised (bold); ``rules`` are the rows with a rule above them (a new
    block), ``notes`` the footnotes."""

    name: str
    title: str
    header: tuple[str, ...]
    align: tuple[str, ...]
    rows: tuple[tuple[tuple[Span, ...], ...], ...]
    notes: tuple[str, ...] = ()
    rules: frozenset[int] = frozenset()


class _Spec(NamedTuple):
    row: Row
    column: Column
    info: MetricInfo
    key: Key | None  # None: an empty cell
    control: bool = False  # a control's row (under a rule, never bold)


class _MethodRow(NamedTuple):
    """A row of a method table: its labels, the model and method (explainer or control) whose
    scores it shows, and whether its map metrics are left empty (a class-agnostic map)."""

    row: Row
    model: str
    method: str
    blank: bool = False


def method_table(
    run: RunData,
    metrics: Sequence[str],
    *,
    name: str = "main",
    title: str = "Accuracy and alignment with the AU heatmaps, without and with AU guidance.",
    accuracy: bool = True,
) -> Table | None:
    """Methods (then controls) × variants × {accuracy, ``metrics``}, each method at its main
    layer (the paper's Tables 1 and 2); None when no method has any of ``metrics``. Scores of
    the model itself (accuracy, ``au_occlusion``) repeat in every method's row, as in the paper,
    and are empty for the controls. A run of several training methods has one row per method
    (:func:`_paper_rows`), each showing its own model's accuracy; a class-agnostic method's map
    metrics are empty ("–"), with a footnote saying why."""
    present = _present(run)
    rows, levels = _paper_rows(run) if run.trained else _model_rows(run)
    specs = []
    for row in rows:
        model, method = row.model, row.method
        if not any((model, method, m) in present for m in metrics):
            continue
        for metric in ([ACCURACY] if accuracy else []) + list(metrics):
            info = run.info(metric)
            for variant in run.variants:
                column = (_header(info), run.labels[variant])
                if metric == ACCURACY or (model, CLASSIFIER, metric) in present:
                    # a property of the model (accuracy, AU occlusion): each method's row
                    shown = None if is_control(method) else CLASSIFIER
                else:
                    shown = None if row.blank else method
                key = None if shown is None else _key(run, model, variant, shown, metric)
                specs.append(_Spec(row.row, column, info, key, is_control(method)))
    if not specs:
        return None
    table = _assemble(run, name, title, ("Method",), specs, group_levels=levels)
    return replace(table, remarks=_blank_remarks(rows, specs))


def _blank_remarks(rows: Sequence[_MethodRow], specs: Sequence[_Spec]) -> tuple[str, ...]:
    """The footnote on the class-agnostic methods among ``rows`` that ``specs`` show."""
    shown_rows = {spec.row for spec in specs}
    blanked = [r for r in rows if r.blank and r.row in shown_rows]
    if not blanked:
        return ()
    names = ", ".join(r.row[-1].removesuffix(CLASS_AGNOSTIC_MARK) for r in blanked)
    return (
        f"{CLASS_AGNOSTIC_MARK} {names}: – for every map metric (no CAM-COS, as in the paper): "
        "its only map is class-agnostic, one attention map for every class, so there is no "
        "class activation map to score; its scores stay in the results, flagged "
        "class_agnostic in manifest.json.",
    )


def evidence_table(run: RunData, metrics: Sequence[str]) -> Table | None:
    """Methods (then controls; rows as in :func:`method_table`) × each of ``metrics`` the run
    also scored against per-image AU evidence × variants × {vs codebook, vs evidence}: the same
    maps' macro score against the label's prototype heatmaps (``<metric>``) and against each
    image's evidence heatmaps (``<metric>@evidence``, over the images whose evidence map is
    valid). None without evidence or without such a metric."""
    if run.evidence == CODEBOOK:
        return None
    available = set(run.map_metrics())
    plain = dict.fromkeys(m.removesuffix(EVIDENCE_SUFFIX) for m in metrics)
    paired = [m for m in plain if m in available and m + EVIDENCE_SUFFIX in available]
    if not paired:
        return None
    present = _present(run)
    rows, levels = _paper_rows(run) if run.trained else _model_rows(run)
    specs = []
    for row in rows:
        if not any((row.model, row.method, m) in present for m in paired):
            continue
        for metric in paired:
            for variant in run.variants:
                group = f"{_header(run.info(metric))} {run.labels[variant]}"
                for against, name in (("codebook", metric), ("evidence", metric + EVIDENCE_SUFFIX)):
                    shown = None if row.blank else _key(run, row.model, variant, row.method, name)
                    column = (group, f"vs {against}")
                    specs.append(
                        _Spec(row.row, column, run.info(name), shown, is_control(row.method))
                    )
    if not specs:
        return None
    title = (
        f"Alignment of the same maps with the codebook's AU heatmaps (vs codebook) and with "
        f"each image's AU evidence, {run.evidence} (vs evidence), without and with AU guidance."
    )
    remark = (
        f"vs codebook: against the heatmap of the label's prototype AUs; vs evidence: against "
        f"the heatmap of the AUs each image shows (evidence {run.evidence}, weighted by "
        "intensity), over the images whose evidence map is valid."
    )
    table = _assemble(run, "evidence", title, ("Method",), specs, group_levels=levels)
    return replace(table, remarks=(remark, *_blank_remarks(rows, specs)))


def agreement_table(run: RunData) -> TextTable | None:
    """Per class (rows; a block per :class:`~aubench.report.runs.Agreement` when the run's
    cells found several): its images ``n``, its prototype's AUs in the codebook, the share
    (and count) of its images showing exactly those AUs, the mean Jaccard index of an image's
    AUs with them, and the AUs its images show with the share showing each, most frequent
    first (at most :data:`SHOWN_AUS` besides the prototype's; prototype AUs in bold, shown even
    when no image shows them). None without per-image evidence."""
    agreements = run.agreements
    if not agreements:
        return None
    several = len(agreements) > 1
    codebooks = list(dict.fromkeys(a.codebook for a in agreements))
    by_codebook = len(codebooks) == len(agreements)  # the codebook tells the blocks apart
    rows, rules = [], set()
    for agreement in agreements:
        if rows:
            rules.add(len(rows))
        lead = agreement.codebook if by_codebook else ", ".join(agreement.cells)
        for k, c in enumerate(agreement.classes):
            cells: list[tuple[Span, ...]] = [
                ((c.name, False),),
                ((str(c.n), False),),
                ((", ".join(map(str, c.prototype)) or "–", False),),
                ((f"{c.exact_share:.2f} ({c.exact}/{c.n})", False),),
                ((f"{c.jaccard:.3f}", False),),
                _shown_aus(c.frequency, c.prototype),
            ]
            if several:  # the block's first row names what found it
                cells.insert(0, ((lead, False),) if k == 0 else ())
            rows.append(tuple(cells))
    header = ("Class", "n", "Prototype AUs", "Exact match", "Jaccard", "AUs shown (share)")
    align = ("l", "r", r"p{0.16\linewidth}", "c", "c", r"p{0.28\linewidth}")  # fits a page
    if several:
        header, align = ("Codebook" if by_codebook else "Cells", *header), ("l", *align)
    title = (
        f"Codebook–evidence agreement per class: how the AUs each image shows (evidence "
        f"{run.evidence}) agree with the class's prototype (codebook {', '.join(codebooks)})."
    )
    notes = [
        "n: the class's scored images. Exact match: the share (count) of its images showing "
        "exactly the prototype's AUs. Jaccard: the mean over its images of |shown ∩ prototype| "
        "/ |shown ∪ prototype| (1 when both are empty). AUs shown: the share of its images "
        f"showing each AU (intensity > 0), most frequent first, at most {SHOWN_AUS} besides "
        "the prototype's; bold: the prototype's AUs (listed even when no image shows them)."
    ]
    missing = max(int(found.get("no_evidence", 0)) for found in run.evidence_cells.values())
    if missing:
        notes.append(
            f"Images without evidence (no row of it matched them; {missing} in a cell, at "
            "most) count as showing no AU."
        )
    return TextTable("agreement", title, header, align, tuple(rows), tuple(notes), frozenset(rules))


def _shown_aus(frequency: dict[int, float], prototype: Sequence[int]) -> tuple[Span, ...]:
    """The spans of an agreement row's "AUs shown" cell: ``AU (share)`` (unbreakable) of the
    :data:`SHOWN_AUS` most frequent AUs and of every prototype AU, most frequent first (then
    by number), prototype AUs emphasised, ``+k more`` for the AUs left out; ``–`` for none."""
    ranked = sorted(frequency, key=lambda au: (-frequency[au], au))
    others = [au for au in ranked if au not in prototype and frequency[au] > 0]
    kept = set(others[:SHOWN_AUS]) | set(prototype)
    spans: list[Span] = []
    for au in (au for au in ranked if au in kept):
        if spans:
            spans.append((", ", False))
        spans.append((f"{au}{NBSP}({frequency[au]:.2f})", au in prototype))
    left = max(0, len(others) - SHOWN_AUS)
    if left:
        spans.append((f", +{left} more", False))
    return tuple(spans) or (("–", False),)


def _model_rows(run: RunData) -> tuple[list[_MethodRow], int]:
    """Each model's methods, then its controls (rows led by the model when there are several),
    and the number of leading block levels."""
    rows = [
        _MethodRow((*_prefix(run, model), method), model, method)
        for model in run.models
        for method in [*run.methods, *run.controls]
    ]
    return rows, _levels(run)


def _paper_rows(run: RunData) -> tuple[list[_MethodRow], int]:
    """The rows of a run of several training methods (:attr:`RunData.trained`), block by block
    (led by the block's suite model when there are several): each method's own map and each
    explainer of the CAM model, in the order of :data:`PAPER_ROWS` (labelled as the paper does),
    the other explainers of the CAM model, then the controls of the block's CAM model (of its
    first model without one); and the number of leading block levels."""
    blocks: dict[str, list[str]] = {}
    for label, trained in run.trained.items():
        blocks.setdefault(trained.block, []).append(label)
    order = list(PAPER_ROWS)
    rows = []
    for block, labels in blocks.items():
        prefix = (block,) if len(blocks) > 1 else ()
        found = []  # (rank, row)
        for label in labels:
            trained = run.trained[label]
            if trained.method == "cam":
                shown = [(m, m) for m in run.methods if run.layers_of(m, label)]
            else:
                shown = [(trained.method, trained.explainer)]
            for key, method in shown:
                text = PAPER_ROWS.get(key, key) + (CLASS_AGNOSTIC_MARK * trained.class_agnostic)
                row = _MethodRow((*prefix, text), label, method, trained.class_agnostic)
                found.append((order.index(key) if key in order else len(order), row))
        rows += [row for _, row in sorted(found, key=lambda pair: pair[0])]  # stable
        cam = next((x for x in labels if run.trained[x].method == "cam"), labels[0])
        rows += [_MethodRow((*prefix, c), cam, c) for c in run.controls if run.layers_of(c, cam)]
    return rows, int(len(blocks) > 1)


def layer_table(run: RunData, metrics: Sequence[str]) -> Table | None:
    """Each method with scores at two or more layers × its layers × variants × ``metrics``;
    None when no method has several layers."""
    specs = []
    for model in run.models:
        for method in [*run.methods, *run.controls]:
            layers = run.layers_of(method, model)
            if len(layers) < 2:
                continue
            for layer in layers:
                for metric in metrics:
                    info = run.info(metric)
                    for variant in run.variants:
                        key = (model, variant, method, layer, metric)
                        column = (_header(info), run.labels[variant])
                        row = (*_prefix(run, model), method, layer)
                        specs.append(_Spec(row, column, info, key, is_control(method)))
    if not specs:
        return None
    title = "Scores of each method at each of its layers, without and with AU guidance."
    levels = _levels(run) + 1
    return _assemble(run, "layers", title, ("Method", "Layer"), specs, group_levels=levels)


def sweep_table(run: RunData, kind: str, metrics: Sequence[str]) -> Table | None:
    """The baseline and a sweep of guided variants (``kind`` ``"lambda"`` or ``"layers"``, see
    :meth:`RunData.sweeps`) × {accuracy, each metric × method}; None without such a sweep."""
    sweep = run.sweeps().get(kind)
    if not sweep or run.baseline is None:
        return None
    specs = []
    for model in run.models:
        used = set()
        for variant in [run.baseline, *sweep]:
            label = _sweep_label(run, kind, variant)
            if label in used:  # two variants of the sweep with equal settings
                label = f"{label} ({variant})"
            used.add(label)
            row = (*_prefix(run, model), label)
            info = run.info(ACCURACY)
            key = _key(run, model, variant, CLASSIFIER, ACCURACY)
            specs.append(_Spec(row, (_header(info), ""), info, key))
            for metric in metrics:
                info = run.info(metric)
                for method in run.methods:
                    key = _key(run, model, variant, method, metric)
                    specs.append(_Spec(row, (_header(info), method), info, key))
    if kind == "lambda":
        name, title, level = "lambda", "Effect of the alignment weight λ (λ = 0: w/o AU).", "λ"
    else:
        name, title, level = "ablation", "Effect of the aligned layers.", "Aligned layers"
    return _assemble(run, name, title, (level,), specs, group_levels=_levels(run))


def per_au_table(run: RunData) -> Table | None:
    """Methods × variants × AUs of the share of map energy inside each AU region (the
    ``au_energy:AU<k>`` metrics, macro over classes); None when the run has none."""
    metrics = run.per_au_metrics()
    if not metrics:
        return None
    present = _present(run)
    specs = []
    for model in run.models:
        for method in [*run.methods, *run.controls]:
            if not any((model, method, m) in present for m in metrics):
                continue
            for variant in run.variants:
                row = (*_prefix(run, model), method, run.labels[variant])
                for metric in metrics:
                    info = run.info(metric)
                    prefix, au = metric.split(":", 1)
                    key = _key(run, model, variant, method, metric)
                    column = (f"{prefix} {info.arrow}", au)
                    specs.append(_Spec(row, column, info, key, is_control(method)))
    title = "Share of each map's energy inside each AU's region."
    rows = ("Method", "Setting")
    return _assemble(run, "per_au", title, rows, specs, group_levels=_levels(run))


def sanity_table(run: RunData) -> Table | None:
    """Cascading randomisation (Adebayo et al., 2018): rows = the module down to which the
    model's weights are re-initialised (top first), columns = method × variant, cells = the
    Spearman similarity between the maps of the randomised and of the trained model (macro over
    classes; lower: the map depends more on what the model learned). None without such rows."""
    metrics = run.sanity_metrics()
    if not metrics:
        return None
    specs = []
    for model in run.models:
        for metric in metrics:
            row = (*_prefix(run, model), derived_column(metric).label)
            info = run.info(metric)
            for method in run.methods:
                for variant in run.variants:
                    key = _key(run, model, variant, method, metric)
                    column = (f"{method} {info.arrow}", run.labels[variant])
                    specs.append(_Spec(row, column, info, key))
    title = (
        "Cascading randomisation: Spearman similarity of each method's maps before and after "
        "re-initialising the model from the top down to each module."
    )
    rows = ("Randomised down to",)
    table = _assemble(run, "sanity", title, rows, specs, group_levels=_levels(run))
    return replace(table, ranked=False)


def counterfactual_metrics(run: RunData) -> list[str]:
    """The run's metrics scored on AU counterfactuals (``au_agreement``, ``au_top1``, and the
    AU means ``dose_slope``, ``dose_corr``: kinds ``causal`` and ``dose``), in run order."""
    return [
        m for m in run.map_metrics() if m in METRICS and METRICS[m].kind in COUNTERFACTUAL_KINDS
    ]


def counterfactual_table(run: RunData) -> Table | None:
    """Methods (then controls) × variants × the counterfactual metrics (``counterfactual``):
    per image, the rank agreement of the map's per-AU energy with the AUs' causal effects and
    its top-1 hit, and the dose-response slope and correlation averaged over the image's AUs;
    macro over classes. None when the run has none."""
    metrics = counterfactual_metrics(run)
    if not metrics:
        return None
    title = (
        "Faithfulness on AU counterfactuals: agreement of each map's per-AU energy with the "
        "logit drop when the AU is removed, and dose-response of its AU energy to the AU's "
        "intensity (mean over each face's AUs), without and with AU guidance."
    )
    table = method_table(run, metrics, name="counterfactual", title=title, accuracy=False)
    if table is None:
        return None
    remark = (
        "au_agreement: Spearman's rank correlation, per face, of the map's energy share in "
        "each AU region with the target logit's drop when that AU alone is removed; au_top1: "
        "whether the "
        "map's most energetic AU is the most harmful to remove; dose_slope, dose_corr: the "
        "slope and Pearson's r of the map's energy in an AU's region against the target logit "
        "as the AU is drawn at 0, 0.25, 0.5, 0.75 and 1 times its intensity, averaged over the "
        "face's AUs. Controls ignore the model: a faithful method should score clearly above "
        "them."
    )
    return replace(table, remarks=(*table.remarks, remark))


def category_tables(run: RunData, shown: Sequence[str]) -> list[Table]:
    """One methods × variants table per metric category that has a metric not in ``shown``
    (``metrics_<category>``), with all of that category's metrics (those scored on AU
    counterfactuals have their own table, :func:`counterfactual_table`)."""
    categories: dict[str, list[str]] = {}
    causal = set(counterfactual_metrics(run))
    for metric in run.map_metrics():
        if metric in causal:
            continue
        categories.setdefault(run.info(metric).category, []).append(metric)
    tables = [
        method_table(
            run,
            metrics,
            name=f"metrics_{category}",
            title=f"All {category} metrics, without and with AU guidance.",
            accuracy=False,
        )
        for category, metrics in categories.items()
        if set(metrics) - set(shown)
    ]
    return [t for t in tables if t is not None]


def choose_metrics(run: RunData, metrics: Sequence[str] | None) -> list[str]:
    """The map metrics of the main table: ``metrics`` (checked against the run) or, by default,
    ``cosine`` when present, else the first map metric."""
    available = run.map_metrics()
    if metrics is None:
        if not available:
            return []
        return [DEFAULT_METRIC if DEFAULT_METRIC in available else available[0]]
    unknown = [m for m in metrics if m not in available and m not in run.per_au_metrics()]
    if unknown:
        raise ValueError(
            f"{run.path} has no scores for metric(s) {unknown}; it has {', '.join(available)}"
        )
    return list(metrics)


def run_protocol(run: RunData) -> str:
    """The evaluation protocol that produced ``run``'s scores (its manifest's ``protocol``)."""
    return str(run.manifest.get("protocol", DEFAULT_PROTOCOL))


def report_tables(run: RunData, metrics: Sequence[str] | None = None) -> list[Table | TextTable]:
    """Every table the run supports, in report order: main, evidence, agreement, layers,
    lambda, ablation, per_au, sanity, counterfactual, then the per-category tables. Under a
    protocol other than aubench's own, each caption ends by naming it."""
    chosen = choose_metrics(run, metrics)
    tables = [
        method_table(run, chosen),
        evidence_table(run, chosen),
        agreement_table(run),
        layer_table(run, chosen),
        sweep_table(run, "lambda", chosen),
        sweep_table(run, "layers", chosen),
        per_au_table(run),
        sanity_table(run),
        counterfactual_table(run),
        *category_tables(run, chosen),
    ]
    protocol = run_protocol(run)
    named = f" Evaluation protocol: {protocol}." if protocol != DEFAULT_PROTOCOL else ""
    return [replace(t, title=t.title + named) for t in tables if t is not None]


def confusion_matrix(per_image: pd.DataFrame) -> pd.DataFrame:
    """Row-normalised confusion matrix (true label × predicted label, int class ids) of the
    classifier's ``pred`` rows of ``per_image`` (pooled over whatever they hold: select one
    model and variant first). Rows of classes without a sample are absent."""
    rows = per_image[(per_image["method"] == CLASSIFIER) & (per_image["metric"] == "pred")]
    rows = rows[rows["value"].notna()]
    if rows.empty:
        raise ValueError("no classifier 'pred' rows to build a confusion matrix from")
    true = rows["label"].astype(int).to_numpy()
    pred = rows["value"].astype(int).to_numpy()
    classes = np.arange(max(true.max(), pred.max()) + 1)
    counts = pd.crosstab(true, pred).reindex(columns=classes, fill_value=0)
    counts.index.name, counts.columns.name = "label", "pred"
    return counts.div(counts.sum(axis=1), axis=0)


def _prefix(run: RunData, model: str) -> Row:
    """The model label that leads each row when the run has several models."""
    return (model,) if len(run.models) > 1 else ()


def _levels(run: RunData) -> int:
    """Leading row levels of a model block: 1 with several models, else 0."""
    return int(len(run.models) > 1)


def _header(info: MetricInfo) -> str:
    return f"{info.label} {info.arrow}"


def _key(run: RunData, model: str, variant: str, method: str, metric: str) -> Key:
    return (model, variant, method, run.main_layer(method, model), metric)


def _sweep_label(run: RunData, kind: str, variant: str) -> str:
    info = run.variants[variant]
    if not info.guided:
        return "0 (w/o AU)" if kind == "lambda" else "w/o AU"
    return f"{info.lam:g}" if kind == "lambda" else "+".join(info.layers) or variant


def _assemble(
    run: RunData,
    name: str,
    title: str,
    row_names: Row,
    specs: list[_Spec],
    *,
    group_levels: int,
) -> Table:
    """Look every cell's key up in the run's summary, tests and control flags."""
    rows = list(dict.fromkeys(s.row for s in specs))
    columns = list(dict.fromkeys(s.column for s in specs))
    infos = {s.column: s.info for s in specs}
    tests = dict(zip(_keys(run.tests), run.tests["p"], strict=True))
    flags = dict(zip(_keys(run.flags), run.flags["flagged"], strict=True))
    tested = list(dict.fromkeys(s.key for s in specs if s.key in tests and not s.control))
    adjusted = dict(zip(tested, holm([tests[k] for k in tested]), strict=True))
    shape = (len(rows), len(columns))
    numbers = np.full((len(CELL_NUMBERS), *shape), np.nan)
    p = np.full(shape, np.nan)
    flagged = np.zeros(shape, dtype=bool)
    n_seeds = 1
    for spec in specs:
        if spec.key not in run.cells:
            continue
        i, j = rows.index(spec.row), columns.index(spec.column)
        numbers[:, i, j] = run.cells[spec.key][: len(CELL_NUMBERS)]
        n_seeds = max(n_seeds, int(run.cells[spec.key][-1]))
        p[i, j] = np.nan if spec.control else adjusted.get(spec.key, np.nan)
        flagged[i, j] = bool(flags.get(spec.key, False))
    names = ["Model", *row_names] if len(rows[0]) > len(row_names) else list(row_names)
    index = pd.MultiIndex.from_tuples(rows, names=names)
    header = pd.MultiIndex.from_tuples(columns)

    def frame(data: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(data, index=index, columns=header)

    return Table(
        name=name,
        title=title,
        **{field: frame(data) for field, data in zip(CELL_NUMBERS, numbers, strict=True)},
        p=frame(p),
        flagged=frame(flagged),
        infos=tuple(infos[c] for c in columns),
        controls=frozenset(s.row for s in specs if s.control),
        group_levels=group_levels,
        baseline=run.labels.get(run.baseline or "", "the baseline"),
        n_seeds=n_seeds,
    )


def _present(run: RunData) -> set[tuple[str, str, str]]:
    """The (model, method, metric) triples the summary holds."""
    return set(run.summary[["model", "method", "metric"]].itertuples(index=False, name=None))


def _keys(table: pd.DataFrame) -> list[Key]:
    return list(table[CELL_KEY].itertuples(index=False, name=None))


def _number(value: float, info: MetricInfo) -> str:
    return f"{value:.{info.digits}f}"
