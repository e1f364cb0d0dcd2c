"""Reading a run folder and shaping its tables: control flags, variants, layers, sweeps, the
main table's numbers and marks, confusion matrices, and the errors that name what is wrong."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from aubench.bench.results import write_manifest
from aubench.report.runs import RunData, control_flags, metric_info
from aubench.report.tables import (
    choose_metrics,
    confusion_matrix,
    layer_table,
    method_table,
    per_au_table,
    report_tables,
    sweep_table,
)
from tests.report_fixtures import METRICS, MODEL, make_run, make_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return RunData(make_run(tmp_path_factory.mktemp("report")))


def _rows(method, metric, value, low=np.nan, high=np.nan, variant="b"):
    return dict(
        model="m",
        variant=variant,
        seed=0,
        split="test",
        method=method,
        layer="l4",
        metric=metric,
        value=value,
        ci_low=low,
        ci_high=high,
    )


def test_control_flags_compare_with_the_best_control_by_direction():
    table = pd.DataFrame(
        [
            _rows("cam", "cosine", 0.50, 0.45, 0.55),  # best control 0.48 inside the CI
            _rows("gc", "cosine", 0.70, 0.65, 0.75),  # clear of every control
            _rows("control:random", "cosine", 0.20),
            _rows("control:centre", "cosine", 0.48),
            _rows("cam", "kl", 0.50),  # lower is better: control 0.40 beats it
            _rows("gc", "kl", 0.30, 0.28, 0.32),
            _rows("control:random", "kl", 0.40),
            _rows("classifier", "accuracy", 90.0),
            _rows("cam", "cosine", 0.9, 0.85, 0.95, variant="other"),  # no control: not flagged
        ]
    )
    flags = control_flags(table, METRICS)
    shown = flags[["variant", "method", "metric", "control", "control_value", "flagged"]]
    assert shown.astype(object).where(shown.notna(), None).values.tolist() == [
        ["b", "cam", "cosine", "control:centre", 0.48, True],
        ["b", "gc", "cosine", "control:centre", 0.48, False],
        ["b", "cam", "kl", "control:random", 0.40, True],
        ["b", "gc", "kl", "control:random", 0.40, False],
        ["other", "cam", "cosine", None, None, False],
    ]
    with pytest.raises(ValueError, match="'dice'"):
        control_flags(pd.DataFrame([_rows("cam", "dice", 0.5)]), METRICS)
    alone = control_flags(pd.DataFrame([_rows("cam", "iou", 0.5)]), METRICS)  # no control
    assert alone["flagged"].tolist() == [False]


def test_metric_info_directions_and_fallbacks():
    assert metric_info(METRICS, "kl").arrow == "↓"
    assert metric_info(METRICS, "cosine").digits == 3
    assert metric_info({}, "accuracy").label == "accuracy (%)"
    assert metric_info({}, "accuracy").digits == 2
    per_au = metric_info({}, "au_energy:AU12")  # the bench's own per-AU metric needs no entry
    assert (per_au.higher_is_better, per_au.range) == (True, (0.0, 1.0))
    message = r"RUN/manifest.json has no metadata for metric 'dice' \(it describes: au_energy"
    with pytest.raises(ValueError, match=message):
        metric_info(METRICS, "dice", "RUN/manifest.json")


def test_run_data_conventions(run):
    assert run.split == "test"
    assert run.baseline == "baseline"
    assert run.methods == ["cam", "grad_cam", "attention"]
    assert run.controls == ["control:random", "control:centre"]
    assert run.layers[:2] == ["layer3", "layer4"]
    assert [run.main_layer(m) for m in run.methods] == ["layer4", "layer4", "layer4"]
    assert run.labels["baseline"] == "w/o AU"
    assert run.labels["guided_l1"] == "w/ AU (guided_l1)"
    assert run.sweeps() == {
        "lambda": ["guided_l1", "guided", "guided_l9"],
        "layers": ["guided", "guided_34"],
    }
    assert run.per_au_metrics() == ["au_energy:AU6", "au_energy:AU12"]
    assert run.map_metrics() == ["cosine", "kl", "iou"]


def test_layer_order_follows_the_manifest_then_appearance(tmp_path):
    run = make_run(tmp_path, seeds=(0,))
    manifest = json.loads((run / "manifest.json").read_text())
    write_manifest(run, {**manifest, "layers": ["layer4"]})
    data = RunData(run)
    assert data.layers_of("grad_cam") == ["layer4", "layer3"]
    assert data.main_layer("grad_cam") == "layer3"
    write_manifest(run, {k: v for k, v in manifest.items() if k != "layers"})
    # first appearance in the results: cam (layer4 only) comes before grad_cam's layer3
    assert RunData(run).layers_of("grad_cam") == ["layer4", "layer3"]
    write_manifest(run, manifest)  # layer3, layer4
    assert RunData(run).layers_of("grad_cam") == ["layer3", "layer4"]


def test_main_table_numbers_spread_marks_and_flags(run):
    table = method_table(run, ["cosine"])
    assert table.row_names == ["Method"]
    assert table.rows == [
        ("cam",),
        ("grad_cam",),
        ("attention",),
        ("control:random",),
        ("control:centre",),
    ]
    assert table.columns[0] == ("accuracy (%) ↑", "w/o AU")
    assert table.columns[5:7] == [("cosine ↑", "w/o AU"), ("cosine ↑", "w/ AU (guided_l1)")]
    cells = run.summary.set_index(["variant", "method", "layer", "metric"])
    expected = cells.loc[("guided", "attention", "layer4", "cosine")]
    got = table.value.loc[("attention",), ("cosine ↑", "w/ AU (guided)")]
    assert got == expected["value"]
    assert table.spread.loc[("attention",), ("cosine ↑", "w/ AU (guided)")] == expected["spread"]
    assert table.n_seeds == 2
    # accuracy: the classifier's number, repeated per method; none for controls
    accuracy = cells.loc[("baseline", "classifier", "", "accuracy"), "value"]
    assert table.value.iloc[:3, 0].tolist() == [accuracy] * 3
    assert table.value.iloc[3:, 0].isna().all()
    # controls are never tested; the baseline column never is either
    assert table.p.iloc[3:].isna().all().all()
    assert table.p.iloc[:, [0, 5]].isna().all().all()
    assert (table.p.iloc[:3, 6] < 0.01).all()
    # the baselines' cosine is below control:centre (0.61): every one flagged
    assert table.flagged.iloc[:3, 5].all()
    texts = table.texts()
    assert texts[2][5].bold and not texts[0][5].bold  # attention has the best cosine
    assert not any(line[0].bold for line in texts)  # accuracy ties across methods: no bold
    assert texts[3][0].value == ""


def test_report_tables_and_their_shapes(run):
    names = [t.name for t in report_tables(run)]
    assert names == [
        "main",
        "layers",
        "lambda",
        "ablation",
        "per_au",
        "metrics_saliency",
        "metrics_overlap",
    ]
    layers = layer_table(run, ["cosine"])
    assert layers.rows[:2] == [("grad_cam", "layer3"), ("grad_cam", "layer4")]
    assert layers.group_levels == 1
    lam = sweep_table(run, "lambda", ["cosine"])
    assert [r[0] for r in lam.rows] == ["0 (w/o AU)", "1", "4", "9"]
    assert lam.columns[:2] == [("accuracy (%) ↑", ""), ("cosine ↑", "cam")]
    ablation = sweep_table(run, "layers", ["cosine"])
    assert [r[0] for r in ablation.rows] == ["w/o AU", "layer4", "layer3+layer4"]
    per_au = per_au_table(run)
    assert per_au.columns == [("au_energy ↑", "AU6"), ("au_energy ↑", "AU12")]
    assert per_au.rows[0] == ("cam", "w/o AU")


def test_choose_metrics(run):
    assert choose_metrics(run, None) == ["cosine"]
    assert choose_metrics(run, ["kl", "iou"]) == ["kl", "iou"]
    with pytest.raises(ValueError, match=r"metric\(s\) \['dice'\]; it has cosine, kl, iou"):
        choose_metrics(run, ["dice"])


def test_confusion_matrix_is_row_normalised():
    rows = pd.DataFrame(
        {
            "method": "classifier",
            "metric": "pred",
            "label": [1, 1, 1, 1, 2, 2, 0],
            "value": [1.0, 1.0, 1.0, 2.0, 2.0, np.nan, 0.0],
        }
    )
    matrix = confusion_matrix(rows)
    assert matrix.to_numpy().tolist() == [[1, 0, 0], [0, 0.75, 0.25], [0, 0, 1]]
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(rows.assign(metric="cosine"))


def test_errors_name_the_run_folder_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        RunData(tmp_path / "nowhere")
    tiny = make_tiny_run(tmp_path, {("cam", "baseline"): 0.5, ("cam", "guided"): 0.4})
    with pytest.raises(ValueError, match=r"no split 'val' \(it holds \['test'\]\)"):
        RunData(tiny, split="val")
    with pytest.raises(ValueError, match=r"no results for variants \['lam-8'\]"):
        RunData(tiny, variants=["lam-8"])
    manifest = json.loads((tiny / "manifest.json").read_text())
    write_manifest(tiny, {**manifest, "metrics": {}})
    with pytest.raises(ValueError, match=rf"{tiny}.*no metadata for metric 'kl'"):
        RunData(tiny)
    write_manifest(tiny, {**manifest, "variants": {"baseline": manifest["variants"]["baseline"]}})
    with pytest.raises(ValueError, match=r"variants \['guided'\] are in the results but not"):
        RunData(tiny)
    (tiny / "results.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"results\.parquet does not exist"):
        RunData(tiny)


def test_restricting_variants_keeps_their_order(tmp_path):
    data = RunData(make_run(tmp_path, seeds=(0,)), variants=["guided", "baseline"])
    assert list(data.variants) == ["guided", "baseline"]
    assert data.labels == {"guided": "w/ AU", "baseline": "w/o AU"}
    assert data.sweeps() == {}
    table = method_table(data, ["kl"])
    assert table.columns[2] == ("kl ↓", "w/ AU")
    assert math.isnan(table.spread.iat[0, 2])  # one seed: no spread
    assert MODEL in set(data.results["model"])
