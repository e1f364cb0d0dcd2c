"""Training step time, AU-guided vs baseline: resnet18 at 112 px, batch 64, same data.
Goal (issue #3): guided / baseline ≤ 1.05 on CPU.

Both steps are :meth:`aubench.train.Trainer.train_step` on the same synthetic batch (image,
label, landmarks): the guided one also builds the AU heatmaps on the fly from the landmarks,
hooks ``layer4``, and back-propagates ``λ · mean_valid(1 − cos)``. Steps alternate (baseline,
guided, baseline, …) so that load drift on a shared machine hits both sides alike; the ratio
uses each side's median round. On CUDA (``AUBENCH_BENCH_DEVICE=cuda``) the steps synchronise
the device and use AMP, and the ratio is reported without the CPU goal.
"""

import os
import statistics
import time

import pytest
import torch
from torch.utils.data import default_collate

from aubench.data.synthetic import SyntheticFaces
from aubench.train import TrainConfig, Trainer

GOAL = 1.05
BATCH, SIZE, ROUNDS = 64, 112, 12
DEVICE = os.environ.get("AUBENCH_BENCH_DEVICE", "cpu")


@pytest.fixture(scope="module")
def batch():
    faces = SyntheticFaces(BATCH, SIZE, seed=0)
    return default_collate([faces[i] for i in range(BATCH)])


def timed_step(trainer: Trainer, batch: dict) -> float:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@pytest.mark.parametrize("large_maps", [False, True], ids=["standard", "large-maps"])
def test_guided_step_costs_at_most_5_percent_more(benchmark, harness_info, batch, large_maps):
    common = {"model": "resnet18", "size": SIZE, "batch_size": BATCH, "large_maps": large_maps}
    baseline = Trainer(TrainConfig(**common), 7, DEVICE)
    guided = Trainer(TrainConfig(**common, guided=True, lam=4.0), 7, DEVICE)
    for _ in range(2):  # warm-up: allocator, oneDNN/cuDNN kernel choice
        timed_step(baseline, batch)
        timed_step(guided, batch)
    times: dict[str, list[float]] = {"baseline": [], "guided": []}

    def round_pair() -> None:
        times["baseline"].append(timed_step(baseline, batch))
        times["guided"].append(timed_step(guided, batch))

    benchmark.group = f"train step resnet18 {SIZE}px b{BATCH} {DEVICE}"
    benchmark.pedantic(round_pair, rounds=ROUNDS, warmup_rounds=0)
    base, guide = statistics.median(times["baseline"]), statistics.median(times["guided"])
    ratio = guide / base
    harness_info.update(
        baseline_s=base,
        guided_s=guide,
        ratio=ratio,
        goal=GOAL,
        device=DEVICE,
        large_maps=large_maps,
        threads=torch.get_num_threads(),
    )
    print(
        f"\n{DEVICE} large_maps={large_maps}: baseline {base * 1e3:.0f} ms, guided "
        f"{guide * 1e3:.0f} ms per step: ratio {ratio:.3f} (goal ≤ {GOAL})"
    )
    if DEVICE == "cpu":
        assert ratio <= GOAL, f"guided step is {ratio:.3f}× the baseline step (goal ≤ {GOAL})"
