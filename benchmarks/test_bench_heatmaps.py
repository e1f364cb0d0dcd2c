"""AU heatmaps, batch 256 at 224², belharbi2024 regions: batched aubench vs the per-image OpenCV
reference pipeline (tests/references.py). Goal (issue #2): ≥ 30× faster on CPU.

Both sides run in this one test on the same faces; the ratio uses each side's best round.
"""

import time

import numpy as np
import pytest
import torch

from aubench.faces.codebook import get_codebook
from aubench.faces.heatmaps import au_heatmaps
from tests.references import paper_heatmap, random_faces

GOAL = 30.0
BATCH, SIZE = 256, 224


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

    points, targets = torch.tensor(landmarks, dtype=torch.float32), torch.tensor(labels)
    anchor_before = best_of(anchor_batch, 3)
    benchmark.group = "heatmaps belharbi2024 224px b256"
    benchmark.pedantic(
        au_heatmaps,
        args=(points, targets, SIZE),
        kwargs={"regions": "belharbi2024"},
        rounds=60,
        warmup_rounds=5,
    )
    anchor = min(anchor_before, best_of(anchor_batch, 2))  # before and after: drift hits both
    speedup = anchor / benchmark.stats.stats.min
    harness_info.update(
        anchor_opencv_s=anchor, speedup=speedup, goal=GOAL, threads=torch.get_num_threads()
    )
    print(
        f"\nper-image OpenCV {anchor * 1e3:.1f} ms, batched aubench "
        f"{benchmark.stats.stats.min * 1e3:.1f} ms: {speedup:.1f}× (goal ≥ {GOAL:.0f}×)"
    )
    assert speedup >= GOAL, f"batched heatmaps only {speedup:.1f}× faster (goal {GOAL}×)"
