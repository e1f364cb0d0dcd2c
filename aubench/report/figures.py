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
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from aubench.bench.results import CLASSIFIER, read_samples, sample_file
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.overlay import overlay_heatmap
from aubench.io import write_atomic
from aubench.metrics import derived_column
from aubench.report.runs import ACCURACY, RunData, is_control
from aubench.report.tables import confusion_matrix

#: Line styles and markers of the variants, in order (the baseline first).
STYLES = ("--", "-", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: Hatches of the variants' bars, in order.
HATCHES = ("", "//", "..", "xx", "\\\\")
#: PNG resolution.
DPI = 150
#: Width of a face tile of the samples figure (inches: TILE × DPI = 93 PNG pixels), and the
#: most pixels a tile keeps (larger faces are resampled down).
TILE = 0.62
TILE_PIXELS = 128
#: The grey of a tile whose face or map the samples lack.
MISSING = 0.88
#: The samples' array of per-image AU evidence heatmaps (runs scored against evidence).
EVIDENCE_HEATMAPS = "evidence_heatmaps"
#: Colour map of the agreement figure's shares, and the colour outlining prototype AUs.
SHARE_CMAP = "Blues"
PROTOTYPE_EDGE = "#d62728"


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


def sample_grid(
    run: RunData,
    models: str | Sequence[str],
    per_class: int = 1,
    methods: Sequence[str] | None = None,
) -> Figure | None:
    """The sample faces with every producer's map, from the first seed's ``samples/`` files.

    One panel per variant, side by side, titled with its label. In each panel a column is a
    face (``per_class`` faces of each class, by class, named above) and the rows are the face,
    its AU heatmap, its AU evidence's heatmap (a run scored against per-image evidence: the
    samples' ``evidence_heatmaps``), then one row per producer: each method with maps in the
    samples of each of ``models`` (rows grouped by model), at its last layer there (in the
    run's layer order), methods in the run's order, then (apart) the controls; a small second
    line names the row's model (several models) and layer (when they differ). A column
    compares every producer on one face; the same column of the next panel shows the same face
    (matched by id) under the next variant. Maps and heatmaps share one colour scale
    (:func:`~aubench.faces.overlay.overlay_heatmap`'s jet over [0, 1], the colour bar) over the
    face in grey; a light grey tile is a face or map the samples lack. Every face and map is
    resampled (nearest pixel) to the first file's face size, shrunk to at most
    :data:`TILE_PIXELS` a side.

    Args:
        run: the run's results.
        models: a model, or several (each producer row then also names its model).
        per_class: faces per class (columns of each panel).
        methods: the producers shown, in this order (explainers or controls, e.g.
            ``["gradcam", "control:centre"]``); default every one in the samples.

    Returns:
        The figure, or None when no model of ``models`` has a sample file.

    Raises:
        ValueError: a name in ``methods`` has no map in the samples of ``models``.
    """
    models = [models] if isinstance(models, str) else list(models)
    seed = run.seeds[0]
    cells = {
        (model, variant): read_samples(path)
        for model in models
        for variant in run.variants
        if (path := sample_file(run.path, model, variant, seed)).is_file()
    }
    if not cells:
        return None
    producers = _producers(run, models, cells, methods)
    variants = [v for v in run.variants if any(key[1] == v for key in cells)]
    reference = next(iter(cells.values()))
    labels = np.asarray(reference["labels"]).astype(int)
    picks = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    ids = np.asarray(reference["ids"])[picks]
    face_h, face_w = reference["images"].shape[1:3]
    shrink = min(1.0, TILE_PIXELS / max(face_h, face_w))
    size = (round(face_h * shrink), round(face_w * shrink))
    faces = _resample(reference["images"][picks], size)
    header, names, details = [faces / 255.0], ["face"], [""]
    for key, name, detail in (
        ("heatmaps", "AU heatmap", ""),
        (EVIDENCE_HEATMAPS, "AU evidence", run.evidence),
    ):
        if key in reference:  # the evidence's heatmaps: in runs scored against evidence
            maps = _resample(reference[key][picks].astype(np.float32), size)
            header.append(overlay_heatmap(faces, maps, grey=True))
            names.append(name)
            details.append(detail)
    gap = max(1, size[0] // 24)
    groups = [(model, is_control(method)) for model, method, _ in producers]
    first = len(header)
    breaks = {first} | {first + k for k in range(1, len(groups)) if groups[k] != groups[k - 1]}
    panels, tops = [], []
    for variant in variants:
        rows = [
            _overlays(cells.get((model, variant)), ids, f"map|{method}|{layer}", size)
            for model, method, layer in producers
        ]
        mosaic, tops = _mosaic([*header, *rows], breaks, gap)
        panels.append(mosaic)
    # geometry in inches: a tile is TILE wide; room on the left for the row names
    scale = TILE / size[1]
    panel_w, panel_h = panels[0].shape[1] * scale, panels[0].shape[0] * scale
    names += [method for _, method, _ in producers]
    details += _row_details(producers, several_models=len(models) > 1)
    left = 0.25 + max(0.075 * len(n) for n in names)
    left = max(left, 0.25 + max(0.062 * len(d) for d in details))
    top, bottom, between = 0.75, 0.6, 0.3
    width = left + len(panels) * panel_w + (len(panels) - 1) * between + 0.1
    height = top + panel_h + bottom
    figure = Figure(figsize=(width, height))
    for k, (variant, mosaic) in enumerate(zip(variants, panels, strict=True)):
        x0 = left + k * (panel_w + between)
        ax = figure.add_axes((x0 / width, bottom / height, panel_w / width, panel_h / height))
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
        label = run.labels[variant]
        title = label if variant in label else f"{label} ({variant})"
        ax.set_title(title, fontsize=9, fontweight="bold", pad=17)
        for j, index in enumerate(picks):
            x = j * (size[1] + gap) + size[1] / 2
            ax.text(x, -gap, _class_name(labels[index]), ha="center", va="bottom", fontsize=7.5)
        if k == 0:
            for r, (name, detail) in enumerate(zip(names, details, strict=True)):
                y = tops[r] + size[0] / 2
                ax.text(
                    -2 * gap, y, name, ha="right", va="bottom" if detail else "center", fontsize=8
                )
                if detail:
                    ax.text(-2 * gap, y, detail, ha="right", va="top", fontsize=6.5, color="0.35")
    bar = figure.add_axes((left / width, 0.38 / height, min(3.0, panel_w) / width, 0.1 / height))
    figure.colorbar(ScalarMappable(Normalize(0, 1), "jet"), cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=6.5)
    bar.set_xlabel(
        "map / AU heatmap value (each map min-max normalised); opacity grows with the value",
        fontsize=7,
    )
    named = models[0] if len(models) == 1 else f"{len(models)} models (under each row's name)"
    figure.suptitle(
        f"{named}: AU heatmap and maps of each face, seed {seed}",
        y=1 - 0.12 / height,
        va="top",
        fontsize=10,
    )
    return figure


def _producers(
    run: RunData,
    models: Sequence[str],
    cells: dict[tuple[str, str], dict[str, np.ndarray]],
    methods: Sequence[str] | None,
) -> list[tuple[str, str, str]]:
    """(model, method, layer) of each producer row of :func:`sample_grid`, in row order: by
    model, then by ``methods`` (default: the run's methods then controls, then any other in file
    order); the layer is the method's last in the model's samples (in ``run.layers`` order).
    Controls do not depend on the model: with several models each is shown once, from the first
    model that has it, after every model's methods (unless ``methods`` orders them)."""
    found: dict[tuple[str, str], list[str]] = {}
    shown: dict[str, str] = {}  # control → the model whose samples show it
    for (model, _), arrays in sorted(cells.items(), key=lambda item: models.index(item[0][0])):
        for key in arrays:
            if key.startswith("map|"):
                _, method, layer = key.split("|", 2)
                if is_control(method) and shown.setdefault(method, model) != model:
                    continue
                found.setdefault((model, method), []).append(layer)
    if methods is not None:
        known = dict.fromkeys(method for _, method in found)
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(
                f"figure methods {unknown} have no maps in the samples of {list(models)} "
                f"({run.path / 'samples'}); known: {list(known)}"
            )
    order = list(methods) if methods is not None else [*run.methods, *run.controls]
    rank = {m: k for k, m in enumerate(order)}
    depth = {layer: k for k, layer in enumerate(run.layers)}
    rows = [
        (model, method, max(layers, key=lambda layer: depth.get(layer, -1)))
        for (model, method), layers in found.items()
        if methods is None or method in rank
    ]
    return sorted(
        rows,
        key=lambda row: (
            methods is None and is_control(row[1]),  # a given order is kept as given
            models.index(row[0]),
            rank.get(row[1], len(rank)),
        ),
    )


def _row_details(producers: Sequence[tuple[str, str, str]], several_models: bool) -> list[str]:
    """The small second line of each producer's row name: its model when rows come from several
    models, and its layer when the producers' layers differ."""
    several_layers = len({layer for _, _, layer in producers}) > 1
    return [
        " · ".join([*([model] if several_models else []), *([layer] if several_layers else [])])
        for model, _, layer in producers
    ]


def _overlays(
    arrays: dict[str, np.ndarray] | None, ids: np.ndarray, key: str, size: tuple[int, int]
) -> np.ndarray:
    """Map ``key`` of the faces ``ids`` over the grey face, resampled to ``size``: float
    (len(ids), *size, 3); :data:`MISSING` grey where the samples lack the face or the map."""
    tiles = np.full((len(ids), *size, 3), MISSING, dtype=np.float32)
    if arrays is None or key not in arrays:
        return tiles
    index = {id_: i for i, id_ in enumerate(np.asarray(arrays["ids"]).tolist())}
    found = [k for k, id_ in enumerate(ids.tolist()) if id_ in index]
    at = [index[id_] for id_ in ids[found].tolist()]
    if found:
        faces = _resample(arrays["images"][at], size)
        tiles[found] = overlay_heatmap(faces, _resample(arrays[key][at], size), grey=True)
    return tiles


def _resample(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-pixel resampling of (N, H, W, ...) images to (N, *size, ...) (float32): the
    output pixel i of n is the input pixel ⌊(i + ½)·H/n⌋."""
    images = np.asarray(images, dtype=np.float32)
    rows = ((np.arange(size[0]) + 0.5) * images.shape[1] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * images.shape[2] / size[1]).astype(int)
    return images[:, rows][:, :, cols]


def _mosaic(rows: Sequence[np.ndarray], breaks: set[int], gap: int) -> tuple[np.ndarray, list[int]]:
    """Rows of tiles (each (C, h, w, 3)) as one white-spaced image: ``gap`` pixels between
    tiles, 4·``gap`` above the rows in ``breaks`` (groups). Returns the image and each row's
    top pixel."""
    strips, tops, y = [], [], 0
    for r, tiles in enumerate(rows):
        if r:
            space = 4 * gap if r in breaks else gap
            strips.append(np.ones((space, strips[-1].shape[1], 3), dtype=np.float32))
            y += space
        padded = np.pad(tiles, ((0, 0), (0, 0), (0, gap), (0, 0)), constant_values=1.0)
        count, h, w = padded.shape[:3]
        strips.append(padded.transpose(1, 0, 2, 3).reshape(h, count * w, 3)[:, :-gap])
        tops.append(y)
        y += h
    return np.concatenate(strips), tops


def layer_curves(run: RunData, metrics: Sequence[str]) -> Figure | None:
    """Each metric (columns) of each model (rows) along the layers of every method with two or
    more layers: one line per method and variant. None when no method has several layers."""
    methods = [m for m in run.methods if len(run.layers_of(m)) >= 2]
    if not methods or not metrics:
        return None
    figure, axes = _grid(len(run.models), len(metrics), 3.2, 2.6)
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
    figure, axes = _grid(len(run.models), len(shown), 3.4, 2.6)
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
    figure, axes = _grid(len(run.models), len(run.methods), 3.4, 2.6)
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
    figure, axes = _grid(len(run.models), len(shown), 3.2, 2.6)
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
    figure, axes = _grid(len(run.models), len(run.variants), width, 2.8)
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


def dose_response_map(run: RunData, metric: str = "dose_corr") -> Figure | None:
    """The dose-response correlation per AU (columns) of each method and control (rows), one
    panel per model (rows) and variant (columns): the macro over classes of
    ``<metric>:AU<k>``, coloured from −1 (red) to 1 (blue), the value written in each cell
    (blank: no face scored it, e.g. a control whose energy does not move). None without such
    rows."""
    columns = sorted(
        (m for m in run.results["metric"].unique() if m.startswith(f"{metric}:")),
        key=lambda m: (derived_column(m).order, m),
    )
    if not columns:
        return None
    aus = [derived_column(m).label for m in columns]
    producers = [*run.methods, *run.controls]
    width, height = 0.75 + 0.34 * len(aus), 0.5 + 0.26 * len(producers)
    figure, axes = _grid(len(run.models), len(run.variants), width, height)
    norm = Normalize(-1.0, 1.0)
    for r, model in enumerate(run.models):
        for c, variant in enumerate(run.variants):
            ax = axes[r, c]
            values = np.array(
                [[run.cell(model, variant, p, m)[0] for m in columns] for p in producers]
            )
            ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", norm=norm, aspect="auto")
            for (i, j), value in np.ndenumerate(values):
                if np.isfinite(value):
                    shade = "white" if abs(value) > 0.6 else "black"
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5, color=shade)
            ax.set_xticks(range(len(aus)), aus, rotation=90)
            ax.set_yticks(range(len(producers)), producers)
            ax.axhline(len(run.methods) - 0.5, color="0.2", lw=0.8)  # the controls below
            ax.set_title(f"{model}, {run.labels[variant]}", fontsize=8)
            ax.tick_params(labelsize=6)
    bar = figure.colorbar(ScalarMappable(norm, "RdBu"), ax=axes[:, -1].tolist(), shrink=0.8)
    bar.set_label(f"{metric} (r of AU energy vs logit)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
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
    figure, axes = _grid(len(run.models), len(run.variants), 3.0, 3.0)
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


def agreement_figure(run: RunData) -> Figure | None:
    """Which AUs each class really shows: per class (rows) and AU (columns) the share of the
    class's images whose evidence shows the AU, its prototype's AUs in the codebook outlined,
    each row's exact-match share and mean Jaccard on its right; one panel per
    :class:`~aubench.report.runs.Agreement` of the run. None without per-image evidence."""
    agreements = run.agreements
    if not agreements:
        return None
    columns = max(len(a.aus) for a in agreements)
    rows = [len(a.classes) for a in agreements]
    left, right, cell = 1.55, 1.25, 0.34  # inches
    width = left + columns * cell + right
    height = sum(rows) * cell + len(agreements) * 0.75 + 1.1
    figure = Figure(figsize=(width, height))
    top = height - 0.35
    for agreement, count in zip(agreements, rows, strict=True):
        aus = agreement.aus
        shares = np.array([[c.frequency.get(au, 0.0) for au in aus] for c in agreement.classes])
        panel_h = count * cell
        top -= 0.4  # the panel's title and AU labels
        box = (left / width, (top - panel_h) / height, len(aus) * cell / width, panel_h / height)
        ax = figure.add_axes(box)
        ax.imshow(shares, cmap=SHARE_CMAP, vmin=0, vmax=1, aspect="auto")
        for (i, j), share in np.ndenumerate(shares):
            outlined = aus[j] in agreement.classes[i].prototype
            if outlined:
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.8, ec=PROTOTYPE_EDGE)
                )
            if share > 0 or outlined:
                colour = "white" if share > 0.6 else "black"
                text = f"{share:.2f}".removeprefix("0") if 0 < share < 1 else f"{share:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color=colour)
        ax.set_xticks(range(len(aus)), [f"AU{au}" for au in aus], rotation=90, fontsize=7)
        ax.xaxis.tick_top()
        labels = [f"{c.name} (n={c.n})" for c in agreement.classes]
        ax.set_yticks(range(len(labels)), labels, fontsize=7.5)
        ax.tick_params(length=0)
        for i, c in enumerate(agreement.classes):
            summary = f"{c.exact_share:.2f}   {c.jaccard:.2f}"
            ax.text(len(aus) - 0.2, i, summary, ha="left", va="center", fontsize=7)
        ax.text(len(aus) - 0.2, -0.75, "exact  Jaccard", ha="left", va="bottom", fontsize=6.5)
        if len(agreements) > 1:
            named = f"codebook {agreement.codebook}: {', '.join(agreement.cells)}"
            ax.set_title(named, fontsize=7, pad=30)
        top -= panel_h + 0.35
    bar_w = min(3.0, columns * cell)
    bar = figure.add_axes((left / width, 0.55 / height, bar_w / width, 0.1 / height))
    figure.colorbar(ScalarMappable(Normalize(0, 1), SHARE_CMAP), cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=6.5)
    bar.set_xlabel("share of the class's images showing the AU", fontsize=7)
    codebooks = ", ".join(dict.fromkeys(a.codebook for a in agreements))
    figure.suptitle(
        f"AUs each class shows (evidence {run.evidence}); outlined: its prototype in codebook "
        f"{codebooks}",
        y=1 - 0.08 / height,
        va="top",
        fontsize=9,
    )
    return figure


def _grid(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of rows × cols framed panels of width × height inches (constrained layout)."""
    figure = Figure(figsize=(width * cols, height * rows + 0.3), layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False)


def _legend(figure: Figure, ax: Axes) -> None:
    """The legend of ``ax``'s artists, outside the panels on the right."""
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=6)


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
