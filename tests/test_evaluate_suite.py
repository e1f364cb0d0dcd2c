"""Models given as they are, in suites and in Python: two checkpoints compared as variants with
the report's paired tests, a suite mixing a trained model with a given one, ``aubench.evaluate``
on the CLI's code path, and the README's CI recipe run as a user's test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import aubench
from aubench.bench.results import read_manifest, read_results
from aubench.cli import main
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from tests.test_evaluate_cli import GREY_CARD, USER_MODELS, plant_trained_model
from tests.user_models import GreyNet, make_grey_net

pytest_plugins = ["pytester"]
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """50 synthetic faces (10 test images), two GreyNet checkpoints and its card."""
    root = tmp_path_factory.mktemp("suite")
    export_synthetic(SyntheticFaces(50, 64, "train", 0), root / "faces", progress=False)
    torch.save(make_grey_net().state_dict(), root / "before.pth")
    torch.manual_seed(1)
    torch.save(GreyNet().state_dict(), root / "after.pth")
    (root / "grey.yaml").write_text(yaml.safe_dump(GREY_CARD))
    return root


def grey_entry(world: Path, checkpoint) -> dict:
    return {
        "name": "grey",
        "model": f"{USER_MODELS}:make_grey_net",
        "checkpoint": checkpoint,
        "card": str(world / "grey.yaml"),
    }


def write_suite(path: Path, **values) -> Path:
    base = {
        "name": path.stem,
        "explainers": ["attention", "gradcam"],
        "controls": ["centre"],
        "metrics": ["cosine"],
        "aggregation": {"bootstrap": 50},
        "eval": {"samples_per_class": 1},
    }
    path.write_text(yaml.safe_dump({**base, **values}, sort_keys=False))  # the listed order
    return path


def test_two_checkpoints_compare_as_variants_with_paired_tests(world, tmp_path, capsys):
    checkpoints = {"before": str(world / "before.pth"), "after": str(world / "after.pth")}
    suite = write_suite(
        tmp_path / "before-after.yaml",
        data=f"folder:{world / 'faces'}",
        models=[grey_entry(world, checkpoints)],
    )
    run = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(run), "--quiet"]) == 0
    assert "accuracy (%): before " in capsys.readouterr().out
    table = read_results(run)
    assert list(dict.fromkeys(table.variant)) == ["before", "after"]
    manifest = read_manifest(run)
    assert manifest["variants"]["before"]["guided"] is False
    assert (
        manifest["variants"]["after"] | {"guided": True, "compared_to": "before"}
        == (manifest["variants"]["after"])
    )
    assert set(manifest["models"]) == {"grey__before__0__test", "grey__after__0__test"}
    report = (run / "report" / "report.md").read_text()
    assert "paired sign-flip permutation test" in report and "against `before`" in report
    main_table = (run / "report" / "tables" / "main.tex").read_text()
    assert "attention" in main_table


def test_a_suite_trains_its_models_and_evaluates_the_given_ones(world, tmp_path, capsys):
    suite = write_suite(
        tmp_path / "mixed.yaml",
        data=f"folder:{world / 'faces'}",
        train={"size": 48},
        models=["resnet10t", grey_entry(world, str(world / "before.pth"))],
        variants=[{"name": "baseline"}],
        layers=["stage:5"],
    )
    plant_trained_model(suite, tmp_path / "runs")  # resnet10t: "trained" already
    run = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--runs-root", str(tmp_path / "runs"), "--out",
                 str(run), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    table = read_results(run)
    cells = table.groupby(["model", "variant"]).layer.unique().to_dict()
    assert set(cells) == {("resnet10t", "baseline"), ("grey", "evaluated")}
    assert set(cells["grey", "evaluated"]) == {"", "layers.conv3"}  # the card's layers
    assert set(cells["resnet10t", "baseline"]) == {"", "layer4"}
    manifest = read_manifest(run)
    assert isinstance(manifest["models"]["resnet10t__baseline__0__test"], str)  # its folder
    assert manifest["models"]["grey__evaluated__0__test"]["form"] == "factory"
    assert {"baseline", "evaluated"} == set(manifest["variants"])


def test_python_evaluate_is_the_command_line_s_code_path(world, tmp_path, capsys):
    data = f"folder:{world / 'faces'}"
    argv = ["evaluate", "--model", f"{USER_MODELS}:make_grey_net", "--checkpoint",
            str(world / "before.pth"), "--card", str(world / "grey.yaml"), "--data", data,
            "--explainers", "gradcam", "--controls", "centre", "--runs-root", str(tmp_path),
            "--bootstrap", "50", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    from_cli = Path(re.search(r"^results: (.+)$", printed, re.M).group(1))
    table, run = aubench.evaluate(
        f"{USER_MODELS}:make_grey_net",
        data,
        checkpoint=world / "before.pth",
        card=world / "grey.yaml",
        explainers=["gradcam"],
        controls=["centre"],
        runs_root=tmp_path,
        bootstrap=50,
    )
    assert run == from_cli and run.name.startswith("evaluate-user_models-")  # the same suite
    pd.testing.assert_frame_equal(table, read_results(from_cli))
    assert {"classifier", "gradcam", "control:centre"} == set(table.method)
    with pytest.raises(ValueError, match="give either a model"):
        aubench.evaluate(data=data)


def test_import_aubench_stays_light_and_evaluate_resolves():
    code = (
        "import sys, aubench\nassert 'torch' not in sys.modules\n"
        "from aubench.bench.api import evaluate\nassert aubench.evaluate is evaluate\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'evalute'"):
        aubench.evalute  # noqa: B018


def recipe() -> str:
    """The README's CI recipe: the Python block after ``<!-- ci-recipe -->``."""
    text = README.read_text().split("<!-- ci-recipe -->", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_ci_recipe_passes_then_fails_on_a_regression(world, pytester):
    home = pytester.path
    (home / "my_fer").mkdir()
    shutil.copy(USER_MODELS, home / "my_fer" / "net.py")
    (home / "my_fer" / "net.py").write_text(
        (home / "my_fer" / "net.py").read_text() + "\n\ndef build():\n    return GreyNet()\n"
    )
    (home / "weights").mkdir()
    shutil.copy(world / "before.pth", home / "weights" / "net.pth")
    shutil.copy(world / "grey.yaml", home / "my_fer" / "net.yaml")
    shutil.copytree(world / "faces", home / "tests" / "data" / "faces")
    pytester.makepyfile(test_fer_maps=recipe())

    first = pytester.runpytest("-p", "no:cacheprovider", "--basetemp", str(home / "tmp"))
    first.assert_outcomes(failed=1)  # no baseline yet: the failure says how to make one
    first.stdout.fnmatch_lines(
        ["*create it with `aubench check RUN --baseline*--update-baseline`*"]
    )
    (run,) = (
        p for p in (home / "tmp").glob("test_maps_still_look*/run") if not p.parent.is_symlink()
    )
    baseline = home / "tests" / "aubench-baseline.json"
    assert main(["check", str(run), "--baseline", str(baseline), "--update-baseline"]) == 0
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

    entries = json.loads(baseline.read_text())
    for entry in entries["entries"]:
        if entry["method"] == "gradcam" and entry["class"] == "macro":
            entry["value"] += 0.2  # the model's maps "used to" align much better
    baseline.write_text(json.dumps(entries))
    regressed = pytester.runpytest("-p", "no:cacheprovider")
    regressed.assert_outcomes(failed=1)
    regressed.stdout.fnmatch_lines(["*regression*gradcam*cosine*macro*", "*1 regression(s)*"])
