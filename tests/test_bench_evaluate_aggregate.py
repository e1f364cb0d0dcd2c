"""The aggregation of a run is reproducible from its per-image scores: rebuilt from the committed
``reports/cam-methods`` per-image tables, :func:`aubench.bench.evaluate.aggregate_cell` gives
that run's committed results table bit for bit — values, bootstrap CIs, counts — so a faster
aggregation cannot move a committed number. (The benchmarks time the same rebuild.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from aubench.bench.evaluate import ScoreStore, aggregate_cell
from aubench.bench.results import CLASSIFIER, RESULT_COLUMNS
from aubench.faces.heatmaps import InvalidReason
from aubench.metrics import aggregate, aggregate_many

COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "cam-methods"
#: The reason codes of the per-image table's names (as write_long_per_image spells them).
REASON_CODES = {r.name.lower().replace("_", "-"): int(r) for r in InvalidReason}


def wide_scores(per_image: pd.DataFrame, out: Path) -> Path:
    """The wide score file (:class:`~aubench.bench.evaluate.ScoreStore`'s layout) that one
    cell's per-image long table was written from: one row per image in the order written, the
    classifier's predictions, and a float32 column ``method|layer|metric`` per score."""
    pred = per_image[(per_image["method"] == CLASSIFIER) & (per_image["metric"] == "pred")]
    columns = {
        "index": np.arange(len(pred), dtype=np.int64),
        "id": pred["id"].to_numpy(dtype=object),
        "label": pred["label"].to_numpy().astype(np.int16),
        "reason": pred["reason"].map(REASON_CODES).to_numpy().astype(np.int16),
        "pred": pred["value"].to_numpy().astype(np.int16),
    }
    scores = per_image.drop(pred.index)
    for (method, layer, metric), rows in scores.groupby(["method", "layer", "metric"], sort=False):
        assert (rows["id"].to_numpy() == columns["id"]).all(), (method, layer, metric)
        columns[f"{method}|{layer}|{metric}"] = rows["value"].to_numpy().astype(np.float32)
    pq.write_table(pa.table(columns), out)
    return out


def committed_cells(run: Path, folder: Path) -> list[tuple[dict, Path]]:
    """(cell metadata, rebuilt wide score file in ``folder``) of each cell of run folder
    ``run``, from its ``per_image/`` tables."""
    suite = json.loads((run / "manifest.json").read_text())["suite"]["name"]
    cells = []
    for path in sorted((run / "per_image").glob("*.parquet")):
        per_image = pd.read_parquet(path)
        per_image["layer"] = per_image["layer"].fillna("")
        first = per_image.iloc[0]
        meta = {"suite": suite, **{k: first[k] for k in ("model", "variant", "seed", "split")}}
        cells.append((meta, wide_scores(per_image, folder / path.name)))
    return cells


def aggregation_options(run: Path) -> dict:
    """``aggregate_cell``'s ``n_boot`` and ``fill_undefined`` of the run's suite."""
    options = json.loads((run / "manifest.json").read_text())["suite"]["aggregation"]
    return {"n_boot": options["bootstrap"], "fill_undefined": options["fill_undefined"]}


def test_the_committed_cam_methods_table_is_reproduced_bit_for_bit(tmp_path):
    committed = pd.read_parquet(COMMITTED / "results.parquet")
    options = aggregation_options(COMMITTED)
    cells = committed_cells(COMMITTED, tmp_path)
    assert len(cells) == 16  # 8 methods × (w/o, w/ AU)
    for meta, wide in cells:
        rows = aggregate_cell(wide, meta, **options)[RESULT_COLUMNS]
        mine = (committed[k] == meta[k] for k in ("model", "variant", "seed", "split"))
        expected = committed[np.logical_and.reduce(list(mine))].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected, check_exact=True, check_dtype=False)


def test_aggregating_columns_together_equals_one_at_a_time():
    rng = np.random.default_rng(4)
    labels = torch.tensor(rng.integers(0, 7, 300))
    valid = torch.tensor(rng.random(300) > 0.1)
    reasons = torch.where(valid, 0, 2)
    scores = torch.tensor(rng.random((6, 300)))
    scores[1, 5] = scores[4, 5] = scores[5, :40] = torch.nan  # other scored sets: other draws
    together = aggregate_many(scores, labels, valid, reasons, num_classes=7, n_boot=300, seed=2)
    for row, result in zip(scores, together, strict=True):
        alone = aggregate(row, labels, valid, reasons, num_classes=7, n_boot=300, seed=2)
        for field in ("per_class", "per_class_n", "per_class_ci"):
            torch.testing.assert_close(
                getattr(result, field), getattr(alone, field), equal_nan=True, atol=0, rtol=0
            )
        for field in ("macro_ci", "image_ci", "macro_classes", "n_scored", "excluded"):
            assert getattr(result, field) == getattr(alone, field), field
        assert result.macro == alone.macro and result.image_mean == alone.image_mean
    assert aggregate_many(torch.zeros(0, 300), labels) == []
    with pytest.raises(ValueError, match=r"scores must have shape \(K, N\)"):
        aggregate_many(scores[0], labels)


def test_scores_reach_the_store_in_one_transfer_per_batch(tmp_path):
    store = ScoreStore(tmp_path / "scores.parquet")
    store.begin(
        [0, 1], ["a", "b"], torch.tensor([1, 2]), torch.tensor([0, 0]), torch.tensor([1, 1])
    )
    store.add(("cam", "layer4", "cosine"), torch.tensor([0.5, 0.25], dtype=torch.float64))
    store.add(("cam", "layer4", "iou"), torch.tensor([1.0, float("nan")]))
    store.flush()
    table = pq.read_table(store.close()).to_pandas()
    scores = ["cam|layer4|cosine", "cam|layer4|iou"]
    assert list(table.columns) == ["index", "id", "label", "reason", "pred", *scores]
    assert table["cam|layer4|cosine"].dtype == np.float32
    np.testing.assert_array_equal(table["cam|layer4|iou"], [1.0, np.nan])
