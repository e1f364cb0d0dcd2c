"""``aubench evaluate --model``: a user's model scored end to end from the command line on a
generated folder dataset, in every form it can come in, with the run folder ``aubench run``
writes.

The hand-written model is :class:`tests.user_models.GreyNet` (grey 48×48 input in [-1, 1], the
FER2013 class order, not timm), saved as a state dict (loaded by its factory), as a ``.pt2``
program and as TorchScript. Factory and ``.pt2`` give the same maps and scores for every method.
TorchScript takes no forward hooks, so it has no layer maps: for it we compare what it supports,
the predictions (accuracy) and an input-level method (saliency), and check that a layer method
is refused in one line. A timm model from an aubench checkpoint is scored exactly as
``aubench run`` scores the same checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
import yaml

from aubench.bench.results import read_manifest, read_per_image, read_results, read_samples
from aubench.bench.runner import model_dir, plan
from aubench.bench.suite import load_suite
from aubench.cli import main
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.models import load_model
from aubench.train.checkpoint import save_checkpoint
from aubench.train.model import build_model
from tests.user_models import USER_CLASSES, GreyNet, make_grey_net, save_forms

USER_MODELS = Path(__file__).with_name("user_models.py")
GREY_CARD = {
    "input_size": 48,
    "channels": 1,
    "mean": [0.5],
    "std": [0.5],
    "classes": list(USER_CLASSES),
    "layers": ["layers.conv3"],
    "crop": "as-is",
}
FAST = ["--quiet", "--bootstrap", "50", "--samples-per-class", "1"]

#: A model reading the label off a uniformly grey image: canonical label c is drawn at grey
#: level (c + 1) / 8, i.e. v = 2 (c + 1) / 8 − 1 in the card's [-1, 1]; output k (FER2013 order)
#: scores −100 (v − code of class k)², so its argmax is the label in the model's own order.
LABEL_READER = """
import torch
from torch import nn

ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CANONICAL = {"neutral": 0, "happy": 1, "surprise": 2, "fear": 3, "angry": 4, "disgust": 5, "sad": 6}


class LabelReader(nn.Module):
    def __init__(self, probabilities=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        nn.init.ones_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        codes = [2 * (CANONICAL[name] + 1) / 8 - 1 for name in ORDER]
        self.register_buffer("codes", torch.tensor(codes))
        self.probabilities = probabilities

    def forward(self, x):
        level = self.conv(x).mean((1, 2, 3))
        scores = -100 * (level[:, None] - self.codes) ** 2
        return scores.softmax(1) if self.probabilities else scores


def logits():
    return LabelReader()


def probabilities():
    return LabelReader(probabilities=True)
"""


def evaluate(*argv: str | Path) -> int:
    return main(["evaluate", *map(str, argv), *FAST])


def write_card(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**GREY_CARD, **changes}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """50 synthetic faces exported at 64 px (an unsplit folder: 10 test images), GreyNet in its
    three forms and its card."""
    root = tmp_path_factory.mktemp("evaluate")
    export_synthetic(SyntheticFaces(50, 64, "train", 0), root / "faces", progress=False)
    save_forms(make_grey_net(), root)
    write_card(root / "grey.yaml")
    return root


def scores(run: Path) -> pd.DataFrame:
    """The per-image scores of a one-cell run, by (id, method, layer, metric)."""
    table = read_per_image(run)
    return table.set_index(["id", "method", "layer", "metric"]).value.sort_index()


def test_factory_pt2_and_torchscript_forms_score_alike(world, capsys):
    data = f"folder:{world / 'faces'}"
    common = ["--data", data, "--card", world / "grey.yaml", "--metrics", "cosine,pointing_game"]
    layered = [*common, "--explainers", "attention,gradcam,saliency"]
    factory = f"{USER_MODELS}:make_grey_net"
    assert evaluate("--model", factory, "--checkpoint", world / "grey.pth", *layered,
                    "--out", world / "run-factory") == 0  # fmt: skip
    assert evaluate("--model", world / "grey.pt2", *layered, "--out", world / "run-pt2") == 0
    inputs_only = [*common, "--explainers", "saliency", "--controls", "none"]
    assert evaluate("--model", world / "grey.bin", *inputs_only, "--out", world / "run-ts") == 0
    capsys.readouterr()

    first, exported, scripted = (scores(world / f"run-{n}") for n in ("factory", "pt2", "ts"))
    assert set(first.index.get_level_values("method")) == {
        "classifier", "attention", "gradcam", "saliency",
        "control:random", "control:centre", "control:generic",
    }  # fmt: skip
    pd.testing.assert_series_equal(first, exported, atol=1e-5, rtol=0)
    supported = first[first.index.get_level_values("method").isin(["classifier", "saliency"])]
    pd.testing.assert_series_equal(supported, scripted, atol=1e-5, rtol=0)
    maps = [read_samples(next((world / f"run-{n}" / "samples").glob("*.npz"))) for n in
            ("factory", "pt2")]  # fmt: skip
    for key in ("map|attention|layers.conv3", "map|gradcam|layers.conv3", "map|saliency|input"):
        np.testing.assert_allclose(maps[0][key], maps[1][key], atol=2e-3)  # float16 storage
    manifest = read_manifest(world / "run-ts")
    (info,) = manifest["models"].values()
    assert info["form"] == "torchscript" and info["layers"] == ["input"]
    assert read_manifest(world / "run-pt2")["models"]["grey__evaluated__0__test"]["form"] == (
        "export"
    )

    assert evaluate("--model", world / "grey.bin", *common, "--out", world / "run-ts2") == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1
        and "attention, cam, gradcam, random, centre, generic-face need" in error
    )
    assert "TorchScript" in error and "--explainers saliency --controls none" in error
    assert not (world / "run-ts2").exists()


def plant_trained_model(suite_file: Path, runs_root: Path, seed: int = 0) -> Path:
    """Write a randomly initialised model as the finished training run of the first cell of the
    suite in ``suite_file`` (``best.pt`` + ``summary.json`` in its model folder), so that
    ``aubench run`` evaluates it without training; returns ``best.pt``."""
    config = plan(load_suite(str(suite_file)))[0].config
    torch.manual_seed(seed)
    model = build_model(config, 7)
    folder = model_dir(runs_root, config)
    folder.mkdir(parents=True)
    state = {"config": config.model_dump(mode="json"), "model": model.state_dict()}
    best = save_checkpoint(folder / "best.pt", state)
    (folder / "summary.json").write_text(json.dumps({"planted": True}))
    return best


def test_a_timm_checkpoint_scores_as_aubench_run_scores_it(world, tmp_path, capsys):
    data = f"folder:{world / 'faces'}"
    suite = tmp_path / "planted.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "planted",
                "data": data,
                "train": {"size": 64},
                "models": ["resnet10t"],
                "variants": [{"name": "baseline"}],
                "explainers": ["attention", "gradcam"],
                "metrics": ["cosine", "iou"],
                "aggregation": {"bootstrap": 50},
                "eval": {"samples_per_class": 1},
            }
        )
    )
    best = plant_trained_model(suite, tmp_path / "runs")
    run = ["run", "--suite", suite, "--runs-root", tmp_path / "runs", "--out", tmp_path / "ran"]
    assert main([*map(str, run), "--quiet"]) == 0
    assert evaluate("--model", "timm:resnet10t", "--checkpoint", best, "--data", data,
                    "--input-size", "64", "--crop", "as-is", "--explainers", "attention,gradcam",
                    "--metrics", "cosine,iou", "--out", tmp_path / "evaluated") == 0  # fmt: skip
    capsys.readouterr()
    numbers = ["method", "layer", "metric", "class", "value", "ci_low", "ci_high", "n"]
    ran, evaluated = (read_results(tmp_path / n)[numbers] for n in ("ran", "evaluated"))
    pd.testing.assert_frame_equal(ran, evaluated)
    assert load_model("timm:resnet10t", best).layer4[0].conv1.stride == (1, 1)  # large maps kept

    folder = tmp_path / "evaluated"
    assert main(["report", str(folder)]) == 0
    assert (folder / "report" / "tables" / "main.tex").is_file()
    baseline = tmp_path / "baseline.json"
    assert main(["check", str(folder), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert main(["check", str(folder), "--baseline", str(baseline)]) == 0
    assert "no regression" in capsys.readouterr().out


@pytest.fixture(scope="module")
def grey_levels(world) -> Path:
    """The exported faces (same landmarks and labels) with every image replaced by a uniform
    grey of level (label + 1) / 8, and the label reader's factory file."""
    root = world / "levels"
    export_synthetic(SyntheticFaces(50, 64, "train", 0), root, progress=False)
    labels = pd.read_csv(root / "labels.csv")
    for image, label in zip(labels.image, labels.label, strict=True):
        level = round((label + 1) / 8 * 255)
        PIL.Image.new("RGB", (64, 64), (level, level, level)).save(root / image)
    (world / "reader.py").write_text(LABEL_READER)
    return root


@pytest.mark.parametrize("output", ["logits", "probabilities"])
def test_outputs_are_read_in_the_card_s_class_order(world, grey_levels, output, capsys):
    spec = f"{world / 'reader.py'}:{output}"
    common = ["--data", f"folder:{grey_levels}", "--card", world / "grey.yaml", "--output",
              output, "--explainers", "saliency", "--controls", "none"]  # fmt: skip
    assert evaluate("--model", spec, *common, "--out", world / f"read-{output}") == 0
    per_image = read_per_image(world / f"read-{output}")
    pred = per_image[per_image.metric == "pred"]
    assert len(pred) == 10 and (pred.value.astype(int) == pred.label).all()
    table = read_results(world / f"read-{output}")
    accuracy = table[(table.metric == "accuracy") & (table["class"] == "all")]
    assert accuracy.value.tolist() == [100.0]

    canonical = world / "canonical.yaml"  # the same model claimed to score the canonical order
    write_card(canonical, classes=None)
    assert evaluate("--model", spec, *common, "--card", canonical, "--out",
                    world / f"misread-{output}") == 0  # fmt: skip
    capsys.readouterr()
    table = read_results(world / f"misread-{output}")
    assert table[(table.metric == "accuracy") & (table["class"] == "all")].value.item() < 50


def test_strict_false_loads_what_matches_and_says_what_it_skipped(world, tmp_path, capsys):
    state = torch.load(world / "grey.pth", weights_only=True)
    state["extra.weight"] = torch.zeros(3)
    del state["fc.bias"]
    torch.save(state, tmp_path / "partial.pth")
    common = ["--model", f"{USER_MODELS}:make_grey_net", "--name", "grey", "--checkpoint",
              tmp_path / "partial.pth",
              "--data", f"folder:{world / 'faces'}", "--card", world / "grey.yaml",
              "--explainers", "gradcam", "--controls", "none"]  # fmt: skip
    assert evaluate(*common, "--out", tmp_path / "strict") == 2
    error = capsys.readouterr().err
    assert "missing from the file: fc.bias" in error and "not in the model: extra.weight" in error
    assert "--strict false" in error

    assert evaluate(*common, "--strict", "false", "--out", tmp_path / "loose") == 0
    out = capsys.readouterr().out
    assert "note: grey__evaluated__0__test: loaded 7 of the model's 8 tensors" in out
    assert "skipped: missing from the file: fc.bias; not in the model: extra.weight" in out
    (info,) = read_manifest(tmp_path / "loose")["models"].values()
    assert info["complete"] is False and "fc.bias" in info["load_report"]


BAD_INPUT = [
    (["--input-size", "48x64"], "input_size 48×64 is not square"),
    (["--classes", "angry,disgust,fear,happy,sad,surprise"], "lack neutral, which the dataset"),
    (["--channels", "3", "--mean", "0.5", "--std", "0.5"], "takes 1 input channel(s) but its card"),
    (["--metrics", "cosin"], "metrics: unknown name 'cosin'; did you mean cosine"),
    (["--layers", "layers.conv9"], "layers.conv9"),
    (["--skip-bad-maps"], "--skip-bad-maps: for --maps only"),
    (["--input-size", "forty"], "--input-size 'forty': expected a side (48) or HxW (48x64)"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=lambda v: " ".join(v)[:30])
def test_bad_input_is_one_line_naming_the_value(world, tmp_path, flags, message, capsys):
    common = ["--model", world / "grey.pt2", "--data", f"folder:{world / 'faces'}",
              "--card", world / "grey.yaml", "--explainers", "gradcam",
              "--out", tmp_path / "run"]  # fmt: skip
    assert evaluate(*common, *flags) == 2
    error = capsys.readouterr().err
    assert error.startswith("aubench evaluate: error: ") and error.count("\n") == 1, error
    assert message in error
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_changed_after_its_run_is_refused(world, tmp_path, capsys):
    checkpoint = tmp_path / "grey.pth"
    checkpoint.write_bytes((world / "grey.pth").read_bytes())
    args = ["--model", f"{USER_MODELS}:make_grey_net", "--name", "grey", "--checkpoint",
            checkpoint, "--data",
            f"folder:{world / 'faces'}", "--card", world / "grey.yaml", "--explainers",
            "gradcam", "--controls", "none", "--out", tmp_path / "run"]  # fmt: skip
    assert evaluate(*args) == 0
    torch.manual_seed(3)
    torch.save(GreyNet().state_dict(), checkpoint)  # the same path, new weights
    capsys.readouterr()
    assert evaluate(*args) == 2
    assert "holds results of other files: cell grey__evaluated__0__test" in capsys.readouterr().err
