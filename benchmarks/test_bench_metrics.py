"""Localisation metrics on (256, 224, 224) maps, side by side with Quantus 0.6 (the bench extra).

Maps: random 28×28 maps upsampled bilinearly plus 1e-3 noise, min-max normalised (max exactly
1, so Quantus's default ``a / max|a|`` is the identity; continuous, so no ties). AU regions:
``heatmap >= 0.5`` of the default AU heatmaps of 256 random non-neutral faces (≈ 10% of pixels).

Where the definitions coincide — pointing game (Quantus counts any tied maximum: ``ties="any"``),
relevance mass and rank accuracy, top-k intersection at Quantus's fixed k = 1000, ROC-AUC — the
values must agree to 1e-6. Two ratios are reported: against Quantus as a user calls it
(``metric(model=None, x_batch=…, a_batch=…, s_batch=…)``, which includes its input checks — one
of them builds a Python set of all 12.8M attribution values, ~7 s per metric) and against its
computation alone (``evaluate_batch`` on the same arrays). The goal (issue #4, ≥ 10×) is asserted
on the first; the second is reported (Quantus's pointing game, mass and top-k are already
vectorised NumPy; its rank accuracy and AUC are not).
"""

import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics import score_maps
from tests.references import random_faces

quantus = pytest.importorskip("quantus")

GOAL = 10.0
BATCH, SIZE = 256, 224
# aubench name → (Quantus class, its keywords, aubench options that select the same definition)
SHARED = {
    "pointing_game": ("PointingGame", {}, {"ties": "any"}),
    "relevance_mass_accuracy": ("RelevanceMassAccuracy", {}, {}),
    "relevance_rank_accuracy": ("RelevanceRankAccuracy", {}, {}),
    "top_k_intersection": ("TopKIntersection", {"k": 1000}, {"k": 1000}),
    "roc_auc": ("AUC", {}, {}),
}


def best_of(fn, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    landmarks = torch.tensor(random_faces(BATCH, SIZE, rng), dtype=torch.float32)
    heatmaps, valid = au_heatmaps(landmarks, rng.integers(1, 7, BATCH), SIZE)
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(BATCH, 1, 28, 28, generator=gen)
    maps = F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)[:, 0]
    maps = maps + 1e-3 * torch.rand(BATCH, SIZE, SIZE, generator=gen)
    low, high = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    maps = (maps - low) / (high - low)
    assert bool(valid.all())
    return maps, heatmaps


def test_localisation_vs_quantus(benchmark, harness_info, inputs):
    maps, heatmaps = inputs
    a_batch = maps.numpy()[:, None]
    s_batch = (heatmaps >= 0.5).numpy()[:, None].astype(np.float32)
    x_batch = np.zeros_like(a_batch)
    y_batch = np.zeros(BATCH, dtype=int)
    options = {name: opts for name, (_, _, opts) in SHARED.items()}

    def ours():
        return score_maps(maps, heatmaps, names=SHARED, options=options)

    call, core, theirs = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (cls, kwargs, _) in SHARED.items():
            metric = getattr(quantus, cls)(disable_warnings=True, **kwargs)
            call[name], theirs[name] = best_of(
                lambda m=metric: m(
                    model=None, x_batch=x_batch, y_batch=y_batch, a_batch=a_batch, s_batch=s_batch
                ),
                1,
            )
            core[name], _ = best_of(
                lambda m=metric: m.evaluate_batch(a_batch=a_batch, s_batch=s_batch), 2
            )

    benchmark.group = "localisation family vs Quantus, 256×224²"
    scores = benchmark.pedantic(ours, rounds=5, warmup_rounds=1)
    for name in SHARED:
        expected = np.asarray(theirs[name], dtype=np.float64)
        np.testing.assert_allclose(scores[name].double().numpy(), expected, atol=1e-6, err_msg=name)

    mine = benchmark.stats.stats.min
    # the same call on one thread: on a 2-core VM shared with other jobs, two OpenMP threads
    # wait on each other at every parallel region, and one thread can be the faster setting
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single, _ = best_of(ours, 3)
    finally:
        torch.set_num_threads(threads)
    ratio_call, ratio_core = sum(call.values()) / mine, sum(core.values()) / mine
    harness_info.update(
        quantus_call_s=call,
        quantus_core_s=core,
        speedup_vs_call=ratio_call,
        speedup_vs_core=ratio_core,
        one_thread_s=single,
        goal=GOAL,
        threads=threads,
    )
    lines = [f"  {n}: Quantus call {call[n]:.2f} s, core {core[n] * 1e3:.0f} ms" for n in SHARED]
    lines.append(
        f"aubench (one score_maps call, all five, {threads} threads) {mine * 1e3:.0f} ms: "
        f"{ratio_call:.0f}× Quantus's calls, {ratio_core:.1f}× its computation "
        f"(goal ≥ {GOAL:.0f}×); on 1 thread {single * 1e3:.0f} ms "
        f"({sum(core.values()) / single:.1f}× its computation)"
    )
    print("\n" + "\n".join(lines))
    assert ratio_call >= GOAL, f"only {ratio_call:.1f}× faster than Quantus (goal {GOAL}×)"


def test_full_localisation_family(benchmark, harness_info, inputs):
    """Every map metric (correlation, overlap, point, mass, rank, saliency) in one call."""
    maps, heatmaps = inputs
    benchmark.group = "all map metrics, 256×224²"
    scores = benchmark.pedantic(score_maps, args=(maps, heatmaps), rounds=3, warmup_rounds=1)
    harness_info.update(metrics=len(scores), threads=torch.get_num_threads())
    assert all(s.shape == (BATCH,) for s in scores.values())
