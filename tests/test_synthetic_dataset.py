import csv
import json

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aubench.cli import main
from aubench.data.preview import save_preview_grid
from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.faces.codebook import EXPRESSIONS, Expression
from aubench.faces.overlay import overlay_heatmap
from aubench.faces.synth import render_sample
from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY

# --- the Sample contract ------------------------------------------------------------------------


def test_sample_contract():
    dataset = SyntheticFaces(10, size=80, split="val", seed=4)
    sample = dataset[7]
    assert set(sample) == {
        "image", "label", "landmarks", "id", "shortcut", "au_intensity", "cue_corner"
    }  # fmt: skip
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 80, 80)
    assert sample["landmarks"].dtype == torch.float32 and sample["landmarks"].shape == (68, 2)
    assert isinstance(sample["label"], int) and 0 <= sample["label"] < 7
    assert sample["id"] == "synthetic-val-000007"
    assert sample["shortcut"] is False
    assert len(dataset) == 10


def test_image_is_the_rendered_face_normalised_with_imagenet_statistics():
    dataset = SyntheticFaces(5, size=64, split="test", seed=2)
    raw = render_sample(2, "test", 3, 64)
    expected = torch.from_numpy(raw.image).permute(2, 0, 1).float() / 255
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    torch.testing.assert_close(dataset[3]["image"], (expected - mean) / std)
    plain = SyntheticFaces(5, size=64, split="test", seed=2, normalize=False)[3]["image"]
    torch.testing.assert_close(plain, expected)
    assert plain.min() >= 0 and plain.max() <= 1
    np.testing.assert_array_equal(dataset[3]["landmarks"].numpy(), raw.landmarks)
    assert dataset[3]["label"] == raw.label


def test_indexing_matches_a_list():
    dataset = SyntheticFaces(4, size=64)
    assert dataset[-1]["id"] == dataset[3]["id"] == "synthetic-train-000003"
    with pytest.raises(IndexError):
        dataset[4]
    with pytest.raises(IndexError):
        dataset[-5]
    assert [s["id"] for s in dataset] == [f"synthetic-train-{i:06d}" for i in range(4)]


def test_labels_are_balanced_and_every_class_is_present():
    dataset = SyntheticFaces(700, size=64)
    counts = np.bincount(dataset.labels, minlength=7)
    assert counts.tolist() == [100] * 7
    assert [dataset[i]["label"] for i in range(0, 700, 97)] == dataset.labels[::97]


def test_eight_classes_include_contempt():
    dataset = SyntheticFaces(16, size=64, num_classes=8)
    assert sorted(set(dataset.labels)) == list(range(8))
    contempt = dataset.labels.index(Expression.CONTEMPT)
    assert dataset[contempt]["label"] == 7


def test_transform_is_applied_last():
    def transform(sample):
        return {**sample, "image": sample["image"].flip(-1), "seen": True}

    plain, flipped = SyntheticFaces(3, size=64), SyntheticFaces(3, size=64, transform=transform)
    assert flipped[1]["seen"]
    torch.testing.assert_close(flipped[1]["image"], plain[1]["image"].flip(-1))


def test_shortcut_flag_and_dataloader_collation():
    dataset = SyntheticFaces(8, size=64, shortcut=1.0)
    batch = next(iter(DataLoader(dataset, batch_size=8)))
    assert batch["image"].shape == (8, 3, 64, 64)
    assert batch["landmarks"].shape == (8, 68, 2)
    assert batch["shortcut"].all() and batch["label"].tolist() == dataset.labels
    assert len(batch["id"]) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive int"),
        ({"n": 5, "size": 63}, "63"),
        ({"n": 5, "size": 225}, "225"),
        ({"n": 5, "split": "dev"}, "dev"),
        ({"n": 5, "num_classes": 6}, "num_classes"),
        ({"n": 5, "seed": -1}, "seed"),
        ({"n": 5, "shortcut": 2.0}, "shortcut"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticFaces(**kwargs)


# --- export ---------------------------------------------------------------------------------


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_synth_command_writes_images_labels_and_preview(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["synth", "--n", "16", "--size", "64", "--seed", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "wrote 16 faces" in capsys.readouterr().out
    rows = read_rows(out / "labels.csv")
    header = rows[0]
    assert header[:3] == ["image", "label", "expression"]
    assert header[3:] == [f"x{i}" for i in range(68)] + [f"y{i}" for i in range(68)]
    assert len(rows) == 17
    dataset = SyntheticFaces(16, size=64, seed=1, difficulty=DEFAULT_DIFFICULTY)  # synth's default
    for index, row in enumerate(rows[1:]):
        sample = dataset[index]
        assert row[0] == f"images/{sample['id']}.png"
        assert int(row[1]) == sample["label"] and row[2] == EXPRESSIONS[sample["label"]]
        points = np.array(row[3:], dtype=float).reshape(2, 68).T
        np.testing.assert_allclose(points, sample["landmarks"].numpy(), atol=1e-3)
        image = cv2.cvtColor(cv2.imread(str(out / row[0])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, dataset.render(index).image)
    preview = cv2.imread(str(out / "preview.png"))
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert preview is not None and min(preview.shape[:2]) >= 200  # a 4×4 grid of tiles
    assert json.loads((out / "synth.json").read_text())["size"] == 64
    assert not list(out.rglob("*.tmp"))


def test_export_resumes_and_rewrites_the_csv(tmp_path):
    out = tmp_path / "synth"
    export_synthetic(SyntheticFaces(6, size=64), out, progress=False)
    kept = out / "images" / "synthetic-train-000001.png"
    kept.write_bytes(b"kept: an existing image is not re-rendered")
    (out / "images" / "synthetic-train-000004.png").unlink()
    (out / "labels.csv").write_text("broken")
    export_synthetic(SyntheticFaces(9, size=64), out, progress=False)
    assert kept.read_bytes().startswith(b"kept")
    assert len(list((out / "images").glob("*.png"))) == 9
    rows = read_rows(out / "labels.csv")
    assert len(rows) == 10 and rows[5][0] == "images/synthetic-train-000004.png"
    assert not (out / "preview.png").exists()


def test_export_refuses_foreign_or_mismatched_directories(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="not a synthetic export"):
        export_synthetic(SyntheticFaces(4, size=64), foreign, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]

    out = tmp_path / "synth"
    export_synthetic(SyntheticFaces(4, size=64), out, progress=False)
    with pytest.raises(ValueError, match="size: 64 → 96"):
        export_synthetic(SyntheticFaces(4, size=96), out, progress=False)


# --- preview grid ---------------------------------------------------------------------------


def test_preview_grid_overlays_heatmaps(tmp_path):
    images = np.full((5, 32, 32, 3), 128, np.uint8)
    heatmaps = np.zeros((5, 32, 32))
    heatmaps[:, 8:16, 8:16] = 1.0
    blended = overlay_heatmap(images[0], heatmaps[0])
    np.testing.assert_allclose(blended[0, 0], 128 / 255)  # zero heatmap: the image unchanged
    assert np.abs(blended[10, 10] - 128 / 255).max() > 0.2  # hot heatmap: coloured
    path = save_preview_grid(images, heatmaps, [0, 1, 2, "fear", 4], tmp_path / "grid.png", cols=2)
    grid = cv2.imread(str(path))
    assert grid.shape[0] > grid.shape[1]  # 3 rows of 2
    with pytest.raises(ValueError, match="labels"):
        save_preview_grid(images, heatmaps, [0, 1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="heatmaps"):
        save_preview_grid(images, heatmaps[:, :16], [0] * 5, tmp_path / "bad.png")
