"""``aubench landmarks``: compute, cache, resume and pick up landmarks for whole datasets."""

import csv
import os

import numpy as np
import pytest
import skimage.data

from aubench.cli import main
from aubench.data.dataset_backend import DatasetBackend
from aubench.data.landmarks_txt import write_landmarks_txt
from aubench.data.registry import open_dataset
from aubench.data.table import SkippedRowsWarning
from aubench.landmarks.base import NON_FINITE, NOT_IN_SOURCE, OK, PENDING, UNREADABLE_IMAGE
from aubench.landmarks.cache import LandmarkCache, cache_path, compute_landmarks
from aubench.landmarks.dlib_backend import DlibBackend
from tests.dataset_trees import face_points, image, write_corrupt, write_image


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def listing(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
    )


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "astronaut.png", skimage.data.astronaut())
    write_image(folder / "blank.png", image(200, 200, value=128))
    write_corrupt(folder / "corrupt.png")
    rows = [["astronaut.png", 1], ["blank.png", 0], ["corrupt.png", 2], ["missing.png", 3]]
    with open(folder / "labels.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([["image", "label"], *rows])
    return folder


def test_cli_computes_caches_and_datasets_pick_the_cache_up(photos, cache_dir, capsys):
    before = listing(photos)
    with pytest.warns(SkippedRowsWarning, match="missing image file: 1"):
        assert main(["landmarks", "--data", f"folder:{photos}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (
        "folder (3 images): 1/3 images have landmarks; failures: unreadable_image 1, no_face 1"
        in out
    )
    assert listing(photos) == before  # nothing written into the dataset
    files = listing(cache_dir)
    assert (
        len(files) == 1
        and files[0].startswith("landmarks/folder-")
        and files[0].endswith("/dlib.parquet")
    )
    assert f"cache: {cache_dir / files[0]}" in out

    cache = LandmarkCache.load(cache_dir / files[0])
    assert cache.status.tolist() == [OK, 3, UNREADABLE_IMAGE]  # 3 = no_face
    assert cache.meta["backend"]["backend"] == "dlib" and cache.meta["counts"]["ok"] == 1

    with pytest.warns(SkippedRowsWarning) as caught:
        data = open_dataset(f"folder:{photos}", "all", size=256, normalize=False)
    assert "unreadable image (landmark cache): 1" in str(caught[0].message)
    assert data.landmark_source == "cache:dlib" and len(data) == 2
    assert data.skipped == {"missing image file": 1, "unreadable image (landmark cache)": 1}
    direct = DlibBackend()([skimage.data.astronaut()]).landmarks[0]
    np.testing.assert_allclose(data[0]["landmarks"].numpy(), (direct + 0.5) * 0.5 - 0.5, atol=1e-4)
    assert np.isnan(data[1]["landmarks"].numpy()).all()  # blank: no face


def test_cli_resumes_refuses_other_settings_and_overwrites(photos, capsys):
    args = ["landmarks", "--data", f"folder:{photos}", "--quiet"]
    with pytest.warns(SkippedRowsWarning):
        assert main(args) == 0
        assert main(args) == 0  # nothing pending: done at once
        assert main([*args, "--min-score", "0.5"]) == 2
        assert "computed with other settings" in capsys.readouterr().err
        assert main([*args, "--min-score", "0.5", "--overwrite"]) == 0
    assert main(["landmarks", "--data", "synthetic", "--quiet"]) == 2
    assert "synthetic faces carry exact landmarks" in capsys.readouterr().err


@pytest.fixture
def tiny(tmp_path):
    """A folder of 40 tiny images without landmarks, and a landmarks.txt for 38 of them."""
    folder = tmp_path / "tiny"
    rows, ids, points = [], [], []
    for k in range(40):
        write_image(folder / f"{k:02d}.png", image(24, 24, value=k))
        rows.append([f"{k:02d}.png", k % 7])
        ids.append(f"{k:02d}.png")
        points.append(face_points(k % 5, 1, 20))
    points[7][3] = np.inf  # a failed detection in the paper's format
    with open(folder / "labels.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([["image", "label"], *rows])
    write_landmarks_txt(tmp_path / "landmarks.txt", ids[:38], np.stack(points[:38]))
    return folder, tmp_path / "landmarks.txt", np.stack(points)


class Interrupted(DatasetBackend):
    """The real dataset backend, interrupted (as by Ctrl-C) on its ``stop_at``-th call."""

    def __init__(self, source, stop_at=None):
        super().__init__(source)
        self.stop_at, self.calls, self.seen = stop_at, 0, []

    def __call__(self, images, ids):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.seen += ids
        return super().__call__(images, ids)


def test_interrupted_run_resumes_where_it_stopped(tiny):
    folder, txt, points = tiny
    data = open_dataset(f"folder:{folder}", "all", landmarks="none")
    first = Interrupted(str(txt), stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        compute_landmarks(data, first, chunk=4, checkpoint_every=3600, progress=False)
    saved = LandmarkCache.load(cache_path(data.table, "dataset"))
    assert (saved.status != PENDING).sum() == 8 and (saved.status == PENDING).sum() == 32
    second = Interrupted(str(txt))
    cache = compute_landmarks(data, second, chunk=4, progress=False)
    assert second.seen == [f"{k:02d}.png" for k in range(8, 40)]
    assert cache.counts == {"ok": 37, "not_in_source": 2, "non_finite": 1}
    assert cache.status[7] == NON_FINITE and cache.status[39] == NOT_IN_SOURCE
    good = cache.status == OK
    np.testing.assert_allclose(cache.landmarks[good], points[good], atol=1e-3)
    assert np.isnan(cache.landmarks[~good]).all()


def test_worker_processes_give_the_same_cache(tiny, cache_dir):
    folder, txt, _ = tiny
    data = open_dataset(f"folder:{folder}", "all", landmarks="none")
    alone = compute_landmarks(data, DatasetBackend(str(txt)), progress=False)
    landmarks, status = alone.landmarks.copy(), alone.status.copy()
    pooled = compute_landmarks(
        data, DatasetBackend(str(txt)), overwrite=True, workers=2, chunk=8, progress=False
    )
    np.testing.assert_array_equal(pooled.landmarks, landmarks)
    np.testing.assert_array_equal(pooled.status, status)


def test_cache_keys_on_the_dataset_and_survives_new_rows(tiny):
    folder, txt, points = tiny
    data = open_dataset(f"folder:{folder}", "all", landmarks="none")
    compute_landmarks(data, DatasetBackend(str(txt)), progress=False)
    with open(folder / "labels.csv", "a") as handle:  # a new image appears
        handle.write("new.png,1\n")
    write_image(folder / "new.png", image(24, 24))
    grown = open_dataset(f"folder:{folder}", "all", landmarks="none")
    assert grown.fingerprint == data.fingerprint
    test = open_dataset(f"folder:{folder}", "all", size=48, landmarks="cache")
    assert test.landmark_source == "cache:dataset"
    np.testing.assert_allclose(test[0]["landmarks"].numpy(), (points[0] + 0.5) * 2 - 0.5, atol=2e-3)
    assert np.isnan(test[40]["landmarks"].numpy()).all()  # not computed yet
    cache = compute_landmarks(grown, DatasetBackend(str(txt)), progress=False)
    assert cache.status[-1] == NOT_IN_SOURCE and len(cache.status) == 41


def test_landmark_modes(tiny, cache_dir):
    folder, txt, points = tiny
    spec = f"folder:{folder}"
    with pytest.raises(
        FileNotFoundError,
        match=f"compute it with `aubench landmarks --data folder:{folder} --backend dlib`",
    ):
        open_dataset(spec, "all", landmarks="cache:dlib")
    with pytest.raises(ValueError, match="folder ships no landmarks"):
        open_dataset(spec, "all", landmarks="dataset")
    with pytest.raises(ValueError, match="unknown landmark backend 'dlb'"):
        open_dataset(spec, "all", landmarks="cache:dlb")
    with pytest.raises(ValueError, match="landmarks must be 'auto', 'dataset'"):
        open_dataset(spec, "all", landmarks="shipped")
    assert open_dataset(spec, "all").landmark_source == "none"
    from_file = open_dataset(spec, "all", size=24, landmarks=str(txt))
    assert from_file.landmark_source == f"file:{txt}"
    np.testing.assert_allclose(from_file[3]["landmarks"].numpy(), points[3], atol=1e-3)
    assert (
        np.isnan(from_file[7]["landmarks"].numpy()).all()
        and np.isnan(from_file[39]["landmarks"].numpy()).all()
    )
    assert not cache_dir.exists()  # reading never writes a cache
