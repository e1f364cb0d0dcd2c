"""The results store of a run folder: the tidy long table, per-image scores, sample maps, manifest.

A run folder ``RUN/`` holds

- ``results.csv`` and ``results.parquet``: the tidy long table, one row per
  (suite, model, variant, seed, split, method, layer, metric, class) with columns
  :data:`RESULT_COLUMNS`:

  - ``method``: an explainer name (``gradcam``, ``attention``, …), a control
    (``control:random``, ``control:centre``, ``control:generic``), or ``classifier`` for the
    classification rows (``metric`` ``accuracy``, in %, and ``layer`` empty);
  - ``class``: an expression name (per-class mean over the valid samples of that class),
    ``macro`` (the unweighted mean over the non-neutral classes: the paper's number) or
    ``all`` (the image-level mean; for ``accuracy``: top-1 over every sample, neutral and
    invalid ones included);
  - ``value``, ``ci_low``, ``ci_high`` (bootstrap 95% CI; NaN when not computed), ``n`` (samples
    scored), ``n_excluded`` (samples excluded: invalid heatmap or undefined metric).

- ``per_image/<model>__<variant>__<seed>__<split>.parquet`` (one file per evaluated cell, read
  together by :func:`read_per_image`): one row per (id, method, layer, metric) with columns
  :data:`PER_IMAGE_COLUMNS`; ``value`` NaN where the sample was not scored, with its
  ``reason`` (``valid``, ``no-aus`` (neutral), ``no-landmarks``, ``outside``, ``undefined``;
  the rows of a metric scored against per-image AU evidence, ``<metric>@evidence``, carry the
  evidence map's: also ``no-present-aus``, no AU shown, and ``no-region-aus``, none of the
  AUs shown has a region). The classifier's rows carry ``metric`` ``pred`` (the predicted
  class) so confusion matrices and paired tests need no model.
- ``samples/<model>__<variant>__<seed>.npz``: a few faces per class for figures: ``images``
  (N, H, W, 3) uint8, ``heatmaps`` (N, H, W) float16 (and ``evidence_heatmaps`` in a run
  scored against per-image AU evidence), ``labels`` (N,), ``ids`` (N,) and one
  ``map|<method>|<layer>`` (N, H, W) float16 array per method and layer, normalised to [0, 1].
- ``manifest.json``: the resolved suite, seeds, package versions, git commit, data fingerprint,
  metric metadata (``higher_is_better``, ``range``, ``category`` per metric), variants (their
  ``guided``, ``lam``, ``layers``, ``loss``), timings and the finished cells.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written table.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aubench.io import write_atomic

RESULT_COLUMNS = [
    "suite",
    "model",
    "variant",
    "seed",
    "split",
    "method",
    "layer",
    "metric",
    "class",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "n_excluded",
]
PER_IMAGE_COLUMNS = [
    "model",
    "variant",
    "seed",
    "split",
    "id",
    "label",
    "method",
    "layer",
    "metric",
    "value",
    "reason",
]
#: Columns identifying a row of the results table (everything but the numbers).
KEY_COLUMNS = RESULT_COLUMNS[:9]
CLASSIFIER = "classifier"
MANIFEST = "manifest.json"


def write_results(run: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write ``table`` (columns :data:`RESULT_COLUMNS`) as results.csv and results.parquet."""
    table = _checked(table, RESULT_COLUMNS, "results table")
    run = Path(run)
    write_atomic(run / "results.csv", table.to_csv(index=False).encode())
    write_atomic(run / "results.parquet", _parquet_bytes(table))


def read_results(run: str | os.PathLike) -> pd.DataFrame:
    """The results table of run folder ``run`` (``FileNotFoundError`` naming it when absent)."""
    if not Path(run).is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    path = Path(run) / "results.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run} a finished aubench run folder?")
    return pd.read_parquet(path)


def per_image_file(run: str | os.PathLike, model: str, variant: str, seed: int, split: str) -> Path:
    """Where the per-image scores of one evaluated cell are stored."""
    return Path(run) / "per_image" / f"{model}__{variant}__{seed}__{split}.parquet"


def write_per_image(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write one cell's per-image scores (columns :data:`PER_IMAGE_COLUMNS`) to ``path``."""
    table = _checked(table, PER_IMAGE_COLUMNS, "per-image table")
    write_atomic(path, _parquet_bytes(table))


def read_per_image(run: str | os.PathLike) -> pd.DataFrame:
    """Every cell's per-image scores of run ``run`` as one table."""
    files = sorted((Path(run) / "per_image").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{run} holds no per_image/*.parquet files")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def write_manifest(run: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (sorted keys, indented, atomically)."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    write_atomic(Path(run) / MANIFEST, (text + "\n").encode())


def read_manifest(run: str | os.PathLike) -> dict[str, Any]:
    path = Path(run) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run} an aubench run folder?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def sample_file(run: str | os.PathLike, model: str, variant: str, seed: int) -> Path:
    """Where the sample faces and maps of (model, variant, seed) are stored."""
    return Path(run) / "samples" / f"{model}__{variant}__{seed}.npz"


def write_samples(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write sample arrays (see the module doc for the keys) as one compressed ``.npz``."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def read_samples(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _checked(table: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
    return table[columns].reset_index(drop=True)


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()
