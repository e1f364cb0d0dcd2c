"""aubench check: direction-aware tolerances, CI allowance, missing cells, exit codes, plugin."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aubench.bench.check import check_run, update_baseline
from aubench.bench.results import RESULT_COLUMNS, write_manifest, write_results
from aubench.cli import main

pytest_plugins = ["pytester"]


def _write_run(folder, cosine=0.70, deletion=0.20, accuracy=95.0):
    rows = [
        ("classifier", "", "accuracy", "all", accuracy, float("nan"), float("nan")),
        ("gradcam", "layer4", "cosine", "macro", cosine, cosine - 0.02, cosine + 0.02),
        ("gradcam", "layer4", "cosine", "happiness", cosine, cosine - 0.1, cosine + 0.1),
        ("gradcam", "layer4", "deletion_auc", "macro", deletion, deletion - 0.01, deletion + 0.01),
    ]
    table = pd.DataFrame(
        [
            {
                "suite": "t",
                "model": "resnet18",
                "variant": "guided",
                "seed": 0,
                "split": "test",
                "method": m,
                "layer": layer,
                "metric": metric,
                "class": c,
                "value": v,
                "ci_low": lo,
                "ci_high": hi,
                "n": 10,
                "n_excluded": 0,
            }
            for m, layer, metric, c, v, lo, hi in rows
        ]
    )[RESULT_COLUMNS]
    write_results(folder, table)
    metrics = {
        "cosine": {"higher_is_better": True, "range": [-1, 1], "category": "correlation"},
        "deletion_auc": {"higher_is_better": False, "range": [0, 1], "category": "faithfulness"},
        "accuracy": {"higher_is_better": True, "range": [0, 100], "category": "classification"},
    }
    write_manifest(folder, {"suite": {"name": "t"}, "metrics": metrics})
    return folder


@pytest.fixture
def baseline(tmp_path):
    run = _write_run(tmp_path / "base")
    path = update_baseline(run, tmp_path / "baseline.json")
    return path


def test_update_baseline_keeps_headline_cells_with_default_tolerances(baseline):
    data = json.loads(baseline.read_text())
    assert data["suite"] == "t"
    assert data["tolerances"] == {"default": {"abs": 0.05}, "accuracy": {"abs": 3.0}}
    assert [(e["metric"], e["class"]) for e in data["entries"]] == [
        ("accuracy", "all"),
        ("cosine", "macro"),
        ("deletion_auc", "macro"),
    ]
    assert data["entries"][0]["ci_low"] is None  # NaN is stored as null


@pytest.mark.parametrize(
    ("changes", "regressed"),
    [
        ({}, []),
        ({"cosine": 0.66}, []),  # −0.04 within abs 0.05
        ({"cosine": 0.64}, ["cosine"]),  # −0.06 beyond it
        ({"cosine": 0.99, "deletion": 0.05}, []),  # improvements in both directions
        ({"deletion": 0.26}, ["deletion_auc"]),  # lower is better: +0.06 is worse
        ({"accuracy": 92.5}, []),
        ({"accuracy": 91.0}, ["accuracy"]),
    ],
)
def test_regressions_follow_metric_direction_and_tolerance(tmp_path, baseline, changes, regressed):
    run = _write_run(tmp_path / "run", **changes)
    result = check_run(run, baseline)
    assert sorted(result.regressions.metric) == regressed
    assert result.ok == (not regressed)


def test_ci_tolerance_allows_the_baseline_interval(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    data["tolerances"] = {"default": {"abs": 0.0, "ci": True}, "accuracy": {"abs": 0.0}}
    baseline.write_text(json.dumps(data))
    assert check_run(_write_run(tmp_path / "a", cosine=0.681), baseline).ok  # CI low 0.68
    assert not check_run(_write_run(tmp_path / "b", cosine=0.679), baseline).ok


def test_a_missing_cell_is_a_regression(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    data["entries"].append({**data["entries"][1], "method": "layercam"})
    baseline.write_text(json.dumps(data))
    result = check_run(_write_run(tmp_path / "run"), baseline)
    assert result.regressions.status.tolist() == ["missing"]
    assert "1 regression(s) in 4 checked cells" in result.describe()


def test_cli_exit_codes(tmp_path, baseline, capsys):
    good = _write_run(tmp_path / "good")
    bad = _write_run(tmp_path / "bad", cosine=0.5)
    assert main(["check", str(good), "--baseline", str(baseline)]) == 0
    assert "no regression in 3 checked cells" in capsys.readouterr().out
    assert main(["check", str(bad), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "regression" in out.splitlines()[1] and "cosine" in out.splitlines()[1]
    assert main(["check", str(good), "--baseline", str(tmp_path / "none.json")]) == 2
    assert "--update-baseline" in capsys.readouterr().err
    assert main(["check", str(bad), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert main(["check", str(bad), "--baseline", str(baseline)]) == 0


def test_cells_the_baseline_lacks_are_listed_as_unchecked(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    data["entries"] = [e for e in data["entries"] if e["metric"] != "deletion_auc"]
    baseline.write_text(json.dumps(data))
    result = check_run(_write_run(tmp_path / "run"), baseline)
    assert result.ok
    assert result.unchecked.metric.tolist() == ["deletion_auc"]
    text = result.describe()
    assert "no regression in 2 checked cells" in text
    assert "1 cell(s) of the run have no baseline entry and were not checked" in text
    assert "deletion_auc" in text.splitlines()[-1]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["tolerances"].update(default={"abs": -0.01}),
            "tolerances.default.abs = -0.01",
        ),
        (lambda d: d["tolerances"].update(cosine={"abs": "big"}), "tolerances.cosine.abs = 'big'"),
        (lambda d: d["tolerances"].update(cosine={"ci": "yes"}), "tolerances.cosine.ci = 'yes'"),
        (lambda d: d["tolerances"].update(cosine={"absolute": 1}), "tolerances.cosine must"),
        (lambda d: d["entries"][1].update(seed="zero"), "entries[1].seed = 'zero'"),
        (lambda d: d["entries"][1].update(seed=0.5), "entries[1].seed = 0.5"),
        (lambda d: d["entries"][2].pop("metric"), "entries[2] lacks ['metric']"),
        (lambda d: d["entries"][0].update(value="high"), "entries[0].value = 'high'"),
        (lambda d: d.pop("tolerances"), "missing field 'tolerances'"),
    ],
)
def test_a_malformed_baseline_is_refused_naming_the_field(
    tmp_path, baseline, capsys, edit, message
):
    data = json.loads(baseline.read_text())
    edit(data)
    baseline.write_text(json.dumps(data))
    before = baseline.read_bytes()
    run = _write_run(tmp_path / "run")
    assert main(["check", str(run), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert str(baseline) in err and message in err
    assert baseline.read_bytes() == before  # nothing rewritten


def test_a_broken_baseline_or_manifest_is_one_clear_line(tmp_path, baseline, capsys):
    run = _write_run(tmp_path / "run")
    broken = tmp_path / "broken.json"
    broken.write_text('{"entries": [')
    assert main(["check", str(run), "--baseline", str(broken)]) == 2
    assert f"{broken}: not valid JSON" in capsys.readouterr().err
    write_manifest(run, {"suite": {"name": "t"}})
    assert main(["check", str(run), "--baseline", str(baseline)]) == 2
    assert "manifest.json: missing field 'metrics'" in capsys.readouterr().err


def test_a_cell_counted_twice_is_refused(tmp_path, baseline):
    run = _write_run(tmp_path / "run")
    table = pd.read_parquet(run / "results.parquet")
    write_results(run, pd.concat([table, table.iloc[[1]]], ignore_index=True))
    with pytest.raises(ValueError, match=r"2 rows share their cell.*method='gradcam'"):
        check_run(run, baseline)


def test_a_missing_run_folder_is_named_before_the_baseline(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    for baseline in (tmp_path / "none.json", tmp_path):  # absent, and not even a file
        assert main(["check", str(missing), "--baseline", str(baseline)]) == 2
        err = capsys.readouterr().err
        assert f"run folder {missing} does not exist" in err
        assert "baseline" not in err


def test_pytest_fixture_fails_a_test_on_regression(pytester, tmp_path, baseline):
    good = _write_run(tmp_path / "good")
    bad = _write_run(tmp_path / "bad", cosine=0.5)
    pytester.makepyfile(
        f"""
        def test_good(aubench_check):
            assert aubench_check({str(good)!r}, {str(baseline)!r}).ok

        def test_bad(aubench_check):
            aubench_check({str(bad)!r}, {str(baseline)!r})
        """
    )
    result = pytester.runpytest()  # the plugin is registered by the package entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 regression(s) in 3 checked cells*"])
