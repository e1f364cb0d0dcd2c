"""``aubench evaluate --maps``: precomputed maps from anywhere, scored against the AU heatmaps.

The maps here are the AU heatmaps themselves, upsampled to 96 px, so every map metric knows its
answer (cosine and the pointing game 1 up to the resize), in each layout the module documents:
nested ``.npy`` files named after the id without its extension, after the whole id, flat file
stems, grey ``.png`` files, and single ``.npz``, ``.pt`` and Parquet files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from aubench.bench.precomputed import MapsError, MapSource
from aubench.bench.results import read_manifest, read_per_image, read_results
from aubench.cli import main
from aubench.data.registry import open_dataset
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.faces.heatmaps import au_heatmaps

FAST = ["--quiet", "--bootstrap", "50", "--samples-per-class", "1", "--input-size", "48"]
METRICS = "cosine,pointing_game,per_au_energy,pxap"


def heatmaps_at_96(faces: Path) -> dict[str, np.ndarray]:
    """Each test image's AU heatmap at 48 px (the evaluation's), upsampled to 96 px."""
    split = open_dataset(f"folder:{faces}", "test", size=48, normalize=False)
    out = {}
    for i in range(len(split)):
        sample = split[i]
        heatmap, _ = au_heatmaps(sample["landmarks"][None], torch.tensor([sample["label"]]), 48)
        out[sample["id"]] = F.interpolate(heatmap[None], size=96, mode="bilinear")[0, 0].numpy()
    return out


def save_layouts(maps: dict[str, np.ndarray], root: Path) -> dict[str, Path]:
    """``maps`` written in every layout; returns layout → path."""
    paths = {name: root / name for name in ("nested", "whole-id", "flat", "png")}
    for image_id, array in maps.items():
        bare = Path(image_id).with_suffix("")
        for _, target in (
            ("nested", paths["nested"] / f"{bare}.npy"),
            ("whole-id", paths["whole-id"] / f"{image_id}.npy"),
            ("flat", paths["flat"] / f"{bare.name}.npy"),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, array.astype(np.float32))
        png = paths["png"] / f"{bare}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(np.round(array / max(array.max(), 1e-12) * 255).astype(np.uint8)).save(
            png
        )
    paths["npz"] = root / "maps.npz"
    np.savez(paths["npz"], **maps)
    paths["pt"] = root / "maps.pt"
    torch.save({k: torch.from_numpy(v) for k, v in maps.items()}, paths["pt"])
    paths["parquet"] = root / "maps.parquet"
    rows = {"id": list(maps), "map": [v.tolist() for v in maps.values()]}
    pq.write_table(pa.table(rows), paths["parquet"])
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict[str, Path], dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("maps")
    export_synthetic(SyntheticFaces(50, 64, "train", 0), root / "faces", progress=False)
    maps = heatmaps_at_96(root / "faces")
    return root, save_layouts(maps, root), maps


def evaluate(root: Path, maps: Path, out: str, *flags: str) -> int:
    data = f"folder:{root / 'faces'}"
    return main(["evaluate", "--maps", str(maps), "--data", data, "--out", str(root / out),
                 *FAST, *flags])  # fmt: skip


def headline(run: Path, metric: str) -> float:
    table = read_results(run)
    return table[(table.metric == metric) & (table["class"] == "macro")].value.item()


def test_heatmaps_as_maps_score_one_in_every_layout(world, capsys):
    root, paths, _ = world
    for layout, path in paths.items():
        assert evaluate(root, path, f"run-{layout}", "--metrics", METRICS) == 0, layout
    out = capsys.readouterr().out
    assert "note:" not in out  # nothing missing, extra, unusable or skipped
    for layout in paths:
        run = root / f"run-{layout}"
        assert headline(run, "cosine") > 0.99 and headline(run, "pointing_game") == 1.0, layout
        table = read_results(run)
        assert set(table.method) == {"maps"} and set(table.layer) == {"input"}
        assert "accuracy" not in set(table.metric)  # no model, no predictions
        assert "pred" not in set(read_per_image(run).metric)
    scores = {layout: read_per_image(root / f"run-{layout}").value for layout in paths}
    for layout in ("whole-id", "flat", "npz", "pt", "parquet"):
        pd.testing.assert_series_equal(scores["nested"], scores[layout], atol=1e-6, rtol=0)
    pd.testing.assert_series_equal(scores["nested"], scores["png"], atol=0.02, rtol=0)

    (info,) = read_manifest(root / "run-nested")["models"].values()
    assert info["postprocess"] == "resize(48x48, bilinear, align_corners=False) > minmax"
    assert info["matched"] == {"id without extension": 10} and info["extra"] == 0
    (flat,) = read_manifest(root / "run-flat")["models"].values()
    assert flat["matched"] == {"file stem": 10}
    assert main(["report", str(root / "run-nested")]) == 0


def test_metrics_that_need_a_model_are_skipped_and_said(world, capsys):
    root, paths, _ = world
    metrics = "cosine,deletion_auc,cascading_randomisation"
    assert evaluate(root, paths["nested"], "run-skip", "--metrics", metrics) == 0
    out = capsys.readouterr().out
    assert "deletion_auc not scored: needs the model (model metric" in out
    assert "cascading_randomisation not scored: needs the model (sanity metric" in out
    assert set(read_results(root / "run-skip").metric) == {"cosine"}
    assert evaluate(root, paths["nested"], "run-none", "--metrics", "deletion_auc") == 2
    assert "none of the metrics deletion_auc can be scored from maps" in capsys.readouterr().err


@pytest.fixture
def damaged(world, tmp_path) -> Path:
    """The nested maps with one map missing, one of rank 3, one with NaN and one extra."""
    _, _, maps = world
    ids = sorted(maps)
    folder = save_layouts(maps, tmp_path)["nested"]
    stem = [folder / Path(i).with_suffix(".npy") for i in ids]
    stem[0].unlink()
    np.save(stem[1], np.stack([maps[ids[1]]] * 3))
    broken = maps[ids[2]].copy()
    broken[:2, :6] = np.nan
    np.save(stem[2], broken)
    np.save(folder / "images" / "ghost.npy", maps[ids[3]])
    return folder


def test_bad_maps_are_one_line_errors_naming_the_value(world, damaged, capsys):
    root, _, maps = world
    ids = sorted(maps)
    assert evaluate(root, damaged, "run-missing") == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1 and f"no map for 1 of the 10 test images, e.g. '{ids[0]}'" in error
    )
    assert "--skip-bad-maps" in error
    np.save(damaged / Path(ids[0]).with_suffix(".npy"), maps[ids[0]])
    assert evaluate(root, damaged, "run-bad") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "2 of the 10 maps cannot be scored" in error
    assert "wrong-rank 1 (e.g. " in error and "shape (3, 96, 96), expected (H, W)" in error
    assert "non-finite 1 (e.g. " in error and "12 NaN and 0 infinite values" in error
    assert not (root / "run-bad" / "results.parquet").exists()


def test_skipped_maps_are_counted_by_reason(world, damaged, capsys):
    root, _, maps = world
    assert evaluate(root, damaged, "run-skipped", "--skip-bad-maps") == 0
    out = capsys.readouterr().out
    assert "1 map(s) match no scored image, e.g. images/ghost" in out
    for problem in ("missing", "wrong-rank", "non-finite"):
        assert f"1 map(s) {problem}, not scored" in out
    (info,) = read_manifest(root / "run-skipped")["models"].values()
    assert info["problems"] == {"missing": 1, "wrong-rank": 1, "non-finite": 1}
    assert info["extra"] == 1
    table = read_results(root / "run-skipped")
    overall = table[(table.metric == "cosine") & (table["class"] == "all")]
    cosine = read_per_image(root / "run-skipped").query("metric == 'cosine'")
    bad = cosine[cosine.id.isin(sorted(maps)[:3])]  # the three damaged maps' images
    assert bad.value.isna().all() and not bad.reason.eq("valid").any()
    assert bad[bad.label != 0].reason.eq("undefined").all()  # neutral ones stay no-aus
    good = (cosine.label != 0) & ~cosine.id.isin(bad.id)  # non-neutral, with a usable map
    assert overall.n.item() == int(good.sum()) == int(cosine.reason.eq("valid").sum())


def test_model_flags_are_refused_with_maps(world, capsys):
    root, paths, _ = world
    assert evaluate(root, paths["nested"], "run-flags", "--explainers", "gradcam") == 2
    assert "--explainers: for --model only" in capsys.readouterr().err
    assert evaluate(root, paths["nested"], "run-flags", "--channels", "1") == 2
    assert "--channels: for --model only; maps are scored as they are" in capsys.readouterr().err


def test_two_maps_for_one_image_or_an_unreadable_file_are_refused(tmp_path):
    (tmp_path / "dir" / "images").mkdir(parents=True)
    np.save(tmp_path / "dir" / "images" / "a.npy", np.zeros((4, 4)))
    PIL.Image.new("L", (4, 4)).save(tmp_path / "dir" / "images" / "a.png")
    with pytest.raises(MapsError, match=r"two maps for 'images/a': \S+a.npy and \S+a.png"):
        MapSource(tmp_path / "dir")
    (tmp_path / "maps.npz").write_text("not a zip")
    with pytest.raises(MapsError, match=r"maps \S+maps.npz: cannot read it"):
        MapSource(tmp_path / "maps.npz")
    (tmp_path / "maps.csv").touch()
    with pytest.raises(MapsError, match=r"unknown format \.csv"):
        MapSource(tmp_path / "maps.csv")
