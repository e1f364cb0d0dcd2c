"""Suites that train the interpretable-by-design methods: ``methods`` (cells, configs, errors that
name the entry), ``pretrained`` and ``--pretrained``, presets (cam-methods' ``paper``), the
per-cell dry-run plan, and the method table of a hand-built run of several methods and blocks.
The miniature end-to-end run of the 11-row cam-methods is in test_bench_builtin_suites.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aubench.bench.results import RESULT_COLUMNS, write_manifest, write_results
from aubench.bench.runner import check_suite, describe_plan, plan
from aubench.bench.suite import SuiteError, load_suite
from aubench.cli import _weights_override, main
from aubench.report.markdown import render_report
from aubench.report.runs import RunData
from aubench.report.tables import method_table

#: cam-methods' trained models, in ``methods`` order.
LABELS = [
    "resnet10t",
    "resnet10t-wildcat",
    "resnet10t-acol",
    "resnet10t-prm",
    "resnet10t-adl",
    "resnet10t-cutmix",
    "vit_tiny_patch16_224-tscam",
    "resnet10t-apvit",
]
#: What every trained model of the ``paper`` preset shares (paper-protocol.md, summary).
PAPER = {
    "size": 224,
    "optimizer": "sgd",
    "lr": 0.002,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "batch_size": 224,
    "epochs": 20,
    "schedule": "step",
    "step_every": 4,
    "step_gamma": 0.9,
    "amp": True,
    "lam": 4.0,
    "validation": "test",
    "augment": True,
    "regions": "belharbi2024",
    "data": "rafdb:/data/RAF-DB",
}


def test_cam_cells_keep_their_names_and_configs_and_each_method_adds_its_own():
    only_cam = load_suite("cam-methods", ["methods=[cam]"])
    assert "methods" not in only_cam.dump() and "pretrained" not in only_cam.dump()
    cells = plan(load_suite("cam-methods"))
    assert [(c.key, c.config) for c in cells[:2]] == [(c.key, c.config) for c in plan(only_cam)]
    assert [c.key for c in cells] == [
        f"{label}__{variant}__0__test" for label in LABELS for variant in ("baseline", "guided")
    ]
    methods = [c.config.method for c in cells[::2]]
    assert methods == ["cam", "wildcat", "acol", "prm", "adl", "cutmix", "tscam", "apvit"]
    tscam, apvit = cells[12].config, cells[15].config
    assert tscam.model == "vit_tiny_patch16_224" and tscam.layers == ("norm",)
    assert not tscam.large_maps and not tscam.guided and cells[13].config.guided
    assert (apvit.model, apvit.apvit_vit, apvit.layers) == (
        "resnet10t",
        "vit_tiny_patch16_224",
        ("proj",),
    )
    assert cells[4].config.acol_width == 128 and cells[15].config.lam == 4
    # the per-method settings that let each method learn from scratch at this size (suite YAML)
    assert (cells[4].config.acol_norm, cells[4].config.epochs) == (True, 5)
    assert cells[8].config.adl_threshold == 0.9 and cells[0].config.epochs == 3
    assert (tscam.epochs, tscam.lr, tscam.warmup_epochs) == (10, 1e-3, 1)
    assert (apvit.epochs, apvit.lr, apvit.warmup_epochs) == (6, 1e-3, 1)
    assert cells[2].config.run_name().startswith("resnet10t-wildcat-baseline-")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[]", "methods: must not be empty"),
        ("methods=[cam, wildcat, wildcat]", "methods: 'resnet10t-wildcat' would name two models"),
        ("methods=[tscm]", "methods.0.name: unknown method 'tscm'; did you mean tscam, cam?"),
        ("methods=[{name: prm, modl: vgg11}]", "methods.0.modl: unknown field 'modl'; did you"),
        ("methods=[{name: prm, train: {model: x}}]", "methods.0.train: 'model' is set by the"),
        (
            "methods=[cam, {name: prm, train: {acol_width: 8}}]",
            "methods.1 (prm on resnet10t): variant 'baseline': config: acol_width is an option "
            "of method 'acol'",
        ),
        ("train.wildcat_kmax=0.3", "(in a suite: in its methods entry, e.g. {name: wildcat"),
        ("train.method=acol", "train.method: list the training methods in methods"),
        ("pretrained={resnt10t: a.pth}", "pretrained: the suite trains no model 'resnt10t'; did"),
        ("models=[resnet10t, {name: resnet10t-prm, maps: m}]", "'resnet10t-prm' would name two"),
    ],
)
def test_bad_methods_name_the_entry(override, message):
    with pytest.raises(SuiteError) as err:
        load_suite("cam-methods", [override])
    assert message in str(err.value)


def test_weights_for_every_model_and_for_one_go_to_the_right_configs():
    override = _weights_override(["hub", "vit_tiny_patch16_224=/w/vit.pth"])
    assert override == 'pretrained={"*": "hub", "vit_tiny_patch16_224": "/w/vit.pth"}'
    cells = plan(load_suite("cam-methods", [override]))
    weights = {c.model: (c.config.pretrained, c.config.apvit_vit_pretrained) for c in cells}
    assert weights["resnet10t"] == weights["resnet10t-wildcat"] == ("hub", None)
    assert weights["vit_tiny_patch16_224-tscam"] == ("/w/vit.pth", None)
    assert weights["resnet10t-apvit"] == ("hub", "/w/vit.pth")  # its stem, its ViT blocks
    with pytest.raises(SuiteError, match=r"per model \(pretrained\) or for every model"):
        load_suite("cam-methods", [override, "train.pretrained=/w/r.pth"])


def test_an_unsuitable_pairing_or_a_missing_weights_file_fails_before_training(tmp_path, capsys):
    suite = load_suite("cam-methods", ["explainers=[cam]", "methods=[cam, tscam]"])
    with pytest.raises(SuiteError) as err:
        check_suite(suite)
    assert str(err.value) == (
        "methods.1 (tscam on resnet10t): method 'tscam' cannot use model 'resnet10t': it needs "
        "a ViT/DeiT (timm VisionTransformer), not ResNet (give the entry a model of its own: "
        "{name: tscam, model: …})"
    )
    argv = ["run", "--suite", "cam-methods", "--dry-run", "--set", "methods=[cam]"]
    argv += ["--pretrained", f"resnet10t={tmp_path / 'r10.pth'}", "--runs-root", str(tmp_path)]
    assert main(argv) == 2
    assert f"resnet10t: pretrained weights file {tmp_path / 'r10.pth'} does not exist" in (
        capsys.readouterr().err
    )


def test_paper_preset_refuses_without_data_and_weights(capsys):
    argv = ["run", "--suite", "cam-methods", "--preset", "paper", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "suite 'cam-methods', preset 'paper' needs data and pretrained: give --data NAME:PATH"
        in err
    )
    assert "--pretrained MODEL=FILE for each of resnet50, deit_small_patch16_224 and" in err
    assert main([*argv, "--data", "rafdb:/data/RAF-DB"]) == 2
    assert "preset 'paper' needs pretrained: give --pretrained hub" in capsys.readouterr().err
    assert main(["run", "--suite", "cam-methods", "--preset", "papr", "--dry-run"]) == 2
    assert (
        "suite 'cam-methods' has no preset 'papr' (its presets: paper)" in capsys.readouterr().err
    )
    assert main(["list", "suites"]) == 0
    assert "Presets (--preset): paper." in capsys.readouterr().out


def test_paper_preset_trains_every_method_with_the_papers_settings():
    overrides = ["data=rafdb:/data/RAF-DB", _weights_override(["hub"]), "seeds=[0, 1]"]
    suite = load_suite("cam-methods", overrides, preset="paper")
    assert suite.eval.max_images is None and suite.eval.batch_size == 64
    cells = plan(suite)
    assert len(cells) == 8 * 2 * 2
    for cell in cells:
        config = cell.config
        assert {key: getattr(config, key) for key in PAPER} == PAPER, cell.key
        assert config.pretrained == "hub"
    by_method = {c.config.method: c.config for c in cells if c.variant == "guided"}
    assert by_method["cam"].model == "resnet50" and by_method["cam"].layers == ("layer4",)
    assert by_method["cam"].large_maps and by_method["acol"].acol_width == 1024
    # the reference's settings, not the CPU suite's from-scratch ones
    assert not by_method["acol"].acol_norm and by_method["adl"].adl_threshold == 0.1
    assert {config.epochs for config in by_method.values()} == {PAPER["epochs"]}
    assert (by_method["tscam"].model, by_method["tscam"].layers) == (
        "deit_small_patch16_224",
        ("norm",),
    )
    apvit = by_method["apvit"]
    assert (apvit.apvit_vit, apvit.apvit_stride, apvit.apvit_k) == (
        "vit_small_patch16_224",
        16,
        160,
    )
    assert apvit.apvit_vit_pretrained == "hub"
    later = load_suite("cam-methods", [*overrides, "train.epochs=1"], preset="paper")
    assert {c.config.epochs for c in plan(later)} == {1}  # --set comes after the preset


def test_dry_run_names_each_cells_method_and_producers(tmp_path):
    text = describe_plan(load_suite("cam-methods"), tmp_path)
    lines = text.splitlines()
    assert lines[0].endswith(": 16 cells") and len(lines) == 1 + 16 * 2 + 1
    cam = "method cam on resnet10t; maps attention, cam, gradcam, gradcam++, xgradcam, layercam, "
    cam += "hirescam, gradcam-elementwise, eigencam, layer-gradcam at stage:5; controls random, "
    cam += "centre, generic-face at stage:5"
    controls = "controls random, centre, generic-face at"
    expected = {
        "resnet10t__baseline": cam,
        "resnet10t-wildcat__guided": f"method wildcat on resnet10t; maps wildcat at fc.cams; "
        f"{controls} fc.cams",
        "resnet10t-adl__baseline": f"method adl on resnet10t; maps cam at stage:5; {controls} "
        "stage:5",
        "vit_tiny_patch16_224-tscam__guided": "method tscam on vit_tiny_patch16_224; maps tscam "
        f"at head.cams; {controls} head.cams",
        "resnet10t-apvit__guided": "method apvit on resnet10t + 8 vit_tiny_patch16_224 blocks; "
        f"maps apvit at attention; {controls} attention",
    }
    # the transformers and ACoL's two losses train longer than CAM at this size (suite YAML)
    epochs = {"vit_tiny_patch16_224-tscam__guided": 10, "resnet10t-apvit__guided": 6}
    for cell, producers in expected.items():
        index = next(i for i, line in enumerate(lines) if line.split()[0].startswith(cell))
        assert f"train {epochs.get(cell, 3)} epochs" in lines[index]
        assert lines[index + 1].strip() == producers
    acol = next(line for line in lines if line.startswith("  resnet10t-acol__baseline"))
    assert "train 5 epochs" in acol
    assert lines[-1] == (
        "work: 16 model(s) to train; per cell 4–13 map producers at 4–13 (producer, layer) "
        "pairs × 9 metric(s) = 36–117 scores per image on 512 test images"
    )


#: The hand-built run: model → (method, suite model / block, explainer, layer, class-agnostic);
#: two suite models (r18, r50) and a method on its own model (vit), its own block.
TRAINED = {
    "r18": ("cam", "r18", "cam", "layer4", False),
    "r18-wildcat": ("wildcat", "r18", "wildcat", "fc.cams", False),
    "r50": ("cam", "r50", "cam", "layer4", False),
    "r50-apvit": ("apvit", "r50", "apvit", "attention", True),
    "vit-tscam": ("tscam", "vit", "tscam", "head.cams", False),
}


def _methods_run(root: Path) -> Path:
    """Accuracy 70 + k (+ 0.5 guided) for the k-th model; macro cosine 0.1·(k + 1) + 0.01·i
    (+ 0.001 guided) for its i-th map (CAM models: cam, gradcam, attention); controls 0.05 and
    0.06 beside every model's maps."""
    run = root / "methods"
    run.mkdir()
    variants = {
        "baseline": {"guided": False, "lam": 0.0, "layers": ["layer4"], "loss": "cosine"},
        "guided": {"guided": True, "lam": 4.0, "layers": ["layer4"], "loss": "cosine"},
    }
    names = ("method", "block", "explainer", "layer", "class_agnostic")
    methods = {
        model: dict(zip(names, values, strict=True)) | {"model": values[1], "aligned": ["layer4"]}
        for model, values in TRAINED.items()
    }
    metrics = {"cosine": {"higher_is_better": True, "range": [0.0, 1.0], "category": "correlation"}}
    manifest = {"variants": variants, "metrics": metrics, "methods": methods}
    write_manifest(run, manifest | {"suite": {"name": "unit"}})
    rows = []
    for k, (model, (method, _, explainer, layer, _)) in enumerate(TRAINED.items()):
        maps = ["cam", "gradcam", "attention"] if method == "cam" else [explainer]
        for j, variant in enumerate(variants):
            rows.append((model, variant, "classifier", "", "accuracy", "all", 70 + k + j / 2))
            for i, name in enumerate(maps):
                value = 0.1 * (k + 1) + 0.01 * i + 0.001 * j
                rows.append((model, variant, name, layer, "cosine", "macro", value))
            for control, value in (("control:random", 0.05), ("control:centre", 0.06)):
                rows.append((model, variant, control, layer, "cosine", "macro", value))
    columns = ["model", "variant", "method", "layer", "metric", "class", "value"]
    frame = pd.DataFrame(rows, columns=columns).assign(suite="unit", seed=0, split="test")
    frame = frame.assign(ci_low=np.nan, ci_high=np.nan, n=10, n_excluded=0)
    write_results(run, frame[RESULT_COLUMNS])
    return run


def test_method_table_of_several_methods_and_blocks(tmp_path):
    run = RunData(_methods_run(tmp_path))
    table = method_table(run, ["cosine"])
    assert table.row_names == ["Model", "Method"] and table.group_levels == 1
    controls = ["control:random", "control:centre"]
    assert table.rows == [
        *[("r18", m) for m in ["CAM", "WILDCAT", "GradCAM", "attention", *controls]],
        *[("r50", m) for m in ["CAM", "GradCAM", "APViT‡", "attention", *controls]],
        *[("vit", m) for m in ["TS-CAM", *controls]],
    ]
    accuracy = table.value[("accuracy (%) ↑", "w/ AU")]
    shown = {row: accuracy[row] for row in [("r18", "GradCAM"), ("r18", "WILDCAT")]}
    assert shown == {("r18", "GradCAM"): 70.5, ("r18", "WILDCAT"): 71.5}  # each its own model's
    assert accuracy[("r50", "APViT‡")] == 73.5 and accuracy[("vit", "TS-CAM")] == 74.5
    assert math.isnan(accuracy[("vit", "control:centre")])
    cosine = table.value[("cosine ↑", "w/ AU")]
    assert cosine[("r18", "WILDCAT")] == pytest.approx(0.201)
    assert cosine[("r50", "GradCAM")] == pytest.approx(0.311)
    assert math.isnan(cosine[("r50", "APViT‡")]) and cosine[("vit", "TS-CAM")] == 0.501
    assert cosine[("vit", "control:centre")] == 0.06  # the block's first model's controls
    bold = table.best()[:, table.columns.index(("cosine ↑", "w/ AU"))]
    assert [row for row, b in zip(table.rows, bold, strict=True) if b] == [
        ("r18", "WILDCAT"),
        ("r50", "attention"),
    ]  # best per block; TS-CAM alone in its block
    assert table.notes()[-1] == (
        "‡ APViT: – for every map metric (no CAM-COS, as in the paper): its only map is "
        "class-agnostic, one attention map for every class, so there is no class activation map "
        "to score; its scores stay in the results, flagged class_agnostic in manifest.json."
    )
    page = render_report(run, [table], [], [])
    assert "| r50-apvit | apvit | r50 | apvit at attention (class-agnostic) | layer4 |" in page


def test_check_compares_method_cells_one_by_one(tmp_path, capsys):
    run = _methods_run(tmp_path)
    baseline = tmp_path / "baseline.json"
    assert main(["check", str(run), "--baseline", str(baseline), "--update-baseline"]) == 0
    entries = json.loads(baseline.read_text())["entries"]
    assert {e["model"] for e in entries} == set(TRAINED)
    assert main(["check", str(run), "--baseline", str(baseline)]) == 0
    assert "no regression" in capsys.readouterr().out
