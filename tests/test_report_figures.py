"""The samples figure's layout on hand-built sample files with many producers: one panel per
variant, the face and AU heatmap rows then one row per producer, a column per face; exact
tiles, missing ones, the producer subset, several models, and the grey-face overlay."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aubench.bench.results import (
    CLASSIFIER,
    RESULT_COLUMNS,
    read_samples,
    sample_file,
    write_manifest,
    write_results,
    write_samples,
)
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.overlay import LUMA, OVERLAY_ALPHA, overlay_heatmap
from aubench.report.figures import MISSING, TILE, _resample, sample_grid, save_figure
from aubench.report.runs import RunData
from tests.report_fixtures import METRICS, SPLIT, SUITE

VARIANTS = {
    "baseline": {"guided": False, "lam": 0.0, "layers": [], "loss": "ce"},
    "guided": {"guided": True, "lam": 4.0, "layers": ["layer4"], "loss": "ce+cos"},
}
#: 21 methods (the paper's interpretable-by-design ones at their heads, post-hoc explainers at
#: layer4) and 3 controls: the ~24 producers of a full cam-methods run
METHODS = [
    *(f"{m}|head" for m in ("wildcat", "acol", "prm", "adl", "cutmix", "tscam", "apvit")),
    *(f"{m}|layer4" for m in ("attention", "cam", "gradcam", "gradcam++", "xgradcam")),
    *(f"{m}|layer4" for m in ("layercam", "hirescam", "gradcam-elementwise", "eigencam")),
    *(f"{m}|layer4" for m in ("layer-gradcam", "fullgrad")),
    *(f"{m}|layer4" for m in ("integrated-gradients", "saliency", "guided-backprop")),
    *(f"control:{m}|layer4" for m in ("random", "centre", "generic")),
]


def write_samples_run(
    root: Path,
    producers: Mapping[str, Sequence[str]],
    size: int = 12,
    faces: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """A run folder whose ``samples/`` hold, for each model and both variants, one face per
    class (ids ``face<c>``) and a map ``map|<method>|<layer>`` per entry ``method|layer`` of
    ``producers[model]``: a blob whose centre moves with the producer, plus the AU blob when
    guided (max-normalised). Results: accuracy and macro cosine rows, enough for :class:`RunData`.

    Args:
        faces: optional images (7, H, W, 3) uint8 per model (default: colour gradients of
            ``size`` pixels).
    """
    run = root / "run"
    layers = sorted({p.split("|")[1] for ps in producers.values() for p in ps})
    write_manifest(run, {"variants": VARIANTS, "metrics": METRICS, "layers": layers})
    rows = []
    for model, entries in producers.items():
        images = (faces or {}).get(model, _faces(size))
        n, h, w = images.shape[:3]
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h - 1, w - 1])[:, None, None]
        heatmap = np.exp(-((xx - 0.5) ** 2 + (yy - 0.6) ** 2) / 0.02)
        for variant, spec in VARIANTS.items():
            arrays = {
                "images": images,
                "heatmaps": np.repeat(heatmap[None], n, 0).astype(np.float16),
                "labels": np.arange(n),
                "ids": np.array([f"face{c}" for c in range(n)]),
            }
            for k, entry in enumerate(entries):
                cx, cy = 0.2 + 0.6 * (k % 5) / 4, 0.2 + 0.6 * (k // 5 % 5) / 4
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.03)
                shown = (blob + heatmap) / (blob + heatmap).max() if spec["guided"] else blob
                arrays[f"map|{entry}"] = np.repeat(shown[None], n, 0).astype(np.float16)
            write_samples(sample_file(run, model, variant, 0), arrays)
            rows.append((model, variant, CLASSIFIER, "", "accuracy", "all"))
            rows += [(model, variant, *e.split("|"), "cosine", "macro") for e in entries]
    columns = ["model", "variant", "method", "layer", "metric", "class"]
    table = pd.DataFrame(rows, columns=columns).assign(suite=SUITE, seed=0, split=SPLIT)
    table = table.assign(value=0.5, ci_low=np.nan, ci_high=np.nan, n=7, n_excluded=0)
    write_results(run, table[RESULT_COLUMNS])
    return run


def _faces(size: int) -> np.ndarray:
    """Seven (size, size, 3) uint8 colour gradients, one per class."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return np.stack(
        [np.stack([xx * 255, yy * 255, np.full_like(xx, 35.0 * c)], -1) for c in range(7)]
    ).astype(np.uint8)


def _row_names(ax) -> list[str]:
    """The row names drawn left of a panel (right-aligned texts), top to bottom."""
    texts = [t for t in ax.texts if t.get_ha() == "right" and t.get_fontsize() == 8]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[1])]


def _tile(ax, tops: list[int], row: int, col: int, size: int, gap: int) -> np.ndarray:
    x = col * (size + gap)
    return np.asarray(ax.images[0].get_array())[tops[row] : tops[row] + size, x : x + size]


def test_many_producers_layout_and_exact_tiles(tmp_path):
    run = write_samples_run(tmp_path, {"resnet10t": METHODS})
    figure = sample_grid(RunData(run), "resnet10t")
    *panels, bar = figure.axes
    assert len(panels) == 2 and bar.get_xlabel().startswith("map / AU heatmap value")
    assert [ax.get_title() for ax in panels] == ["w/o AU (baseline)", "w/ AU (guided)"]
    methods = [m.split("|")[0] for m in METHODS]
    assert _row_names(panels[0]) == ["face", "AU heatmap", *methods]
    assert _row_names(panels[1]) == []  # row names once, on the left
    for ax in panels:  # the classes above the columns, in class order
        columns = [t.get_text() for t in ax.texts if t.get_ha() == "center"]
        assert columns == list(EXPRESSIONS[:7])
    # 26 rows of 12-px tiles, 1-px gaps, 4-px gaps above the producers and the controls
    tops = [
        0,
        13,
        *(29 + 13 * k for k in range(21)),
        *(29 + 13 * 21 + 3 + 13 * k for k in range(3)),
    ]
    height, width = 26 * 12 + 25 + 2 * 3, 7 * 12 + 6
    for ax in panels:
        assert ax.images[0].get_array().shape == (height, width, 3)
    # inches: the names (0.25 + 0.075 per character of "integrated-gradients"), two panels of
    # TILE per 12-px tile 0.3 apart, 0.1 right; 0.75 above and 0.6 below (the colour bar)
    panel = np.array([width, height]) * TILE / 12
    expected = [0.25 + 0.075 * 20 + 2 * panel[0] + 0.3 + 0.1, 0.75 + panel[1] + 0.6]
    np.testing.assert_allclose(figure.get_size_inches(), expected)
    # exact tiles: the colour face, the AU heatmap and gradcam's map over the grey face
    arrays = read_samples(sample_file(run, "resnet10t", "guided", 0))
    face, heatmap = arrays["images"][3], arrays["heatmaps"][3].astype(np.float32)
    np.testing.assert_array_equal(_tile(panels[1], tops, 0, 3, 12, 1), face / np.float32(255))
    # the figure blends every tile at once: float32 results may differ from one tile's blend in
    # the last bit, depending on the CPU's vector path (seen: 1.2e-7 on one VM)
    expected = overlay_heatmap(face, heatmap, grey=True)
    np.testing.assert_allclose(_tile(panels[1], tops, 1, 3, 12, 1), expected, rtol=0, atol=1e-6)
    row = 2 + methods.index("gradcam")
    expected = overlay_heatmap(face, arrays["map|gradcam|layer4"][3], grey=True)
    np.testing.assert_allclose(_tile(panels[1], tops, row, 3, 12, 1), expected, rtol=0, atol=1e-6)
    # the gaps are white
    image = np.asarray(panels[0].images[0].get_array())
    assert (image[:, 12] == 1).all() and (image[25:29] == 1).all()
    assert {p.suffix for p in save_figure(figure, tmp_path / "samples")} == {".png", ".pdf"}


def test_missing_faces_and_maps_are_grey_and_layers_are_named(tmp_path):
    run = write_samples_run(tmp_path, {"m": ["cam|layer4", "wildcat|head"]})
    path = sample_file(run, "m", "guided", 0)
    arrays = read_samples(path)
    del arrays["map|cam|layer4"]  # cam only in the baseline
    keep = arrays["ids"] != "face2"  # the guided samples lack face2
    write_samples(path, {k: v[keep] for k, v in arrays.items()})
    figure = sample_grid(RunData(run), "m")
    baseline, guided = figure.axes[:2]
    tops = [0, 13, 29, 42]
    assert (_tile(guided, tops, 2, 0, 12, 1) == np.float32(MISSING)).all()  # no cam map
    assert (_tile(guided, tops, 3, 2, 12, 1) == np.float32(MISSING)).all()  # no face2
    assert (_tile(guided, tops, 3, 3, 12, 1) != np.float32(MISSING)).any()
    assert (_tile(baseline, tops, 2, 0, 12, 1) != np.float32(MISSING)).any()
    # the layers differ: each row says its layer in small grey type
    details = [t.get_text() for t in baseline.texts if t.get_fontsize() == 6.5]
    assert details == ["layer4", "head"]


def test_producer_subset_in_the_given_order(tmp_path):
    run = write_samples_run(tmp_path, {"resnet10t": METHODS})
    data = RunData(run)
    figure = sample_grid(data, "resnet10t", methods=["control:centre", "wildcat", "gradcam"])
    assert _row_names(figure.axes[0]) == [
        "face",
        "AU heatmap",
        "control:centre",
        "wildcat",
        "gradcam",
    ]
    with pytest.raises(ValueError, match=r"\['gradcan'\] have no maps .* known: \['wildcat'"):
        sample_grid(data, "resnet10t", methods=["gradcam", "gradcan"])
    assert sample_grid(data, "vit_tiny") is None  # no sample file


def test_several_models_rows_grouped_and_resampled(tmp_path):
    producers = {
        "resnet10t": ["cam|layer4", "gradcam|layer4"],
        "resnet10t-wildcat": ["wildcat|head"],
    }
    big = np.repeat(np.repeat(_faces(12), 2, axis=1), 2, axis=2)  # 24 px: shown at 12 px
    run = write_samples_run(tmp_path, producers, faces={"resnet10t-wildcat": big})
    figure = sample_grid(RunData(run), ["resnet10t", "resnet10t-wildcat"])
    panel = figure.axes[0]
    assert _row_names(panel) == ["face", "AU heatmap", "cam", "gradcam", "wildcat"]
    details = [t.get_text() for t in panel.texts if t.get_fontsize() == 6.5]
    assert details == ["resnet10t · layer4", "resnet10t · layer4", "resnet10t-wildcat · head"]
    assert (
        figure.get_suptitle()
        == "2 models (under each row's name): AU heatmap and maps of each face, seed 0"
    )
    # a gap of 4 px between the two models' rows; the 24-px face resampled to the 12-px tiles
    tops = [0, 13, 29, 42, 58]
    assert panel.images[0].get_array().shape == (70, 90, 3)
    arrays = read_samples(sample_file(run, "resnet10t-wildcat", "baseline", 0))
    face = _resample(arrays["images"][1:2], (12, 12))[0]
    np.testing.assert_array_equal(face, _faces(12)[1])  # every other pixel of the doubled face
    heat = _resample(arrays["map|wildcat|head"][1:2], (12, 12))[0]
    expected = overlay_heatmap(face, heat, grey=True)
    np.testing.assert_array_equal(_tile(panel, tops, 4, 1, 12, 1), expected)


def test_several_models_show_each_control_once_after_every_method(tmp_path):
    """Controls do not depend on the model: a run of several methods shows each once, from the
    first model whose samples have it, below every model's own maps."""
    controls = ["control:centre|layer4", "control:random|layer4"]
    producers = {
        "resnet10t": ["cam|layer4", *controls],
        "resnet10t-wildcat": ["wildcat|head", *controls],
    }
    run = write_samples_run(tmp_path, producers)
    figure = sample_grid(RunData(run), ["resnet10t", "resnet10t-wildcat"])
    names = ["face", "AU heatmap", "cam", "wildcat", "control:centre", "control:random"]
    assert _row_names(figure.axes[0]) == names
    details = [t.get_text() for t in figure.axes[0].texts if t.get_fontsize() == 6.5]
    assert details[2:] == ["resnet10t · layer4", "resnet10t · layer4"]


def test_resample_picks_the_nearest_pixel():
    image = np.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_array_equal(_resample(image, (2, 2))[0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(
        _resample(image[:, :2, :2], (4, 2))[0], [[0, 1]] * 2 + [[4, 5]] * 2
    )


def test_grey_overlay_exact_values():
    image = np.array([[[255, 0, 0], [0, 255, 0]]], dtype=np.uint8)  # (1, 2, 3): red, green
    heatmap = np.array([[0.0, 1.0]])
    out = overlay_heatmap(image, heatmap, grey=True)
    np.testing.assert_allclose(out[0, 0], [LUMA[0]] * 3, rtol=1e-6)  # red's luminance, grey
    jet_one = np.array([0.5, 0.0, 0.0])  # jet(1): dark red
    expected = LUMA[1] * (1 - OVERLAY_ALPHA) + jet_one * OVERLAY_ALPHA
    np.testing.assert_allclose(out[0, 1], expected, atol=1e-6)
    # a batch blends like its images one by one
    batch = overlay_heatmap(np.stack([image, image[:, ::-1]]), np.stack([heatmap] * 2), grey=True)
    np.testing.assert_array_equal(batch[0], out)
    np.testing.assert_array_equal(batch[1], overlay_heatmap(image[:, ::-1], heatmap, grey=True))
