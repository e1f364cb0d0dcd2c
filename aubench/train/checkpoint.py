"""Checkpoints: atomic save, and loading that fails clearly on corrupt files or other versions.

A checkpoint is a ``torch.save`` dict with at least:

- ``format``: :data:`CHECKPOINT_FORMAT` (identifies aubench checkpoints) and ``format_version``;
- ``config`` (the :class:`~aubench.train.config.TrainConfig` as a dict) and ``config_hash``;
- ``model``: the model's state dict (no DDP ``module.`` prefix);
- ``epoch``, ``step_in_epoch``, ``global_step``: where training stands (``step_in_epoch`` = 0
  means epoch ``epoch`` has not started);
- for resuming: ``optimizer``, ``scaler``, ``rng`` (one entry per rank: torch CPU/CUDA, NumPy and
  Python generator states), ``history`` (the per-epoch metric rows), ``best`` (the best score
  and its epoch);
- ``aubench_version``, ``torch_version``.

Files are written to a temporary file beside the target and renamed over it, so a run killed
mid-save leaves the previous checkpoint intact. Loading uses ``weights_only=True`` (no code runs).
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aubench.io import write_atomic
from aubench.version import __version__

CHECKPOINT_FORMAT = "aubench-train-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable aubench checkpoint (corrupt, foreign, other version)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format/version tags) atomically to ``path``."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "aubench_version": __version__,
        "torch_version": str(torch.__version__),
        **state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` naming the path
    for a truncated/corrupt file, a file that is not an aubench checkpoint, or another format
    version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = str(err)
        if any(word in text for word in ("CUDA", "device", "Device")):  # not the file's fault
            raise ValueError(
                f"{path} could not be loaded onto device {map_location!r}: {text[:200]}"
            ) from err
        raise CheckpointError(
            f"{path} is corrupt or not a checkpoint ({type(err).__name__}: {str(err)[:200]}); "
            "delete it to start over, or restore it from a copy"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an aubench training checkpoint")
    version = state.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r} (written by aubench "
            f"{state.get('aubench_version', '?')}); this aubench {__version__} reads version "
            f"{CHECKPOINT_VERSION} only"
        )
    return state


def rng_state() -> dict[str, Any]:
    """This process's generator states: torch CPU (and CUDA), NumPy, Python ``random``."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
