"""``aubench report RUN`` end to end on a hand-written run folder: every file, the Markdown page,
a real pdflatex compile of every table, and the command line."""

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

import aubench.report
from aubench.cli import main
from aubench.report.build import write_report
from aubench.report.latex import PACKAGES
from tests.report_fixtures import make_run

TABLES = ["ablation", "lambda", "layers", "main", "metrics_overlap", "metrics_saliency", "per_au"]
FIGURES = ["confusion", "lambda", "layers", "metrics", "per_au", "samples_resnet_18"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("report"))
    return write_report(run, ci=True)


def test_writes_every_table_and_figure(report):
    assert aubench.report.write_report is write_report  # the package exports it
    assert report.name == "report" and (report.parent / "results.parquet").is_file()
    assert sorted(p.stem for p in (report / "tables").glob("*.tex")) == TABLES
    for stem in FIGURES:
        png = imread(report / "figures" / f"{stem}.png")
        assert png.ndim == 3 and png.shape[0] > 100 and png[..., :3].std() > 0.01, stem
        assert (report / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert not list(report.rglob("*.tmp"))  # atomic writes leave no temporary file behind


def test_markdown_page_links_what_exists(report):
    page = (report / "report.md").read_text()
    assert page.startswith("# aubench report: run\n")
    assert "- git commit: abc1234" in page
    for name in TABLES:
        assert f"[tables/{name}.tex](tables/{name}.tex)" in page
    for stem in FIGURES:
        assert f"(figures/{stem}.png)" in page and f"[PDF](figures/{stem}.pdf)" in page
    assert "| guided\\_34 | yes | 4 | layer3, layer4 | ce+cos |" in page
    assert "Holm-corrected over each table" in page
    assert "Method tables show each method at its last layer: cam at layer4" in page


def test_every_table_compiles_with_pdflatex(report, tmp_path):
    pdflatex, pdftoppm = shutil.which("pdflatex"), shutil.which("pdftoppm")
    assert pdflatex and pdftoppm, (
        "pdflatex and pdftoppm are required (.ci/run installs texlive-latex-base, "
        "texlive-latex-recommended and poppler-utils)"
    )
    inputs = "\n".join(
        rf"\input{{{(report / 'tables' / f'{name}.tex').as_posix()}}}" for name in TABLES
    )
    document = tmp_path / "tables.tex"
    document.write_text(
        rf"\documentclass{{article}}\usepackage{{{','.join(PACKAGES)},amssymb}}"
        f"\n\\begin{{document}}\n{inputs}\n\\end{{document}}\n"
    )
    done = subprocess.run(
        [pdflatex, "-halt-on-error", "-interaction=nonstopmode", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Warning: Reference" not in done.stdout and "Undefined control" not in done.stdout
    subprocess.run(
        [pdftoppm, "-png", "-r", "50", "-f", "1", "-l", "1", "tables.pdf", "page"],
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    (page,) = tmp_path.glob("page*.png")
    pixels = imread(page)[..., :3].mean(axis=2)
    assert pixels.shape[0] > 300
    assert 0.0005 < np.mean(pixels < 0.5) < 0.5  # ink on a white page


def test_cli_report_without_per_image_or_samples(tmp_path, capsys):
    run = make_run(tmp_path, seeds=(0,))
    shutil.rmtree(run / "per_image")
    shutil.rmtree(run / "samples")
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    for name in ("figures/lambda.png", "figures/lambda.pdf", "notes.txt"):
        (out / name).write_text("from an earlier report")
    argv = ["report", str(run), "--out", str(out), "--metrics", "kl,iou"]
    assert main([*argv, "--variants", "baseline,guided"]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out / 'report.md'}, 4 LaTeX tables and 3 figures (PNG + PDF)\n"
    )
    # the earlier report's λ figure is gone (no λ sweep among these variants), other files stay
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == [f"{s}.{x}" for s in ("layers", "metrics", "per_au") for x in ("pdf", "png")]
    assert (out / "notes.txt").is_file()
    main_table = (out / "tables" / "main.tex").read_text()
    assert r"\multicolumn{2}{c}{kl $\downarrow$} & \multicolumn{2}{c}{iou $\uparrow$}" in main_table
    assert "$^{*" not in main_table  # no per-image scores: no tests
    page = (out / "report.md").read_text()
    assert f"{run / 'per_image'} holds no per-image scores" in page
    assert f"{run / 'samples' / 'resnet_18__baseline__0.npz'} is missing" in page


def test_cli_report_errors_name_the_problem(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert f"run folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    run = make_run(tmp_path, seeds=(0,))
    assert main(["report", str(run), "--metrics", "dice"]) == 2
    assert "has no scores for metric(s) ['dice']" in capsys.readouterr().err
