"""The report's figures, drawn from a run's results (never from models) with matplotlib's
object API (no pyplot state; PNG through Agg, PDF through matplotlib's PDF backend).

Each function returns a :class:`~matplotlib.figure.Figure`, or None when the run lacks what it
needs; :func:`save_figure` writes it as PNG and PDF. Colours follow the methods, line styles
and hatches the variants; error bars are the bootstrap CIs (seed means) when present, else the
seeds' standard deviation.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aubench.bench.results import CLASSIFIER, read_samples, sample_file
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.overlay import overlay_heatmap
from aubench.io import write_atomic
from aubench.metrics import derived_column
from aubench.report.runs import ACCURACY, RunData
from aubench.report.tables import confusion_matrix

#: Line styles and markers of the variants, in order (the baseline first).
STYLES = ("--", "-", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: Hatches of the variants' bars, in order.
HATCHES = ("", "//", "..", "xx", "\\\\")
#: PNG resolution.
DPI = 150


def save_figure(figure: Figure, stem: str | os.PathLike) -> list[Path]:
    """Write ``figure`` to ``stem``.png and ``stem``.pdf (atomically); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        # no creation date in the PDF: the same results give the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
        paths.append(write_atomic(stem.with_suffix(f".{fmt}"), buffer.getvalue()))
    return paths


def sample_grid(run: RunData, model: str, per_class: int = 1) -> Figure | None:
    """Faces (``per_class`` per class, rows) with the AU heatmap, then each method's map at its
    main layer for each variant (columns), all overlaid on the face; from the first seed's
    ``samples/`` files. None when ``model`` has no sample file."""
    seed = run.seeds[0]
    samples = {}
    for variant in run.variants:
        path = sample_file(run.path, model, variant, seed)
        if path.is_file():
            samples[variant] = read_samples(path)
    if not samples:
        return None
    first = next(iter(samples.values()))
    labels = np.asarray(first["labels"]).astype(int)
    picks = [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:per_class]]
    columns = [
        (method, variant)
        for method in run.methods
        for variant in samples
        if f"map|{method}|{run.main_layer(method)}" in samples[variant]
    ]
    figure, axes = _grid(len(picks), 1 + len(columns), 1.1, 1.2)
    axes[0, 0].set_title("AU heatmap", fontsize=7)
    for j, (method, variant) in enumerate(columns, start=1):
        axes[0, j].set_title(f"{method}\n{run.labels[variant]}", fontsize=7)
    for r, index in enumerate(picks):
        face = first["images"][index]
        _show(axes[r, 0], overlay_heatmap(face, first["heatmaps"][index].astype(np.float32)))
        axes[r, 0].set_ylabel(_class_name(labels[index]), fontsize=7)
        for j, (method, variant) in enumerate(columns, start=1):
            arrays = samples[variant]
            where = np.flatnonzero(np.asarray(arrays["ids"]) == first["ids"][index])
            if where.size:
                heat = arrays[f"map|{method}|{run.main_layer(method)}"][where[0]]
                _show(axes[r, j], overlay_heatmap(arrays["images"][where[0]], heat.astype(float)))
            else:
                _show(axes[r, j], None)
    figure.suptitle(f"{model}: AU heatmap and maps, seed {seed}", fontsize=8)
    return figure


def layer_curves(run: RunData, metrics: Sequence[str]) -> Figure | None:
    """Each metric (columns) of each model (rows) along the layers of every method with two or
    more layers: one line per method and variant. None when no method has several layers."""
    methods = [m for m in run.methods if len(run.layers_of(m)) >= 2]
    if not methods or not metrics:
        return None
    figure, axes = _grid(len(run.models), len(metrics), 3.2, 2.6, frame=True)
    for r, model in enumerate(run.models):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            for colour, method in enumerate(methods):
                layers = run.layers_of(method)
                for k, variant in enumerate(run.variants):
                    values = [
                        run.cells.get((model, variant, method, layer, metric), [np.nan])[0]
                        for layer in layers
                    ]
                    label = f"{method}, {run.labels[variant]}"
                    style, marker = STYLES[k % len(STYLES)], MARKERS[k % len(MARKERS)]
                    ax.plot(
                        layers, values, style, marker=marker, ms=3, color=f"C{colour}", label=label
                    )
            _label(ax, run, metric, model)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    _legend(figure, axes[0, -1])
    return figure


def metric_bars(run: RunData, metrics: Sequence[str]) -> Figure:
    """Bars of accuracy and each metric (columns) per model (rows): one group per method
    (controls included), one bar per variant, with error bars."""
    shown = [ACCURACY, *metrics]
    figure, axes = _grid(len(run.models), len(shown), 3.4, 2.6, frame=True)
    for r, model in enumerate(run.models):
        for c, metric in enumerate(shown):
            methods = [CLASSIFIER] if metric == ACCURACY else [*run.methods, *run.controls]
            cells = {(m, v): run.cell(model, v, m, metric) for m in methods for v in run.variants}
            _bars(axes[r, c], run, methods, cells)
            _label(axes[r, c], run, metric, model)
    _legend(figure, axes[0, -1])
    return figure


def per_au_bars(run: RunData) -> Figure | None:
    """Per-AU energy share (x: AUs) of each method (panels) and model (rows), one bar per
    variant. None when the run has no ``au_energy:AU<k>`` rows."""
    metrics = run.per_au_metrics()
    if not metrics:
        return None
    figure, axes = _grid(len(run.models), len(run.methods), 3.4, 2.6, frame=True)
    aus = [m.split(":", 1)[1] for m in metrics]
    for r, model in enumerate(run.models):
        for c, method in enumerate(run.methods):
            cells = {
                (au, v): run.cell(model, v, method, metric)
                for au, metric in zip(aus, metrics, strict=True)
                for v in run.variants
            }
            _bars(axes[r, c], run, aus, cells)
            _label(axes[r, c], run, metrics[0], f"{model}: {method}")
            axes[r, c].set_ylabel(f"{metrics[0].split(':', 1)[0]} {run.info(metrics[0]).arrow}")
    _legend(figure, axes[0, -1])
    return figure


def lambda_curve(run: RunData, metrics: Sequence[str]) -> Figure | None:
    """Accuracy and each metric (columns) per model (rows) against λ over the baseline (λ = 0,
    also a dashed line) and the λ sweep of guided variants; one line per method. None without
    a λ sweep."""
    sweep = run.sweeps().get("lambda")
    if not sweep or run.baseline is None:
        return None
    shown = [ACCURACY, *metrics]
    variants = [run.baseline, *sweep]
    lams = [0.0 if v == run.baseline else run.variants[v].lam for v in variants]
    figure, axes = _grid(len(run.models), len(shown), 3.2, 2.6, frame=True)
    for r, model in enumerate(run.models):
        for c, metric in enumerate(shown):
            ax = axes[r, c]
            methods = [CLASSIFIER] if metric == ACCURACY else run.methods
            for colour, method in enumerate(methods):
                values = np.array([run.cell(model, v, method, metric) for v in variants])
                ax.plot(lams, values[:, 0], "-o", ms=3, color=f"C{colour}", label=method)
                ax.axhline(values[0, 0], ls="--", lw=0.8, color=f"C{colour}")
            _label(ax, run, metric, model)
            ax.set_xlabel("λ (dashed: w/o AU)", fontsize=7)
    _legend(figure, axes[0, -1])
    return figure


def sanity_curves(run: RunData) -> Figure | None:
    """Cascading randomisation per model (rows) and variant (columns): the Spearman similarity
    of each method's maps (one line each) as the model is re-initialised from the top layer
    (left) down to the stem (right). None without ``sanity_spearman:<module>`` rows."""
    metrics = run.sanity_metrics()
    if not metrics:
        return None
    modules = [derived_column(m).label for m in metrics]
    width = max(3.2, 0.16 * len(modules))
    figure, axes = _grid(len(run.models), len(run.variants), width, 2.8, frame=True)
    for r, model in enumerate(run.models):
        for c, variant in enumerate(run.variants):
            ax = axes[r, c]
            for colour, method in enumerate(run.methods):
                values = [run.cell(model, variant, method, metric)[0] for metric in metrics]
                ax.plot(modules, values, "-o", ms=2.5, color=f"C{colour}", label=method)
            ax.axhline(0, lw=0.6, color="0.6")
            _label(ax, run, metrics[0], f"{model}, {run.labels[variant]}")
            ax.set_ylabel("Spearman to trained maps", fontsize=7)
            ax.set_xlabel("randomised from the top down to", fontsize=7)
            ax.tick_params(axis="x", labelrotation=90, labelsize=5)
    _legend(figure, axes[0, -1])
    return figure


def confusion_figure(run: RunData) -> Figure | None:
    """Row-normalised confusion matrices per model (rows) and variant (columns), pooled over
    seeds; None without per-image ``pred`` rows."""
    scores = run.per_image
    if scores is None:
        return None
    scores = scores[(scores["method"] == CLASSIFIER) & (scores["metric"] == "pred")]
    if scores.empty:
        return None
    figure, axes = _grid(len(run.models), len(run.variants), 3.0, 3.0, frame=True)
    for r, model in enumerate(run.models):
        for c, variant in enumerate(run.variants):
            ax = axes[r, c]
            cell = scores[(scores["model"] == model) & (scores["variant"] == variant)]
            if cell.empty:
                continue
            matrix = confusion_matrix(cell)
            ax.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="Blues")
            for (i, j), share in np.ndenumerate(matrix.to_numpy()):
                colour = "white" if share > 0.5 else "black"
                ax.text(j, i, f"{share:.2f}", ha="center", va="center", fontsize=5, color=colour)
            ax.set_xticks(range(matrix.shape[1]), [_class_name(k)[:3] for k in matrix.columns])
            ax.set_yticks(range(matrix.shape[0]), [_class_name(k)[:3] for k in matrix.index])
            ax.tick_params(labelsize=6)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
            ax.set_title(f"{model}, {run.labels[variant]}", fontsize=8)
    return figure


def _grid(
    rows: int, cols: int, width: float, height: float, frame: bool = False
) -> tuple[Figure, np.ndarray]:
    """A figure of rows × cols panels of width × height inches: framed plots (constrained
    layout), or image tiles on a fixed grid (fast with many tiles) unless ``frame``."""
    size = (width * cols, height * rows + (0.3 if frame else 0.8))
    figure = Figure(figsize=size, layout="constrained" if frame else None)
    axes = figure.subplots(rows, cols, squeeze=False)
    if not frame:  # room at the top for a title and two-line column titles
        top = 1 - 0.7 / size[1]
        figure.subplots_adjust(left=0.02, right=0.995, bottom=0.005, top=top, wspace=0.04)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    return figure, axes


def _legend(figure: Figure, ax: Axes) -> None:
    """The legend of ``ax``'s artists, outside the panels on the right."""
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=6)


def _show(ax: Axes, image: np.ndarray | None) -> None:
    if image is not None:
        ax.imshow(image, interpolation="nearest")


def _class_name(label: int) -> str:
    return EXPRESSIONS[label] if 0 <= label < len(EXPRESSIONS) else str(label)


def _label(ax: Axes, run: RunData, metric: str, title: str) -> None:
    info = run.info(metric)
    ax.set_ylabel(f"{info.label} {info.arrow}", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def _bars(
    ax: Axes, run: RunData, groups: Sequence[str], cells: dict[tuple[str, str], np.ndarray]
) -> None:
    """Grouped bars: ``groups`` on x, one bar per variant, error bars from CI else spread."""
    width = 0.8 / len(run.variants)
    for k, variant in enumerate(run.variants):
        numbers = np.array([cells[(g, variant)] for g in groups])
        value, low, high, spread = numbers[:, :4].T
        has_ci = np.isfinite(low) & np.isfinite(high)
        below = np.where(has_ci, value - low, np.nan_to_num(spread))
        above = np.where(has_ci, high - value, np.nan_to_num(spread))
        x = np.arange(len(groups)) + (k - (len(run.variants) - 1) / 2) * width
        ax.bar(
            x,
            value,
            width,
            yerr=np.nan_to_num([below, above]),
            capsize=2,
            color=f"C{k}",
            hatch=HATCHES[k % len(HATCHES)],
            label=run.labels[variant],
            error_kw={"lw": 0.8},
        )
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(groups) - 0.4)
