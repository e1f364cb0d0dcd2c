"""AU heatmaps, batch 256 at 224², belharbi2024 regions: batched aubench vs the per-image OpenCV
reference pipeline (tests/references.py). Goal (issue #2): ≥ 30× faster on CPU; on CUDA
(``AUBENCH_BENCH_DEVICE=cuda``: the batch lives on the GPU, timed calls synchronise) ≥ 300×
(issue #15), reported without an assertion.

Both sides run in this one test on the same faces; the ratio uses each side's best round.
"""

import os
import time

import numpy as np
import pytest
import torch

from aubench.faces.codebook import get_codebook
from aubench.faces.heatmaps import au_heatmaps
from tests.references import paper_heatmap, random_faces

BATCH, SIZE = 256, 224
DEVICE = torch.device(os.environ.get("AUBENCH_BENCH_DEVICE", "cpu"))
GOAL = 300.0 if DEVICE.type == "cuda" else 30.0


def best_of(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    landmarks = random_faces(BATCH, SIZE, rng)
    labels = rng.integers(1, 7, BATCH)  # non-neutral: every face has AUs to draw
    return landmarks, labels


def test_heatmaps_belharbi2024_vs_per_image_opencv(benchmark, harness_info, faces):
    landmarks, labels = faces
    book = get_codebook("belharbi2024")

    def anchor_batch():
        return [paper_heatmap(p, int(y), book) for p, y in zip(landmarks, labels, strict=True)]

    points = torch.tensor(landmarks, dtype=torch.float32, device=DEVICE)
    targets = torch.tensor(labels, device=DEVICE)

    def ours():
        maps = au_heatmaps(points, targets, SIZE, regions="belharbi2024")
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
        return maps

    anchor_before = best_of(anchor_batch, 3)
    benchmark.group = f"heatmaps belharbi2024 224px b256 {DEVICE.type}"
    benchmark.pedantic(ours, rounds=60, warmup_rounds=5)
    anchor = min(anchor_before, best_of(anchor_batch, 2))  # before and after: drift hits both
    speedup = anchor / benchmark.stats.stats.min
    harness_info.update(
        anchor_opencv_s=anchor,
        speedup=speedup,
        goal=GOAL,
        device=DEVICE.type,
        threads=torch.get_num_threads(),
    )
    print(
        f"\nper-image OpenCV {anchor * 1e3:.1f} ms, batched aubench {DEVICE.type} "
        f"{benchmark.stats.stats.min * 1e3:.2f} ms: {speedup:.1f}× (goal ≥ {GOAL:.0f}×)"
    )
    if DEVICE.type == "cpu":
        assert speedup >= GOAL, f"batched heatmaps only {speedup:.1f}× faster (goal {GOAL}×)"
