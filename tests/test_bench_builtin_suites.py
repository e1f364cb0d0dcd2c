"""Every built-in suite, shrunk in data and epochs but not in what it asks for, runs end to end:
its explainers at their layers, its metrics, its report. Plus the fail-fast check that refuses a
suite whose explainer cannot explain a layer before anything is trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from aubench.bench.evaluate import method_label
from aubench.bench.results import read_manifest, read_results
from aubench.bench.runner import (
    check_suite,
    describe_plan,
    model_dir,
    plan,
    prepare_run_folder,
    run_suite,
    suite_hash,
)
from aubench.bench.suite import SuiteError, list_suites, load_suite
from aubench.bench.summary import headline
from aubench.metrics import METRICS
from aubench.models import resolve_layers
from aubench.report import write_report
from aubench.report.runs import RunData
from aubench.report.tables import report_tables
from aubench.train.model import build_model

#: Small data, one epoch, a few images: the suites' explainers, layers and metrics stay as shipped.
MINIATURE = [
    "data=synthetic:n=96",
    "train.epochs=1",
    "eval.max_images=4",
    "eval.batch_size=4",
    "eval.samples_per_class=1",
    "aggregation.bootstrap=10",
]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin-runs")


@pytest.mark.parametrize("name", list_suites())
def test_builtin_suite_runs_in_miniature_with_every_producer_at_its_layers(name, runs_root):
    suite = load_suite(name, MINIATURE)
    run = run_suite(suite, runs_root=runs_root, progress=False)
    table = read_results(run)
    model = build_model(plan(suite)[0].config, 7)
    producers = (*suite.explainers, *suite.controls)
    methods = table.loc[table.method != "classifier", "method"]
    assert list(dict.fromkeys(methods)) == [method_label(p, suite.controls) for p in producers]
    for producer in producers:
        label = method_label(producer, suite.controls)
        expected = set(resolve_layers(model, list(suite.layers_of(producer))))
        assert set(table[table.method == label].layer) == expected, (name, producer)
    map_metrics = [m for m in suite.metrics if METRICS[m].kind == "map"]
    for metric in map_metrics:
        scored = table[(table.metric == metric) & (table["class"] == "macro")]
        assert len(scored) and scored.value.notna().all(), (name, metric)
    assert set(read_manifest(run)["models"]) == {c.key for c in plan(suite)}
    _check_headline(headline(run), table, suite)
    report = write_report(run)
    assert (report / "report.md").read_text().count("|") > 10
    tables = {t.name: t for t in report_tables(RunData(run))}
    if "cascading_randomisation" in suite.metrics:  # one row per randomised depth
        depths = sorted(m for m in set(table.metric) if m.startswith("sanity_spearman:"))
        assert len(tables["sanity"].value) == len(depths) > 1
        assert (report / "figures" / "sanity.png").is_file()
    if "au_occlusion" in suite.metrics:  # a score of the model, shown in every method's row
        occlusion = tables["metrics_faithfulness"].value.xs("au_occlusion ↑", axis=1, level=0)
        controls = [method_label(c, suite.controls) for c in suite.controls]
        methods = ~occlusion.index.get_level_values(-1).isin(controls)
        assert occlusion[methods].notna().all().all() and occlusion[~methods].isna().all().all()


def _check_headline(text: str, table, suite) -> None:
    """Variants in suite order, accuracy from the accuracy rows only, no all-NaN column."""
    first, _, _, *rows = text.splitlines()
    parts = first.removeprefix("accuracy (%): ").split(", ")
    assert [part.split()[0] for part in parts] == [v.name for v in suite.variants]
    accuracy = table[(table.metric == "accuracy") & (table["class"] == "all")]
    expected = accuracy.groupby("variant").value.mean()
    shown = [float(part.split()[1]) for part in parts]
    assert shown == pytest.approx([expected[v.name] for v in suite.variants], abs=0.051)
    columns = list(zip(*(row.split() for row in rows), strict=True))[2:]
    assert all(any(value != "nan" for value in column) for column in columns)


def test_a_producer_asked_for_a_layer_it_cannot_explain_fails_before_training(tmp_path):
    overrides = [*MINIATURE, "explainers=[attention, cam]", "layers=[stage:3, stage:5]"]
    suite = load_suite("quick", overrides)
    with pytest.raises(SuiteError, match=r"cam at \['stage:3', 'stage:5'\].*explainer_layers"):
        run_suite(suite, runs_root=tmp_path, progress=False)
    assert not any(model_dir(tmp_path, cell.config).exists() for cell in plan(suite))
    check_suite(load_suite("quick", [*overrides, "explainer_layers.cam=[stage:5]"]))


def test_a_guided_variant_aligning_an_unknown_layer_fails_before_training(tmp_path):
    suite = load_suite("quick", [*MINIATURE, "variants=[{name: g, guided: true, layers: [lyr4]}]"])
    with pytest.raises(SuiteError, match=r"variant 'g'.*lyr4"):
        run_suite(suite, runs_root=tmp_path, progress=False)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("explainer_layers.grad-cam=[stage:5]", "explainer_layers: unknown name 'grad-cam'"),
        ("explainer_layers.cam=[]", r"explainer_layers: give at least one layer for \['cam'\]"),
    ],
)
def test_bad_explainer_layers_name_the_field(override, message):
    with pytest.raises(SuiteError, match=message):
        load_suite("quick", [override])


def test_dry_run_counts_each_producer_at_its_own_layers():
    suite = load_suite("layers")
    assert suite.layers_of("cam") == ("stage:5",) and len(suite.layers_of("attention")) == 4
    # attention and three controls at 4 layers, cam at 1: 17 pairs × 3 metrics
    assert "17 (producer, layer) pairs × 3 metric(s) = 51 scores" in describe_plan(suite, "runs")


def test_suites_without_explainer_layers_keep_their_hash_and_resume_older_runs():
    """The committed runs predate ``explainer_layers``: this version must accept their folders."""
    reports = Path(__file__).parents[1] / "reports"
    for name in ("quick", "cam-methods"):
        suite = load_suite(name)
        assert suite_hash(suite) == read_manifest(reports / name)["suite_hash"]
        prepare_run_folder(reports / name, suite)  # raises for a folder of another suite
    with_own = load_suite("quick", ["explainer_layers.cam=[stage:5]"])
    assert suite_hash(with_own) != suite_hash(load_suite("quick"))
