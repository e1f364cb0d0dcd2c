"""CUDA against CPU on the same inputs: heatmaps, explainers, metrics, losses, a training step
with AMP, and ``aubench run --suite quick`` end to end (issue #15).

Every test is marked ``cuda`` (``pytest -m cuda``) and skipped with "needs CUDA" where
``torch.cuda.is_available()`` is false. The device under test is ``AUBENCH_TEST_DEVICE``
(default ``cuda``); the reference is always the CPU, so ``AUBENCH_TEST_DEVICE=cpu`` runs the
same code paths on a CPU-only machine (CPU against CPU) as a dry run.

Tolerances (absolute): heatmaps 1e-5, post-processed maps 1e-4, metric scores 1e-5, alignment
loss 1e-5 (value) and 1e-6 (gradient). TF32 is switched off while CUDA results are compared
(cuDNN enables it by default on Ampere and later, which alone moves convolutions by ~1e-3).
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import default_collate

from aubench.data.synthetic import SyntheticFaces
from aubench.explain import explain, get_explainer
from aubench.explain.postprocess import default_postprocess
from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics import METRICS, score_maps
from aubench.models import create
from aubench.train import TrainConfig, Trainer, alignment_loss
from tests.references import random_faces

ROOT = Path(__file__).resolve().parents[1]
DEVICE = torch.device(os.environ.get("AUBENCH_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"
    ),
]

SIZE, BATCH = 64, 8
#: The single-pass methods, the pytorch-grad-cam and captum adapters used by cam-methods, and
#: the controls.
LAYER_METHODS = [
    "attention",
    "gradcam",
    "gradcam++",
    "layercam",
    "xgradcam",
    "hirescam",
    "gradcam-elementwise",
    "eigencam",
    "layer-gradcam",
    "random",
    "centre",
    "generic-face",
]
HEADLINE_METRICS = [
    "cosine",
    "pearson",
    "spearman",
    "iou_otsu",
    "dice_best",
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass_accuracy",
    "roc_auc",
]
#: Mean |Δ| of post-processed maps, autocast against float32 (CPU autocast measures ≤ 3e-4 in
#: fp16 and ≤ 2.5e-3 in bf16; the margin leaves room for CUDA's wider autocast op list).
AUTOCAST_TOLERANCE = {torch.float16: 0.02, torch.bfloat16: 0.03}


@pytest.fixture(autouse=True)
def full_fp32() -> Iterator[None]:
    """No TF32 in matmuls or convolutions while the test runs (restored afterwards)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def faces() -> dict:
    """A batch of synthetic faces (image, label, landmarks) at 64 px, one of each class+1."""
    data = SyntheticFaces(BATCH, SIZE, seed=0)
    return default_collate([data[i] for i in range(BATCH)])


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same seeded ResNet-10-T (large maps: 8×8 layer 5 at 64 px) on the CPU and DEVICE."""
    torch.manual_seed(0)
    model = create("resnet10t", num_classes=7, large_maps=True).eval()
    return model, copy.deepcopy(model).to(DEVICE)


def _on(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(batch[k].to(device) for k in ("image", "label", "landmarks"))


# ---------------------------------------------------------------------------------------------
# heatmaps


@pytest.mark.parametrize("regions", ["default", "belharbi2024"])
@pytest.mark.parametrize("size", [112, (96, 128)], ids=["square", "oblong"])
def test_heatmaps_match_the_cpu(regions: str, size: int | tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    side = size if isinstance(size, int) else min(size)
    landmarks = torch.tensor(random_faces(16, side, rng), dtype=torch.float32)
    landmarks[3] = float("nan")  # failed detection
    landmarks[5] += 10 * side  # face outside the image
    labels = torch.tensor(rng.integers(1, 7, 16))
    labels[7] = 0  # neutral: no AUs
    expected = au_heatmaps(landmarks, labels, size, regions=regions)
    got = au_heatmaps(landmarks.to(DEVICE), labels.to(DEVICE), size, regions=regions)
    assert got.heatmaps.device.type == DEVICE.type and got.heatmaps.dtype == torch.float32
    assert torch.equal(got.valid.cpu(), expected.valid)
    assert expected.valid.sum() == 13 and not expected.valid[[3, 5, 7]].any()
    torch.testing.assert_close(got.heatmaps.cpu(), expected.heatmaps, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# explainers


def _explained(
    model: torch.nn.Module, batch: dict, device: torch.device, methods: list[str], layers: list
) -> dict[str, dict[str, torch.Tensor]]:
    images, labels, landmarks = _on(batch, device)
    raw = explain(model, images, labels, layers, methods, landmarks=landmarks)
    out = {}
    for name, per_layer in raw.items():
        post = default_postprocess(get_explainer(name), SIZE)
        out[name] = {layer: post(maps.float()).cpu() for layer, maps in per_layer.items()}
    return out


@pytest.mark.parametrize(
    ("methods", "layers"),
    [(LAYER_METHODS, ["stage:4", "stage:5"]), (["cam"], ["stage:5"])],
    ids=["layer-methods", "cam"],
)
def test_explainers_match_the_cpu(models, faces, methods: list[str], layers: list) -> None:
    cpu_model, model = models
    expected = _explained(cpu_model, faces, CPU, methods, layers)
    got = _explained(model, faces, DEVICE, methods, layers)
    assert list(got) == methods
    for name in methods:
        assert got[name].keys() == expected[name].keys(), name
        for layer, maps in expected[name].items():
            assert maps.shape == (BATCH, SIZE, SIZE)
            assert maps.max() > 0, f"{name} at {layer}: all-zero maps say nothing"
            torch.testing.assert_close(
                got[name][layer],
                maps,
                rtol=0,
                atol=1e-4,
                msg=lambda m, k=(name, layer): f"{k}: {m}",
            )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_explainers_under_autocast_stay_finite_and_close(models, faces, dtype) -> None:
    _, model = models
    methods = ["attention", "cam", "gradcam", "gradcam++", "layercam", "xgradcam"]
    reference = _explained(model, faces, DEVICE, methods, ["stage:5"])
    with torch.autocast(DEVICE.type, dtype=dtype):
        got = _explained(model, faces, DEVICE, methods, ["stage:5"])
    for name in methods:
        maps, expected = got[name]["layer4"], reference[name]["layer4"]
        assert torch.isfinite(maps).all(), f"{name} under {dtype}: non-finite maps"
        assert maps.min() >= 0 and maps.max() <= 1
        error = float((maps - expected).abs().mean())
        assert error <= AUTOCAST_TOLERANCE[dtype], f"{name} under {dtype}: mean |Δ| {error:.3f}"


# ---------------------------------------------------------------------------------------------
# metrics and losses


def test_headline_metrics_match_the_cpu() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(12, 28, 28, generator=generator)
    heatmaps = torch.rand(12, 28, 28, generator=generator) ** 3
    maps[4] = 0.0  # a constant map: NaN where a metric is undefined
    valid = torch.ones(12, dtype=torch.bool)
    valid[[2, 9]] = False
    names = [n for n in HEADLINE_METRICS if METRICS[n].kind == "map"]
    assert names == HEADLINE_METRICS
    expected = score_maps(maps, heatmaps, valid, names)
    got = score_maps(maps.to(DEVICE), heatmaps.to(DEVICE), valid.to(DEVICE), names)
    for name in names:
        assert got[name].shape == (12,) and got[name].isnan()[[2, 9]].all(), name
        torch.testing.assert_close(
            got[name].cpu().double(), expected[name].double(), rtol=0, atol=1e-5, equal_nan=True
        )


@pytest.mark.parametrize("kind", ["cosine", "std-cosine", "l1", "l2"])
def test_alignment_loss_value_and_gradient_match_the_cpu(kind: str) -> None:
    generator = torch.Generator().manual_seed(1)
    attentions = [
        torch.randn(6, 8, 8, generator=generator),
        torch.randn(6, 4, 4, generator=generator),
    ]
    heatmaps = torch.rand(6, 64, 64, generator=generator)
    valid = torch.tensor([True, True, False, True, True, True])

    def loss_and_grads(device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = [a.to(device).requires_grad_() for a in attentions]
        loss = alignment_loss(leaves, heatmaps.to(device), valid.to(device), kind, lam=4.0)
        loss.backward()
        return loss.detach().cpu(), [leaf.grad.cpu() for leaf in leaves]

    expected, expected_grads = loss_and_grads(CPU)
    got, grads = loss_and_grads(DEVICE)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    for grad, reference in zip(grads, expected_grads, strict=True):
        assert grad[2].abs().max() == 0  # the invalid sample gets no gradient
        torch.testing.assert_close(grad, reference, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# training


def test_guided_training_step_with_amp(faces) -> None:
    config = TrainConfig(model="resnet10t", size=SIZE, batch_size=BATCH, guided=True, amp=True)
    trainer, reference = Trainer(config, 7, DEVICE), Trainer(config, 7, CPU)
    assert trainer.amp == (DEVICE.type == "cuda") and not reference.amp
    before = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    expected = reference.train_step(faces)  # float32, from the same seeded initial weights
    first = trainer.train_step(faces)
    for value, wanted in [(first.ce, expected.ce), (first.align, expected.align)]:
        assert math.isfinite(float(value)), f"non-finite loss {float(value)}"
        assert float(value) == pytest.approx(float(wanted), rel=2e-2, abs=2e-2)
    assert float(first.align) > 0
    # GradScaler skips a step whose scaled gradients overflow (it then lowers its scale)
    for _ in range(2):
        if any(not torch.equal(before[k], v.cpu()) for k, v in trainer.model.state_dict().items()):
            break
        assert math.isfinite(float(trainer.train_step(faces).loss))
    after = trainer.model.state_dict()
    changed = [
        k for k, v in after.items() if v.is_floating_point() and not torch.equal(before[k], v.cpu())
    ]
    assert changed, "no weight changed after three AMP steps"
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    if trainer.amp:
        assert math.isfinite(trainer.scaler.get_scale())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_forward_and_alignment_under_autocast_are_finite(models, faces, dtype) -> None:
    _, model = models
    images, labels, landmarks = _on(faces, DEVICE)
    maps, valid = au_heatmaps(landmarks, labels, SIZE)
    trainer_model = copy.deepcopy(model).train()
    with torch.autocast(DEVICE.type, dtype=dtype):
        features = trainer_model.forward_features(images)
        logits = trainer_model.forward_head(features)
        attention = features.float().mean(1)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss = loss + alignment_loss([attention], maps, valid, "cosine", lam=4.0)
    loss.backward()
    assert torch.isfinite(loss), f"{dtype}: loss {float(loss)}"
    grads = [p.grad for p in trainer_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), f"{dtype}: non-finite grads"


# ---------------------------------------------------------------------------------------------
# end to end

#: Small enough for a CPU dry run; the quick suite's models, methods and metrics unchanged.
QUICK_OVERRIDES = [
    "data=synthetic:n=700",
    "train.epochs=2",
    "eval.max_images=64",
    "aggregation.bootstrap=20",
]


def test_quick_suite_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    command = [sys.executable, "-m", "aubench", "run", "--suite", "quick", "--quiet"]
    command += ["--device", str(DEVICE), "--out", str(out), "--runs-root", str(tmp_path / "runs")]
    for override in QUICK_OVERRIDES:
        command += ["--set", override]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_parquet(out / "results.parquet")
    accuracy = table[(table.metric == "accuracy") & (table["class"] == "all")]
    assert set(accuracy.variant) == {"baseline", "guided"}
    chance = 100 / 7
    assert (accuracy.value > chance).all(), accuracy[["variant", "value"]].to_string()
    cosine = table[(table.metric == "cosine") & (table["class"] == "macro")]
    assert not cosine.empty and cosine.value.between(-1, 1).all()
