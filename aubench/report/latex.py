"""LaTeX (booktabs) rendering of :class:`aubench.report.tables.Table`.

A rendered table is one ``table`` float: caption, label ``tab:aubench-<name>``, a ``tabular``
with ``\\toprule``/``\\midrule``/``\\bottomrule`` and ``\\cmidrule`` under grouped headers,
bold best values, ↑/↓ arrows, ``± spread`` (seeds), optional ``[low, high]`` CIs, significance
marks ``*``/``**`` and the control flag ``†`` as superscripts, and the footnotes below. It
needs only ``\\usepackage{booktabs}`` (:data:`PACKAGES`) and compiles with pdflatex.
"""

from __future__ import annotations

from aubench.report.tables import CellText, Table

#: What a document needs in its preamble to \\input the tables.
PACKAGES = ("booktabs",)
#: Characters with a LaTeX meaning, and the Unicode the tables use, as text-mode LaTeX.
_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "λ": r"$\lambda$",
    "±": r"$\pm$",
    "†": r"$^{\dagger}$",
    "‡": r"$^{\ddagger}$",
    "–": "--",
}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``grad_cam`` → ``grad\\_cam``) and the
    tables' Unicode symbols (↑ ↓ λ ± † ‡ –) written as LaTeX."""
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def render_latex(table: Table, ci: bool = False) -> str:
    """The ``table`` float of ``table`` (``ci``: show the CI bounds), ending in a newline."""
    stub = len(table.row_names)
    columns = table.columns
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{escape(table.title)}}}",
        rf"\label{{tab:aubench-{table.name.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{'l' * stub}{'c' * len(columns)}}}",
        r"\toprule",
    ]
    spans = _spans([group for group, _ in columns])
    top = [""] * stub + [
        rf"\multicolumn{{{width}}}{{c}}{{{escape(group)}}}" for group, width in spans
    ]
    lines.append(" & ".join(top) + r" \\")
    rules, start = [], stub + 1
    for _, width in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines.append(" ".join(rules))
    sub = [escape(name) for name in table.row_names] + [escape(s) for _, s in columns]
    lines.append(" & ".join(sub) + r" \\")
    lines.append(r"\midrule")
    texts = table.texts(ci)
    for i, (labels, cells) in enumerate(zip(table.row_labels(), texts, strict=True)):
        if table.rule_before(i):
            lines.append(r"\midrule")
        lines.append(" & ".join([escape(x) for x in labels] + [_cell(c) for c in cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = table.notes(ci)
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize " + " ".join(map(escape, notes)) + r"\par}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _spans(groups: list[str]) -> list[tuple[str, int]]:
    """Runs of equal consecutive header groups: (group, width)."""
    spans: list[tuple[str, int]] = []
    for group in groups:
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1] + 1)
        else:
            spans.append((group, 1))
    return spans


def _cell(cell: CellText) -> str:
    if not cell.value:
        return "--"
    text = _number(cell.value)
    if cell.bold:
        text = rf"\textbf{{{text}}}"
    if cell.spread:
        text += rf" $\pm$ {_number(cell.spread)}"
    if cell.ci:
        text += rf" {{\scriptsize [{_number(cell.ci[0])}, {_number(cell.ci[1])}]}}"
    marks = cell.stars + (r"\dagger" if cell.dagger else "")
    return text + (f"$^{{{marks}}}$" if marks else "")


def _number(text: str) -> str:
    """A formatted number with a typeset minus sign."""
    return text.replace("-", "$-$")
