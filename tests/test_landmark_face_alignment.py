"""face-alignment never downloads: missing weights are a clear error saying where to put them."""

import importlib.util

import pytest

from aubench.data.landmark_backends import get_backend
from aubench.landmarks.face_alignment_backend import check_weights, hub_checkpoint_dir

URLS = {
    "FAN 2D landmarks": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
    "S3FD face detector": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}


def test_hub_folder_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert hub_checkpoint_dir() == tmp_path / "hub" / "checkpoints"


def test_missing_weights_name_each_file_its_folder_and_source(tmp_path):
    folder = tmp_path / "hub" / "checkpoints"
    (folder).mkdir(parents=True)
    (folder / "s3fd-619a316812.pth").write_bytes(b"weights")
    with pytest.raises(FileNotFoundError) as caught:
        check_weights(URLS, folder)
    message = str(caught.value)
    assert (
        f"FAN 2D landmarks: {folder}/2DFAN4-cd938726ad.zip  (from {URLS['FAN 2D landmarks']})"
        in message
    )
    assert "S3FD" not in message and "never downloads" in message and "TORCH_HOME" in message
    (folder / "2DFAN4-cd938726ad.zip").write_bytes(b"weights")
    assert check_weights(URLS, folder) == [
        folder / "2DFAN4-cd938726ad.zip",
        folder / "s3fd-619a316812.pth",
    ]


def test_backend_explains_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if importlib.util.find_spec("face_alignment") is None:
        with pytest.raises(
            ImportError,
            match=r"face-alignment is not installed: pip install 'aubench\[face-alignment\]'",
        ):
            get_backend("face-alignment")
    else:  # installed: the empty hub folder has no weights
        with pytest.raises(FileNotFoundError, match=f"{tmp_path}/hub/checkpoints/2DFAN4"):
            get_backend("face-alignment")
