"""Scoring and aggregation cost of the ``cam-methods`` suite (issue #15), as ratios.

Metrics: the suite's 9 headline map metrics on the maps of its 13 producers (10 explainers + 3
controls) of one batch — one :func:`~aubench.metrics.score_maps` call on their stacked
(13, B, H, W) maps, as the evaluation loop scores them — against the model's bare forward +
backward of the cross-entropy on the same batch. Goal: ≤ 0.3 at every size. The batch, the
model, the producers, their post-processing and the anchor are those of
``benchmarks/test_bench_evaluation.py``; the maps are produced and post-processed once, outside
the timing. Rounds alternate anchor / metrics; the ratio uses medians. Sizes as there:
ResNet-10-T at 64 px and ResNet-18 at 112 px, batch 64 (and ResNet-50 at 224 px on CUDA).

Aggregation: the bootstrap CIs of a whole ``cam-methods`` run's table — ``aggregate_cell`` of
each cell, on the wide score files rebuilt from the committed ``reports/cam-methods`` per-image
scores (2 cells × 117 score columns × 512 images, 1,000 replicates) — against the run's
evaluation time as its ``manifest.json`` records it (``timings_s``, summed over the cells; a
cell's time there includes training its model when it was missing). Goal: ≤ 10 %. The table
must equal the committed one. Nothing about timing is asserted.
"""

from __future__ import annotations

import json
import statistics
import time

import pandas as pd
import pytest
import torch

from aubench.bench.evaluate import aggregate_cell
from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics import score_maps
from benchmarks.test_bench_evaluation import (
    DEVICE,
    ROUNDS,
    SIZES,
    Evaluation,
    alternate,
    cam_methods_batch,
    forward_backward,
    load_cam_methods,
)
from tests.test_bench_evaluate_aggregate import COMMITTED, aggregation_options, committed_cells

METRICS_GOAL, AGGREGATION_GOAL = 0.3, 0.10


@pytest.mark.parametrize(
    ("name", "size", "batch"), SIZES, ids=[f"{n}-{s}px-b{b}" for n, s, b in SIZES]
)
def test_cam_methods_metrics_vs_forward_backward(
    benchmark, harness_info, name: str, size: int, batch: int
) -> None:
    model, images, labels, landmarks = cam_methods_batch(name, size, batch)
    evaluation = Evaluation(model, size, load_cam_methods())
    heatmaps, valid = au_heatmaps(landmarks, labels, (size, size))
    maps = evaluation.normalised(evaluation.maps(images, labels, landmarks))
    forward_backward(model, images, labels)  # warm-up: allocator, kernel choice, lazy imports

    def metrics() -> dict[str, torch.Tensor]:
        return score_maps(maps, heatmaps, valid, evaluation.metrics)

    scores = metrics()
    benchmark.group = f"cam-methods metrics batch {DEVICE.type}"
    fb, mt = alternate(benchmark, lambda: forward_backward(model, images, labels), metrics)
    ratio = mt / fb
    harness_info.update(
        model=name,
        size=size,
        batch=batch,
        device=DEVICE.type,
        producers=maps.shape[0],
        metrics=evaluation.metrics,
        forward_backward_s=fb,
        metrics_s=mt,
        ratio=ratio,
        goal=METRICS_GOAL,
        threads=torch.get_num_threads(),
    )
    print(
        f"\n{name} {size}px b{batch} {DEVICE.type}: forward+backward {fb * 1e3:.0f} ms, "
        f"{len(scores)} metrics × {maps.shape[0]} producers {mt * 1e3:.0f} ms: ratio "
        f"{ratio:.3f} (goal ≤ {METRICS_GOAL})"
    )
    assert all(s.shape == (maps.shape[0], batch) for s in scores.values())


def test_cam_methods_bootstrap_vs_evaluation_time(benchmark, harness_info, tmp_path) -> None:
    timings = json.loads((COMMITTED / "manifest.json").read_text())["timings_s"]
    evaluation_s = sum(seconds for key, seconds in timings.items() if key != "this_invocation")
    options = aggregation_options(COMMITTED)
    cells = committed_cells(COMMITTED, tmp_path)
    times: list[float] = []

    def aggregate_run() -> pd.DataFrame:
        start = time.perf_counter()
        table = pd.concat([aggregate_cell(wide, meta, **options) for meta, wide in cells])
        times.append(time.perf_counter() - start)
        return table

    benchmark.group = "cam-methods run aggregation"
    table = benchmark.pedantic(aggregate_run, rounds=ROUNDS, warmup_rounds=0)
    committed = pd.read_parquet(COMMITTED / "results.parquet")
    pd.testing.assert_frame_equal(
        table[committed.columns].reset_index(drop=True), committed, check_dtype=False
    )
    seconds = statistics.median(times)
    ratio = seconds / evaluation_s
    harness_info.update(
        aggregation_s=times,
        evaluation_s=evaluation_s,
        rows=len(table),
        ratio=ratio,
        goal=AGGREGATION_GOAL,
        n_boot=options["n_boot"],
    )
    print(
        f"\ncam-methods run: bootstrap CIs of {len(table)} rows in {seconds:.2f} s (median of "
        f"{len(times)}, {min(times):.2f}–{max(times):.2f}), {ratio:.2%} of the run's recorded "
        f"evaluation time {evaluation_s:.0f} s (goal ≤ {AGGREGATION_GOAL:.0%})"
    )
