"""Each interpretable-by-design method trains end to end on the synthetic faces: an AU-guided run
through the trainer (checkpoints included) beats chance on the test split, the best checkpoint
rebuilds through :func:`aubench.bench.evaluate.load_trained` into a model that predicts the same,
and the method's explainer gives finite maps of its layer's shape; ACoL also trains under torchrun
DDP with its ranks in sync.

To fit a few seconds per method, the faces are rendered once (exported as a ``folder`` dataset)
with the synthetic set's class-coloured corner patch in every split (``shortcut=1``,
``correlated``), and the backbones are timm's tiny test models (``test_resnet``, ``test_vit``):
about 120 steps then beat chance with a wide margin; the tests are about the methods' plumbing,
not about faces. ADL's layers sit after layer 4 only here: after layer 3 as well, they erase the
patch (the most discriminative region, as ADL intends) often enough to slow this short run down;
APViT, which reads its class token rather than pooling maps, learns slower still, so it gets a
lower learning rate and is aligned at its projected stem map (``proj``).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import default_collate

from aubench.bench.evaluate import load_trained
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.explain import explain
from aubench.train import TrainConfig, fit
from aubench.train.data import load_data
from aubench.train.model import get_method

#: 640 training faces at 64 px, batches of 32: 20 steps per epoch, 6 epochs; val/test 128 faces.
SPLITS = {"train": 640, "val": 128, "test": 128}
BASE = {
    "size": 64,
    "model": "test_resnet",
    "batch_size": 32,
    "eval_batch_size": 128,
    "epochs": 6,
    "lr": 5e-3,
    "schedule": "constant",
    "large_maps": False,
    "guided": True,
    "lam": 1.0,
}
VIT = {"model": "test_vit", "lr": 2e-3}
#: method → (its options, the (h, w) of its explainer's maps at 64 px)
CASES = {
    "wildcat": ({"wildcat_kmin": 0.1}, (2, 2)),
    "prm": ({"output_stride": 16}, (4, 4)),
    "acol": ({"acol_width": 64}, (2, 2)),
    "adl": ({"adl_layers": ("layer4.-1",)}, (2, 2)),
    "cutmix": ({}, (2, 2)),
    "tscam": ({**VIT, "layers": ("norm",)}, (4, 4)),
    "apvit": (
        {"apvit_vit": "test_vit", "apvit_depth": 2, "apvit_stride": 16, "apvit_k": 12,
         "lr": 1e-3, "layers": ("proj",)},
        (4, 4),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    """The ``folder`` data spec of the exported faces (module doc)."""
    root = tmp_path_factory.mktemp("faces")
    for split, n in SPLITS.items():
        dataset = SyntheticFaces(n, 64, split, shortcut=1.0, shortcut_mode="correlated")
        export_synthetic(dataset, root / split, progress=False)
    return f"folder:{root}"


@pytest.mark.parametrize("method", list(CASES))
def test_method_trains_above_chance_and_its_checkpoint_explains(tmp_path, faces, method):
    options, grid = CASES[method]
    config = TrainConfig(**{**BASE, **options}, data=faces, method=method)
    run = tmp_path / "run"
    summary = fit(config, out=run, progress=False, tensorboard=False, device="cpu")
    best = summary["best"]
    assert best["test_acc"] > 100 / 7, summary
    assert best["train_align"] > 0  # guided: the alignment loss acted on the chosen layer

    model, loaded, num_classes = load_trained(run, torch.device("cpu"))
    assert loaded == config and num_classes == 7
    test = load_data(config).evals["test"]
    batch = default_collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        predictions = model(batch["image"]).argmax(1)
    accuracy = 100 * float((predictions == batch["label"]).float().mean())
    assert abs(accuracy - best["test_acc"]) <= 100 / len(test) + 1e-6  # one face at most

    explainer, layer = get_method(config).explained_by(model)
    images, labels = batch["image"][:8], batch["label"][:8]
    (maps,) = explain(model, images, labels, [layer], [explainer])[explainer].values()
    assert maps.shape == (8, *grid) and torch.isfinite(maps).all()
    assert maps.flatten(1).std(1).gt(0).any()  # a map, not a constant


def test_acol_trains_under_torchrun_ddp_with_ranks_in_sync(tmp_path):
    """ACoL, the method whose loss reads a head output besides the logits (branch B's) and whose
    forward takes the labels, under two gloo processes: the ranks end with identical weights."""
    out = tmp_path / "ddp"
    flags = ["--data", "synthetic:n=32", "--model", "test_resnet", "--size", "64"]
    flags += ["--batch-size", "8", "--epochs", "1", "--no-large-maps", "--guided", "--quiet"]
    flags += ["--method", "acol", "--acol-width", "16", "--out", str(out)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    command += ["2", "-m", "aubench", "train", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"]
    assert summary["max_rank_divergence"] == 0.0
