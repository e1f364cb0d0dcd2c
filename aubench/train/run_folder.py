"""The run folder of a training run: checking it before a run, and the files written into it.

A run folder (``--out``, default ``runs/<model>-<baseline|guided>-<config hash>``) holds
``config.yaml``, ``last.pt`` (every epoch, and every ``save_every`` steps), ``best.pt`` (the
epoch with the highest selection accuracy; ties keep the earlier epoch), ``metrics.csv`` (one row
per epoch: lr, train loss/CE/alignment/accuracy, and accuracy, ATT-COS and counts of each
evaluated split), ``summary.json`` at the end, and ``tensorboard/`` when TensorBoard is
installed. A folder holding a run of another config is refused (both hashes named) and nothing in
it is overwritten.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from aubench.io import is_empty_folder, write_atomic
from aubench.train.checkpoint import CheckpointError, load_checkpoint
from aubench.train.config import TrainConfig


def prepare_run_dir(config: TrainConfig, out: Path, data: str) -> dict | None:
    """Check ``out`` for this config and data (:func:`check_run_dir`); return the ``last.pt``
    state to resume from, or None. A corrupt ``last.pt`` raises :class:`CheckpointError`.
    Nothing is written here."""
    check_run_dir(config, out, data)
    last = out / "last.pt"
    if not last.is_file():
        return None
    state = load_checkpoint(last)
    if state.get("config_hash") != config.hash():
        raise CheckpointError(
            f"{last} belongs to config {state.get('config_hash')}, not {config.hash()}"
        )
    return state


#: The content fingerprint of the data a run trains on (:func:`~aubench.train.data.
#: training_data_fingerprint`), written beside ``config.yaml``.
DATA_FILE = "data_fingerprint.txt"


def check_run_dir(config: TrainConfig, out: Path, data: str) -> None:
    """Refuse ``out`` unless it is absent, empty or a run of this config on this data: a folder
    with a ``config.yaml`` of another hash (``FileExistsError`` naming both hashes), or trained on
    data of another content fingerprint than ``data`` (the dataset was edited in place: resuming
    or reusing it would mix two datasets), a non-empty folder that is not a run, a file. Reads
    only ``config.yaml`` and :data:`DATA_FILE`."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"run folder {out} exists and is not a directory")
    stored_path = out / "config.yaml"
    if stored_path.is_file():
        stored = TrainConfig.load(stored_path)
        if stored.hash() != config.hash():
            raise FileExistsError(
                f"{out} holds a run of config {stored.hash()}, not this config {config.hash()}; "
                "use another --out (or the default, named after the hash) or delete the folder"
            )
        stored_data = out / DATA_FILE
        if stored_data.is_file() and stored_data.read_text() != data:
            raise FileExistsError(
                f"{out} was trained on other data (content fingerprint {stored_data.read_text()}, "
                f"now {data}: labels, ids, landmarks or image files changed); use another --out "
                "to train on the data as it is now, or delete the folder"
            )
    elif out.is_dir() and not is_empty_folder(out):
        raise FileExistsError(f"{out} is not empty and holds no aubench run (no config.yaml)")


def write_metrics(path: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.csv`` from the full history, atomically (columns: union, in order)."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomic(path, text.getvalue().encode())


class TensorBoardLog:
    """Scalars to ``<run>/tensorboard`` when TensorBoard is installed (else nothing)."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency
            except ImportError:
                return
            self.writer = SummaryWriter(str(folder))

    def log(self, row: dict, step: int) -> None:
        """Every finite number of ``row`` but ``epoch``, as ``train/loss`` for ``train_loss``."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
