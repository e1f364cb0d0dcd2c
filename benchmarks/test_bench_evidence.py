"""Evidence heatmaps against codebook heatmaps for the same batch (issue #17). Goal: ≤ 1.2×.

256 random faces at 224², labels happiness … sadness; the evidence is each face's codebook AUs
at random intensities in [0.2, 1] (what ``hybrid`` evidence looks like), so both sides draw the
same regions and the difference is the evidence path: weights over the AU table, −log w offsets
per blob (``default``) or per-shape scales on the 28×28 grids (``belharbi2024``). Each round runs
both sides, which one first alternating; the ratio uses the fastest round of each side (the least
disturbed on a shared machine). ``AUBENCH_BENCH_DEVICE=cuda`` runs the batch on the GPU (timed calls
synchronise).
"""

import os
import time

import numpy as np
import pytest
import torch

from aubench.faces.evidence import AUEvidence, codebook_evidence, evidence_heatmaps
from aubench.faces.heatmaps import au_heatmaps
from tests.references import random_faces

BATCH, SIZE, ROUNDS, GOAL = 256, 224, 10, 1.2
DEVICE = torch.device(os.environ.get("AUBENCH_BENCH_DEVICE", "cpu"))


@pytest.mark.parametrize(
    ("regions", "codebook"), [("default", "belharbi2024-fixed"), ("belharbi2024", "belharbi2024")]
)
def test_evidence_heatmaps_cost_within_goal_of_codebook_heatmaps(
    benchmark, harness_info, regions, codebook
):
    rng = np.random.default_rng(0)
    points = torch.tensor(random_faces(BATCH, SIZE, rng), dtype=torch.float32, device=DEVICE)
    labels = torch.tensor(rng.integers(1, 7, BATCH), device=DEVICE)
    prototype = codebook_evidence(labels.cpu(), codebook)
    scale = torch.tensor(rng.uniform(0.2, 1.0, prototype.intensities.shape))
    evidence = AUEvidence(prototype.aus, prototype.intensities * scale)

    def sync() -> None:
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    sides = {
        "codebook": lambda: au_heatmaps(points, labels, SIZE, regions=regions),
        "evidence": lambda: evidence_heatmaps(points, evidence, SIZE, regions=regions),
    }
    times: dict[str, list[float]] = {side: [] for side in sides}

    def round_pair() -> None:
        order = list(sides.items())
        for side, fn in order if len(times["codebook"]) % 2 else order[::-1]:
            start = time.perf_counter()
            fn()
            sync()
            times[side].append(time.perf_counter() - start)

    benchmark.group = f"evidence heatmaps {SIZE}px b{BATCH} {DEVICE.type}"
    benchmark.pedantic(round_pair, rounds=ROUNDS, warmup_rounds=1)
    codebook_s, evidence_s = (min(times[side][1:]) for side in sides)
    ratio = evidence_s / codebook_s
    harness_info.update(
        regions=regions,
        codebook_s=codebook_s,
        evidence_s=evidence_s,
        ratio=ratio,
        goal=GOAL,
        device=DEVICE.type,
        threads=torch.get_num_threads(),
    )
    print(
        f"\n{regions}: codebook {codebook_s * 1e3:.1f} ms, evidence {evidence_s * 1e3:.1f} ms "
        f"for {BATCH} faces at {SIZE}² on {DEVICE.type}: ratio {ratio:.3f} (goal ≤ {GOAL})"
    )
    assert ratio <= GOAL, f"evidence heatmaps cost {ratio:.2f}× the codebook's (goal {GOAL}×)"
