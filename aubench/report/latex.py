"""LaTeX (booktabs) rendering of :class:`aubench.report.tables.Table`.

A rendered table is one ``table`` float: caption, label ``tab:aubench-<name>``, a ``tabular``
with ``\\toprule``/``\\midrule``/``\\bottomrule`` and ``\\cmidrule`` under grouped headers,
bold best values, ↑/↓ arrows, ``± spread`` (seeds), optional ``[low, high]`` CIs, significance
marks ``*``/``**`` and the control flag ``†`` as superscripts, and the footnotes below. It
needs only ``\\usepackage{booktabs}`` (:data:`PACKAGES`) and compiles with pdflatex.
"""

from __future__ import annotations

from collections.abc import Sequence

from aubench.report.tables import CellText, Table, TextTable

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
    "∩": r"$\cap$",
    "∪": r"$\cup$",
    "\u00a0": "~",
}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``grad_cam`` → ``grad\\_cam``) and the
    tables' Unicode symbols (↑ ↓ λ ± † ‡ – ∩ ∪, the no-break space) written as LaTeX."""
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def render_latex(table: Table | TextTable, ci: bool = False) -> str:
    """The ``table`` float of ``table`` (``ci``: show the CI bounds), ending in a newline."""
    if isinstance(table, TextTable):
        return _render_text(table)
    stub = len(table.row_names)
    columns = table.columns
    lines = _opening(table.name, table.title, "l" * stub + "c" * len(columns))
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
    return _closing(lines, table.notes(ci))


def _opening(name: str, title: str, align: str, small: bool = False) -> list[str]:
    """A table float's lines up to its top rule: caption, label, tabular of ``align``
    (``small``: the tabular and notes in ``\\small`` type)."""
    return [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{escape(title)}}}",
        rf"\label{{tab:aubench-{name.replace('_', '-')}}}",
        *([r"\small"] if small else []),
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
    ]


def _closing(lines: list[str], notes: Sequence[str]) -> str:
    """``lines`` closed: bottom rule, the footnotes ``notes``, end of the float, a newline."""
    lines = [*lines, r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize " + " ".join(map(escape, notes)) + r"\par}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _render_text(table: TextTable) -> str:
    """The ``table`` float of a :class:`TextTable` in ``\\small`` type (its wrapped columns fit
    a page): one header row, emphasised spans in bold, wrapped (``p{…}``) columns ragged right
    (rows end in ``\\tabularnewline``, which ``\\raggedright`` leaves alone)."""
    lines = _opening(table.name, table.title, "".join(table.align), small=True)
    ragged = [r"\raggedright " if a.startswith("p") else "" for a in table.align]
    lines += [" & ".join(escape(name) for name in table.header) + r" \tabularnewline", r"\midrule"]
    for i, row in enumerate(table.rows):
        if i in table.rules:
            lines.append(r"\midrule")
        cells = [
            start
            + "".join(
                rf"\textbf{{{escape(text)}}}" if bold else escape(text) for text, bold in cell
            )
            for start, cell in zip(ragged, row, strict=True)
        ]
        lines.append(" & ".join(cells) + r" \tabularnewline")
    return _closing(lines, table.notes)


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
