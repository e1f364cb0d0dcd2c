"""Golden LaTeX and Markdown for hand-made tables: escaping, arrows, bold by direction, the
significance marks of hand-counted permutation p-values with Holm, seed spread and CIs."""

import pandas as pd

from aubench.bench.results import read_results, write_results
from aubench.report.latex import escape, render_latex
from aubench.report.markdown import escape as md_escape
from aubench.report.markdown import render_markdown
from aubench.report.runs import RunData
from aubench.report.tables import method_table
from tests.report_fixtures import make_tiny_run

KL = {
    ("grad_cam", "baseline"): 0.50,
    ("grad_cam", "guided"): 0.30,
    ("cam", "baseline"): 0.40,
    ("cam", "guided"): 0.45,
}
#: guided − baseline per image: grad_cam 8 negative (exact p = 2/2^8), cam |d| = 1,2,3,4,5,1
#: with one negative (exact p = 6/2^6, counted in test_report_stats)
DIFFERENCES = {
    "grad_cam": [-0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8],
    "cam": [0.01, 0.02, 0.03, 0.04, 0.05, -0.01],
}

GOLDEN = r"""\begin{table}[t]
\centering
\caption{Tiny\_table: kl \& 50\% of friends}
\label{tab:aubench-tiny-kl}
\begin{tabular}{lcc}
\toprule
 & \multicolumn{2}{c}{kl $\downarrow$} \\
\cmidrule(lr){2-3}
Method & w/o AU & w/ AU \\
\midrule
grad\_cam & 0.50 & \textbf{0.30}$^{*}$ \\
cam & \textbf{0.40} & 0.45 \\
\bottomrule
\end{tabular}
\par\smallskip
{\footnotesize Bold: best per column (controls excluded). * p \textless{} 0.05, ** p \textless{} 0.01: two-sided paired sign-flip permutation test of the per-image scores against w/o AU, Holm-corrected over this table.\par}
\end{table}
"""  # noqa: E501


def test_escape_latex_specials_and_symbols():
    assert escape("grad_cam & 50% #1 {x} $y ~ ^z\\") == (
        r"grad\_cam \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{}z\textbackslash{}"
    )
    assert escape("kl ↓, cosine ↑, λ ± † <>") == (
        r"kl $\downarrow$, cosine $\uparrow$, $\lambda$ $\pm$ $^{\dagger}$ "
        r"\textless{}\textgreater{}"
    )
    assert md_escape("grad_cam*|x") == r"grad\_cam\*\|x"


def test_golden_two_by_two_lower_is_better_bolds_the_minimum(tmp_path):
    run = RunData(make_tiny_run(tmp_path, KL, DIFFERENCES))
    # raw p: grad_cam 2/256, cam 6/64; Holm over the 2 tests: 2·2/256 = 0.0156 (*, not **)
    # and max(0.0156, 6/64) = 0.094 (no mark)
    table = method_table(
        run, ["kl"], name="tiny_kl", title="Tiny_table: kl & 50% of friends", accuracy=False
    )
    assert table.p.to_numpy().tolist()[0][1] == 2 * 2 / 256
    assert table.p.to_numpy().tolist()[1][1] == 6 / 64
    assert render_latex(table) == GOLDEN


def test_golden_higher_is_better_bolds_the_maximum_and_markdown(tmp_path):
    cosine = {
        ("grad_cam", "baseline"): 0.5,
        ("grad_cam", "guided"): 0.7,
        ("cam", "baseline"): 0.6,
        ("cam", "guided"): 0.65,
    }
    run = RunData(make_tiny_run(tmp_path, KL, cosine=cosine))
    table = method_table(run, ["cosine"], accuracy=False)
    body = render_latex(table).splitlines()
    assert r" & \multicolumn{2}{c}{cosine $\uparrow$} \\" in body
    assert r"grad\_cam & 0.500 & \textbf{0.700} \\" in body
    assert r"cam & \textbf{0.600} & 0.650 \\" in body
    assert render_markdown(table) == (
        "**Accuracy and alignment with the AU heatmaps, without and with AU guidance.**\n\n"
        "| Method | cosine ↑ w/o AU | cosine ↑ w/ AU |\n"
        "|:--|:-:|:-:|\n"
        "| grad\\_cam | 0.500 | **0.700** |\n"
        "| cam | **0.600** | 0.650 |\n\n"
        "Bold: best per column (controls excluded).\n"
    )
    # accuracy: the same classifier number on both rows ties, so nothing is bold there
    main = render_latex(method_table(run, ["cosine"])).splitlines()
    assert r"grad\_cam & 80.00 & 85.50 & 0.500 & \textbf{0.700} \\" in main


def test_spread_ci_dagger_and_control_rows_render(tmp_path):
    run = make_tiny_run(tmp_path, KL)
    results = read_results(run)
    second = results.assign(seed=1, value=results["value"] + 0.02)
    # a control with one seed only: no ± for it
    control = results[results["method"] == "cam"].assign(method="control:centre", value=0.35)
    both = pd.concat([results, second, control], ignore_index=True)
    write_results(run, both.assign(ci_low=both["value"] - 0.1, ci_high=both["value"] + 0.1))
    table = method_table(RunData(run), ["kl"], accuracy=False)
    lines = render_latex(table, ci=True).splitlines()
    # grad_cam w/o AU: seeds 0.50 and 0.52 → 0.51 ± 0.0141; CI means [0.41, 0.61]; the control
    # (0.35, lower is better) beats it → †
    assert lines[10] == (
        r"grad\_cam & 0.51 $\pm$ 0.01 {\scriptsize [0.41, 0.61]}$^{\dagger}$ & "
        r"\textbf{0.31} $\pm$ 0.01 {\scriptsize [0.21, 0.41]}$^{\dagger}$ \\"
    )
    assert lines[12:14] == [
        r"\midrule",
        r"control:centre & 0.35 {\scriptsize [0.25, 0.45]} & 0.35 {\scriptsize [0.25, 0.45]} \\",
    ]
    notes = lines[-2]
    assert r"$\pm$ standard deviation over 2 seeds." in notes
    assert "[low, high]: bootstrap 95\\% CI" in notes
    assert r"$^{\dagger}$ cannot tell this method from a control" in notes
    assert "[" not in render_latex(table).splitlines()[10]  # no CI unless asked


def test_several_models_get_a_model_column_blocks_and_bold_per_block(tmp_path):
    run = make_tiny_run(tmp_path, KL)
    results = read_results(run)
    other = results.assign(model="vit_s", value=results["value"] * 2)
    write_results(run, pd.concat([results, other], ignore_index=True))
    table = method_table(RunData(run), ["kl"])
    assert table.row_names == ["Model", "Method"]
    lines = render_latex(table).splitlines()
    assert lines[4] == r"\begin{tabular}{llcccc}"
    assert lines[7] == r"\cmidrule(lr){3-4} \cmidrule(lr){5-6}"
    assert lines[8] == r"Model & Method & w/o AU & w/ AU & w/o AU & w/ AU \\"
    # accuracy ties within each model: bold only in the kl columns, once per model block
    assert lines[10:15] == [
        r"resnet\_18 & grad\_cam & 80.00 & 85.50 & 0.50 & \textbf{0.30} \\",
        r" & cam & 80.00 & 85.50 & \textbf{0.40} & 0.45 \\",
        r"\midrule",
        r"vit\_s & grad\_cam & 160.00 & 171.00 & 1.00 & \textbf{0.60} \\",
        r" & cam & 160.00 & 171.00 & \textbf{0.80} & 0.90 \\",
    ]
    assert "Bold: best per column within each block" in lines[-2]
