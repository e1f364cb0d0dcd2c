"""Evaluation cost of one batch of the ``cam-methods`` suite, as a ratio to the model's bare
forward + backward on the same batch. Goals (issue #15): ≤ 1.5× on the CPU, ≤ 2× on CUDA; also
reports images/s.

One evaluation batch does what the suite's evaluation loop does per batch: the AU heatmaps from
the landmarks, every producer of the suite (the predictions are the single pass's logits)
(``aubench/bench/suites/cam-methods.yaml``: its explainers and controls, at its layers — the
single-pass methods share one forward + backward, the pytorch-grad-cam and captum adapters run
after), each map's default post-processing (ReLU where defined, bilinear resize to the image,
min-max), and the suite's map metrics on every producer's maps in one call (their stacked
maps, as the evaluation loop scores them). The anchor is ``cross_entropy(model(x),
y).backward()`` in eval mode. Rounds alternate anchor / evaluation; the ratio uses medians.

Sizes: ResNet-10-T at 64 px and ResNet-18 at 112 px, batch 64 (large maps, as the suite trains
them); on CUDA (``AUBENCH_BENCH_DEVICE=cuda``) also ResNet-50 at 224 px, the paper's setting.
``AUBENCH_BENCH_QUICK=1`` keeps the smallest size only; ``AUBENCH_BENCH_ROUNDS`` sets the timed
rounds (default 3). Nothing about timing is asserted: the ratio is printed against the goal and
recorded in ``extra_info`` with a per-section breakdown of the best evaluation round.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import default_collate

from aubench.data.synthetic import SyntheticFaces
from aubench.explain import CONTROLS, LayerMethod, explain, explain_batch, get_explainer
from aubench.explain.postprocess import default_postprocess
from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics import METRICS, score_maps
from aubench.models import create

DEVICE = torch.device(os.environ.get("AUBENCH_BENCH_DEVICE", "cpu"))
GOAL = 2.0 if DEVICE.type == "cuda" else 1.5
ROUNDS = int(os.environ.get("AUBENCH_BENCH_ROUNDS", "3"))
SIZES = [("resnet10t", 64, 64), ("resnet18", 112, 64)]
if DEVICE.type == "cuda":
    SIZES.append(("resnet50", 224, 64))
if os.environ.get("AUBENCH_BENCH_QUICK") == "1":
    SIZES = SIZES[:1]


def load_cam_methods() -> dict:
    """The built-in ``cam-methods`` suite as plain YAML (explainers, controls, layers, metrics)."""
    path = resources.files("aubench.bench") / "suites" / "cam-methods.yaml"
    return yaml.safe_load(path.read_text())


def sync() -> None:
    """Wait for the device, so that a timed region holds all its kernels."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


class Evaluation:
    """One batch of ``cam-methods`` evaluation; ``sections`` holds the last call's timings (s)."""

    def __init__(self, model: torch.nn.Module, size: int, suite: dict) -> None:
        self.model = model
        names = [*suite["explainers"], *suite.get("controls", CONTROLS)]
        own = suite.get("explainer_layers", {})
        #: one instance per producer for the whole pass (the random control's stream advances)
        self.methods = {name: get_explainer(name) for name in names}
        self.layers = {name: list(own.get(name, suite["layers"])) for name in names}
        self.steps = {name: default_postprocess(m, size) for name, m in self.methods.items()}
        self.metrics = [m for m in suite["metrics"] if METRICS[m].kind == "map"]
        self.sections: dict[str, float] = {}
        #: the batch's logits: the single pass's forward (the predictions), as the loop takes them
        self.logits: torch.Tensor | None = None

    def _timed(self, section: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = fn()
        sync()
        self.sections[section] = self.sections.get(section, 0.0) + time.perf_counter() - start
        return result

    def maps(
        self, images: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Every producer's raw maps of the batch (name → layer → (B, h, w)): the single-pass
        methods share one pass, the others run after (each timed as its section)."""
        groups: dict[tuple[str, ...], list] = {}  # single-pass methods sharing their layers
        maps = {}
        for name, method in self.methods.items():
            if isinstance(method, LayerMethod):
                groups.setdefault(tuple(self.layers[name]), []).append(method)
                continue
            maps |= self._timed(
                name,
                lambda m=method, n=name: explain(
                    self.model, images, labels, self.layers[n], [m], landmarks=landmarks
                ),
            )
        for layers, group in groups.items():
            result = self._timed(
                "single pass",
                lambda g=group, ls=layers: explain_batch(
                    self.model, images, labels, list(ls), g, landmarks=landmarks
                ),
            )
            maps |= result.maps
            if self.logits is None:
                self.logits = result.logits
        return maps

    def normalised(self, maps: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        """(P, B, H, W): each producer's maps at each layer post-processed by its default steps,
        stacked (P = 13 for ``cam-methods``)."""
        return torch.stack(
            [
                self.steps[name](raw.float())
                for name, per_layer in maps.items()
                for raw in per_layer.values()
            ]
        )

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor) -> int:
        """Evaluate the batch; returns the number of scores computed."""
        self.sections = {}
        size = tuple(images.shape[-2:])
        heatmaps, valid = self._timed("heatmaps", lambda: au_heatmaps(landmarks, labels, size))
        self.logits = None
        maps = self.maps(images, labels, landmarks)
        if self.logits is None:  # no single pass: the predictions need a forward of their own
            with torch.no_grad():
                self.logits = self._timed("predict", lambda: self.model(images))
        self.logits.argmax(1)

        def score() -> int:
            scores = score_maps(self.normalised(maps), heatmaps, valid, self.metrics)
            return sum(s.numel() for s in scores.values())

        return self._timed("post + metrics", score)


def cam_methods_batch(
    name: str, size: int, batch: int
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, images, labels, landmarks) on :data:`DEVICE`: ``batch`` synthetic test faces at
    ``size`` px and a fresh timm ``name`` (seed 0, 7 classes, large maps) in eval mode."""
    faces = SyntheticFaces(batch, size, split="test", seed=0)
    data = default_collate([faces[i] for i in range(batch)])
    images, labels, landmarks = (data[k].to(DEVICE) for k in ("image", "label", "landmarks"))
    torch.manual_seed(0)
    model = create(name, 7, large_maps=True).to(DEVICE).eval()
    return model, images, labels, landmarks


def alternate(
    benchmark: Any,
    anchor: Callable[[], object],
    timed: Callable[[], object],
    after_round: Callable[[list[float]], None] | None = None,
) -> tuple[float, float]:
    """:data:`ROUNDS` rounds of ``anchor`` then ``timed`` (each synchronised, through
    ``benchmark.pedantic``); ``after_round`` sees ``timed``'s times so far. Returns the median
    times (s) of the anchor and of ``timed``."""
    times: dict[str, list[float]] = {"anchor": [], "timed": []}

    def round_pair() -> None:
        for side, fn in (("anchor", anchor), ("timed", timed)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[side].append(time.perf_counter() - start)
        if after_round is not None:
            after_round(times["timed"])

    benchmark.pedantic(round_pair, rounds=ROUNDS, warmup_rounds=0)
    return statistics.median(times["anchor"]), statistics.median(times["timed"])


def forward_backward(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The anchor: the model's bare forward and backward (parameter gradients) on the batch."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()


@pytest.mark.parametrize(
    ("name", "size", "batch"), SIZES, ids=[f"{n}-{s}px-b{b}" for n, s, b in SIZES]
)
def test_cam_methods_evaluation_vs_forward_backward(
    benchmark, harness_info, name: str, size: int, batch: int
) -> None:
    model, images, labels, landmarks = cam_methods_batch(name, size, batch)
    evaluation = Evaluation(model, size, load_cam_methods())
    forward_backward(model, images, labels)  # warm-up: allocator, kernel choice, lazy imports
    scores = evaluation(images, labels, landmarks)
    best: dict[str, float] = {}

    def keep_best(times: list[float]) -> None:
        if times[-1] == min(times):
            best.clear()
            best.update(evaluation.sections)

    benchmark.group = f"cam-methods evaluation batch {DEVICE.type}"
    fb, ev = alternate(
        benchmark,
        lambda: forward_backward(model, images, labels),
        lambda: evaluation(images, labels, landmarks),
        keep_best,
    )
    ratio, images_per_s = ev / fb, batch / ev
    harness_info.update(
        model=name,
        size=size,
        batch=batch,
        device=DEVICE.type,
        forward_backward_s=fb,
        evaluation_s=ev,
        ratio=ratio,
        goal=GOAL,
        images_per_s=images_per_s,
        scores_per_batch=scores,
        sections_s=best,
        producers=list(evaluation.methods),
        threads=torch.get_num_threads(),
    )
    if DEVICE.type == "cuda":
        harness_info["max_memory_gib"] = torch.cuda.max_memory_allocated(DEVICE) / 2**30
    breakdown = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in best.items())
    print(
        f"\n{name} {size}px b{batch} {DEVICE.type}: forward+backward {fb * 1e3:.0f} ms, "
        f"cam-methods evaluation {ev * 1e3:.0f} ms: ratio {ratio:.2f} (goal ≤ {GOAL:g}), "
        f"{images_per_s:.0f} images/s; best round (ms): {breakdown}"
    )
    assert scores > 0
