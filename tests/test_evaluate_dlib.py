"""Faces without landmarks, evaluated as a card's ``crop: align`` says: dlib on the fly on real
photographs that ship inside installed packages (scikit-image's ``astronaut``, matplotlib's
``grace_hopper``), eye-centre alignment to the card's side, heatmaps on the aligned face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from matplotlib import cbook

from aubench.bench.crops import DETECTED, CardFaces
from aubench.bench.results import read_manifest, read_per_image
from aubench.cli import main
from aubench.data.registry import open_dataset
from aubench.faces.heatmaps import au_heatmaps

SIZE = 64


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder dataset of the two photographs, labelled happiness, without landmarks."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    PIL.Image.fromarray(skimage.data.astronaut()).save(root / "images" / "astronaut.png")
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        PIL.Image.open(handle).convert("RGB").save(root / "images" / "grace_hopper.png")
    rows = ["image,label,split", "images/astronaut.png,1,test", "images/grace_hopper.png,1,test"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(autouse=True)
def empty_landmark_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUBENCH_CACHE", str(tmp_path / "cache"))


def test_dlib_landmarks_align_the_face_and_land_on_it(photos):
    split = open_dataset(f"folder:{photos}", "test", size=SIZE, normalize=False)
    assert split.landmark_source == "none"
    faces = CardFaces(split, "align", SIZE)
    for index in range(2):
        sample = faces[index]
        points = sample["landmarks"].numpy()
        assert sample["image"].shape == (3, SIZE, SIZE) and np.isfinite(points).all()
        left, right = points[36:42].mean(0), points[42:48].mean(0)  # where align_face puts them
        np.testing.assert_allclose(left, [(0.5 - 0.18) * SIZE - 0.5, 0.4 * SIZE - 0.5], atol=1e-3)
        np.testing.assert_allclose(right, [(0.5 + 0.18) * SIZE - 0.5, 0.4 * SIZE - 0.5], atol=1e-3)
        inner = points[17:68]  # brows, eyes, nose, mouth: inside the crop, in anatomical order
        assert (inner >= 0).all() and (inner < SIZE).all()
        assert left[1] < points[30, 1] < points[48:68, 1].mean()
        heatmap, valid = au_heatmaps(sample["landmarks"][None], torch.tensor([1]), SIZE)
        assert valid.item() and heatmap.amax() == 1.0
        peak = np.unravel_index(heatmap[0].argmax().item(), (SIZE, SIZE))
        assert points[:, 1].min() - 2 <= peak[0] <= points[:, 1].max()  # on the face
        skin = sample["image"][:, SIZE // 2 - 4 : SIZE // 2 + 4, SIZE // 2 - 4 : SIZE // 2 + 4]
        assert 0.2 < skin.mean() < 0.95  # the nose region: a lit face, not the zero fill
    assert faces.counts == {DETECTED: 2}


def test_evaluate_counts_the_faces_whose_landmarks_dlib_found(photos, tmp_path, capsys):
    argv = ["evaluate", "--model", "timm:resnet10t", "--data", f"folder:{photos}",
            "--input-size", str(SIZE), "--crop", "align", "--explainers", "gradcam",
            "--controls", "none", "--bootstrap", "20", "--out", str(tmp_path / "run"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"faces by landmark source: dataset 0, {DETECTED}: 2" in out
    (info,) = read_manifest(tmp_path / "run")["models"].values()
    assert info["faces"] == {
        "crop": "align",
        "size": SIZE,
        "landmarks": "none",
        "counts": {DETECTED: 2},
    }
    scores = read_per_image(tmp_path / "run")
    cosine = scores[scores.metric == "cosine"]
    assert len(cosine) == 2 and set(cosine.reason) <= {"valid", "undefined"}  # both have AUs
