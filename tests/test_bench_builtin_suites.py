"""Every built-in suite, shrunk in data and epochs but not in what it asks for, runs end to end:
its explainers at their layers, its metrics, its report. Plus the fail-fast check that refuses a
suite whose explainer cannot explain a layer before anything is trained.

``cam-methods`` trains all eight methods of the paper's Table 1; to keep its 16 trainings to about
a minute, it also runs on timm's tiny test models (``test_resnet``; TS-CAM on ``test_vit``, APViT
with 2 ``test_vit`` blocks, ACoL with 64-channel branches), every method and row kept; its
report's main table is checked row by row (the paper's order, APViT's "–" and its footnote)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from aubench.bench.evaluate import method_label
from aubench.bench.results import (
    read_manifest,
    read_per_image,
    read_results,
    read_samples,
    sample_file,
)
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
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.codebook import ALL_AUS, EXPRESSIONS, get_codebook
from aubench.metrics import METRICS
from aubench.models import resolve_layers
from aubench.report import write_report
from aubench.report.latex import PACKAGES, render_latex
from aubench.report.markdown import render_markdown
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
#: More shrinking for a suite that trains many models (module doc), as ``--set`` overrides.
SHRUNK = {
    "cam-methods": [
        "models=[test_resnet]",
        "methods=[cam, wildcat, {name: acol, train: {acol_width: 64}}, prm, adl, cutmix, "
        "{name: tscam, model: test_vit, train: {large_maps: false, layers: [norm]}}, "
        "{name: apvit, train: {apvit_vit: test_vit, apvit_depth: 2, layers: [proj]}}]",
    ],
    # two of the shortcut probabilities, each variant's training data shrunk too
    "shortcut": [
        "data=synthetic:n=96,shortcut=1.0",
        "variants=[{name: baseline-rho0, train: {data: 'synthetic:n=96'}}, "
        "{name: guided-rho1.0, guided: true, train: {data: 'synthetic:n=96,shortcut=1.0'}}]",
    ],
    # contempt's AUs on one side: 16 test faces hold two contempt faces
    "laterality": ["data=synthetic:n=96,codebook=emfacs,one_sided=true", "eval.max_images=16"],
    # faces drawn as the suite draws them, 56 to train on; 14 test faces: each class twice
    "evidence": [
        "data=synthetic:n=56,codebook=emfacs",
        "models=[test_resnet]",
        "eval.max_images=14",
    ],
}
#: The rows of the paper's Table 1, in its order, then cam-methods' other explainers and controls.
PAPER_ORDER = [
    *("CAM", "WILDCAT", "GradCAM", "GradCAM++", "ACoL", "PRM", "ADL", "CutMix", "LayerCAM"),
    *("TS-CAM", "APViT‡", "attention", "xgradcam", "hirescam", "gradcam-elementwise"),
    *("eigencam", "layer-gradcam", "control:random", "control:centre", "control:generic"),
]


def miniature(name: str):
    """Built-in suite ``name`` shrunk (:data:`MINIATURE`, :data:`SHRUNK`)."""
    return load_suite(name, [*MINIATURE, *SHRUNK.get(name, [])])


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin-runs")


@pytest.mark.parametrize("name", list_suites())
def test_builtin_suite_runs_in_miniature_with_every_producer_at_its_layers(name, runs_root):
    suite = miniature(name)
    run = run_suite(suite, runs_root=runs_root, progress=False)
    table = read_results(run)
    model = build_model(plan(suite)[0].config, 7)
    producers = (*suite.explainers, *suite.controls)
    cam = table[table.model.isin(suite.trained_models)]  # the other methods: their own maps
    methods = cam.loc[cam.method != "classifier", "method"]
    assert list(dict.fromkeys(methods)) == [method_label(p, suite.controls) for p in producers]
    for producer in producers:
        label = method_label(producer, suite.controls)
        expected = set(resolve_layers(model, list(suite.layers_of(producer))))
        assert set(cam[cam.method == label].layer) == expected, (name, producer)
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
    if "lateral_share" in suite.metrics:  # contempt faces only; mirror: no control
        per_image = read_per_image(run)
        lateral = per_image[per_image.metric == "lateral_share"]
        contempt = lateral.label == 7
        assert lateral[contempt].value.notna().all() and lateral[~contempt].value.isna().all()
        mirror = per_image[per_image.metric == "mirror_equivariance"]
        assert set(mirror.method) == set(suite.explainers)
        assert mirror[mirror.reason == "valid"].value.between(-1, 1).all()
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


def test_cam_methods_table_has_the_papers_rows_each_method_scored_by_its_own_map(
    runs_root, tmp_path
):
    """The miniature cam-methods (the same run as above: whichever test comes first trains it):
    every method's cells hold scores of its own map at its layer beside the controls; the main
    table has the paper's rows in its order, each method with its own model's accuracy, and
    APViT's map metrics "–" with a footnote saying why."""
    suite = miniature("cam-methods")
    run = run_suite(suite, runs_root=runs_root, progress=False)
    table = read_results(run)
    methods = read_manifest(run)["methods"]
    own = {label: (info["explainer"], info["layer"]) for label, info in methods.items()}
    assert own == {
        "test_resnet": ("cam", "layer4"),
        "test_resnet-wildcat": ("wildcat", "fc.cams"),
        "test_resnet-acol": ("acol", "fc.cams"),
        "test_resnet-prm": ("prm", "fc.cams"),
        "test_resnet-adl": ("cam", "layer4"),
        "test_resnet-cutmix": ("cam", "layer4"),
        "test_vit-tscam": ("tscam", "head.cams"),
        "test_resnet-apvit": ("apvit", "attention"),
    }
    assert [label for label, info in methods.items() if info["class_agnostic"]] == [
        "test_resnet-apvit"
    ]
    macro = table[(table["class"] == "macro") & (table.metric == "cosine")]
    controls = {method_label(c, suite.controls) for c in suite.controls}
    for label, (explainer, layer) in own.items():
        if label == "test_resnet":
            continue
        rows = macro[macro.model == label]
        assert set(rows.method) == {explainer, *controls} and set(rows.layer) == {layer}
        scored = rows[rows.method == explainer]
        assert len(scored) == 2 and scored.value.notna().all(), label  # baseline and guided

    main = next(t for t in report_tables(RunData(run)) if t.name == "main")
    assert main.row_names == ["Method"] and [row[-1] for row in main.rows] == PAPER_ORDER
    accuracy = table[(table.metric == "accuracy") & (table["class"] == "all")]
    expected = accuracy.set_index(["model", "variant"]).value
    for label, model in [("ACoL", "test_resnet-acol"), ("GradCAM", "test_resnet")]:
        shown = main.value.loc[(label,)]
        for variant, column in (("baseline", "w/o AU"), ("guided", "w/ AU")):
            assert shown[("accuracy (%) ↑", column)] == expected[(model, variant)]
    apvit = main.value.loc[("APViT‡",)]
    assert apvit.xs("accuracy (%) ↑").notna().all() and apvit.xs("cosine ↑").isna().all()
    text = render_markdown(main)
    line = next(line for line in text.splitlines() if line.startswith("| APViT‡ |"))
    assert line.endswith("| – | – |")
    assert "‡ APViT: – for every map metric (no CAM-COS, as in the paper): its only map is " in text
    latex = render_latex(main)
    assert r"APViT$^{\ddagger}$ & " in latex and r"$^{\ddagger}$ APViT: -- for every" in latex
    _compiles(tmp_path, {"main": latex})


def _compiles(folder: Path, tables: dict[str, str]) -> None:
    """The LaTeX ``tables`` (name → text), \\input into one document in ``folder``, compile with
    pdflatex, when it is installed (test_report_build requires it)."""
    if not shutil.which("pdflatex"):
        return
    for name, text in tables.items():
        (folder / f"{name}.tex").write_text(text)
    inputs = "".join(rf"\input{{{name}.tex}}" + "\n" for name in tables)
    document = folder / "doc.tex"
    document.write_text(
        rf"\documentclass{{article}}\usepackage{{{','.join(PACKAGES)},amssymb}}"
        f"\n\\begin{{document}}\n{inputs}\\end{{document}}\n"
    )
    command = ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", document.name]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]


def test_evidence_suite_pairs_codebook_and_evidence_scores_and_tells_each_class_agreement(
    runs_root, tmp_path
):
    """The miniature evidence suite (the same run as above: whichever test comes first trains
    it; timm's ``test_resnet``): 14 test faces drawn with EMFACS's prototypes, scored against
    aubench's default codebook and against the AUs each face was drawn with (facs: the truth).
    The paired table holds each producer's macro cosine against both, per variant; the
    agreement table's numbers are those recomputed from the drawn AUs; the notes count the
    evidence; the figures exist and the tables compile."""
    shipped = load_suite("evidence")
    assert (shipped.data, shipped.evidence) == ("synthetic:n=1500,codebook=emfacs", "facs")
    assert [v.train for v in shipped.variants] == [{}, {}, {"evidence": "facs"}]
    suite = miniature("evidence")
    configs = {cell.variant: cell.config for cell in plan(suite)}
    assert {v: c.evidence for v, c in configs.items()} == {
        "baseline": "codebook",
        "guided": "codebook",
        "guided-evidence": "facs",
    }
    assert configs["guided"].hash() != configs["guided-evidence"].hash()
    run = run_suite(suite, runs_root=runs_root, progress=False)
    report = write_report(run)
    data = RunData(run)
    tables = {t.name: t for t in report_tables(data)}

    paired = tables["evidence"]  # vs codebook, vs evidence: the results' macro rows
    labels = {"baseline": "w/o AU", "guided": "w/ AU (guided)"}
    labels["guided-evidence"] = "w/ AU (guided-evidence)"
    sides = {"vs codebook": "cosine", "vs evidence": "cosine@evidence"}
    assert paired.columns == [(f"cosine ↑ {labels[v]}", side) for v in labels for side in sides]
    methods = [method_label(p, suite.controls) for p in (*suite.explainers, *suite.controls)]
    assert [row[-1] for row in paired.rows] == methods
    table = read_results(run)
    macro = table[table["class"] == "macro"].set_index(["variant", "method", "metric"]).value
    for method in methods:
        shown = paired.value.loc[(method,)]
        for variant, label in labels.items():
            for side, metric in sides.items():
                assert shown[(f"cosine ↑ {label}", side)] == macro[(variant, method, metric)]

    # the agreement, recomputed from the AUs each face was drawn with
    drawn: dict[int, list[set[int]]] = {}
    for face in map(SyntheticFaces(14, 64, "test", codebook="emfacs").__getitem__, range(14)):
        shows = {au for au, a in zip(ALL_AUS, face["au_intensity"].tolist(), strict=True) if a}
        drawn.setdefault(int(face["label"]), []).append(shows)
    book = get_codebook("belharbi2024-fixed")  # aubench's default codebook
    (agreement,) = data.agreements
    assert agreement.codebook == book.name
    assert sorted(agreement.cells) == sorted(cell.key for cell in plan(suite))
    assert [c.name for c in agreement.classes] == [EXPRESSIONS[k] for k in sorted(drawn)]
    rows = {row[0][0][0]: row for row in tables["agreement"].rows}
    for found in agreement.classes:
        images, prototype = drawn[EXPRESSIONS.index(found.name)], set(found.prototype)
        assert prototype == set(book.aus_of(EXPRESSIONS.index(found.name)))
        exact = sum(aus == prototype for aus in images)
        jaccard = [
            len(a & prototype) / len(a | prototype) if a | prototype else 1.0 for a in images
        ]
        shares = {au: sum(au in a for a in images) / len(images) for au in prototype.union(*images)}
        assert (found.n, found.exact) == (len(images), exact) and found.n == 2
        # prototype_agreement divides in float32: each image's Jaccard to float32 precision
        assert found.jaccard == pytest.approx(np.mean(jaccard), abs=1e-7)
        assert found.frequency == pytest.approx(shares, abs=1e-12)
        assert rows[found.name][3] == (
            (f"{exact / len(images):.2f} ({exact}/{len(images)})", False),
        )
    happiness = next(c for c in agreement.classes if c.name == "happiness")
    assert (happiness.exact, happiness.frequency[25]) == (0, 0.0)  # EMFACS has no AU25 there
    assert happiness.jaccard == pytest.approx(2 / 3)

    page = (report / "report.md").read_text()
    assert "| guided-evidence | yes | 4 | layer4 | cosine | facs |" in page
    shown = "**6\u00a0(1.00)**, **12\u00a0(1.00)**, **25\u00a0(0.00)** |"  # unbreakable spaces
    assert f"| happiness | 2 | 6, 12, 25 | 0.00 (0/2) | 0.667 | {shown}" in page
    assert (
        f"Evidence, every cell: 14 images scored; 0 without evidence; evidence maps invalid: "
        f"no-present-aus {len(drawn[0])}; AUs without a region (images showing them; not "
        "drawn): none; evidence keys fitting no image or several: none; rows the reader "
        "skipped: none." in page
    )
    figures = report / "figures"
    assert imread(figures / "agreement.png").shape[0] > 300
    assert "evidence_heatmaps" in read_samples(sample_file(run, "test_resnet", "baseline", 0))
    assert (figures / "samples_test_resnet.png").is_file()
    chosen = ("main", "evidence", "agreement")
    _compiles(tmp_path, {name: (report / "tables" / f"{name}.tex").read_text() for name in chosen})


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
    """The committed runs predate ``explainer_layers`` (and ``methods``): this version must accept
    their folders (cam-methods' own, which now trains more methods, through its run's
    suite.yaml)."""
    reports = Path(__file__).parents[1] / "reports"
    for name, source in (("quick", "quick"), ("cam-methods", reports / "cam-methods/suite.yaml")):
        suite = load_suite(str(source))
        assert suite_hash(suite) == read_manifest(reports / name)["suite_hash"]
        prepare_run_folder(reports / name, suite)  # raises for a folder of another suite
    with_own = load_suite("quick", ["explainer_layers.cam=[stage:5]"])
    assert suite_hash(with_own) != suite_hash(load_suite("quick"))
