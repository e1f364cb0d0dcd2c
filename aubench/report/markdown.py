"""Markdown rendering of :class:`aubench.report.tables.Table` (GitHub pipe tables) and of the
report's summary page ``report.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aubench.report.runs import CODEBOOK, RunData
from aubench.report.tables import DEFAULT_PROTOCOL, CellText, Table, TextTable, run_protocol

_ESCAPES = {c: "\\" + c for c in "\\`*_|[]<>"}


def escape(text: str) -> str:
    """``text`` with Markdown's emphasis, code, table and link characters escaped."""
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def render_markdown(table: Table | TextTable, ci: bool = False) -> str:
    """``table`` as a pipe table (one header row: group and sub-header joined) followed by its
    notes, ending in a newline."""
    if isinstance(table, TextTable):
        return _render_text(table)
    header = [escape(n) for n in table.row_names]
    header += [escape(f"{group} {sub}".strip()) for group, sub in table.columns]
    lines = [
        f"**{escape(table.title)}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":--"] * len(table.row_names) + [":-:"] * len(table.columns)) + "|",
    ]
    rows = zip(table.rows, table.row_labels(), table.texts(ci), strict=True)
    for row, labels, cells in rows:
        shown = [escape(label) for label in labels]
        if row in table.controls:
            shown = [f"*{label}*" if label else "" for label in shown]
        lines.append("| " + " | ".join(shown + [_cell(c) for c in cells]) + " |")
    notes = table.notes(ci)
    if notes:
        lines += ["", *(escape(note) + "  " for note in notes)]
    return "\n".join(lines).rstrip() + "\n"


def render_report(
    run: RunData,
    tables: Sequence[Table],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str],
    ci: bool = False,
) -> str:
    """The summary page: run facts, variants, every table, the figures (PNG inline, PDF linked)
    and the report's notes. Figure paths are relative to the page."""
    manifest = run.manifest
    facts = [
        ("suite", ", ".join(dict.fromkeys(run.results["suite"].astype(str)))),
        ("split", run.split),
        ("seeds", ", ".join(map(str, run.seeds))),
        ("models", ", ".join(run.models)),
        ("git commit", str(manifest.get("git_commit") or manifest.get("commit") or "")),
        ("evaluation protocol", "" if run_protocol(run) == DEFAULT_PROTOCOL else run_protocol(run)),
        ("per-image AU evidence", "" if run.evidence == CODEBOOK else run.evidence),
    ]
    lines = [f"# aubench report: {escape(run.path.name)}", ""]
    lines += [f"- {name}: {escape(value)}" for name, value in facts if value]
    # which AUs the guided variants' heatmaps were drawn from, when one was not the codebook
    aligned = any(v.guided and v.evidence != CODEBOOK for v in run.variants.values())
    lines += [
        "",
        "| variant | guided | λ | aligned layers | loss |" + (" aligned with |" if aligned else ""),
        "|:--|:-:|:-:|:--|:--|" + (":--|" if aligned else ""),
    ]
    for variant in run.variants.values():
        layers = ", ".join(variant.layers) or "–"
        line = (
            f"| {escape(variant.name)} | {'yes' if variant.guided else 'no'} | {variant.lam:g} "
            f"| {escape(layers)} | {escape(variant.loss) or '–'} |"
        )
        if aligned:
            line += f" {escape(variant.evidence) if variant.guided else '–'} |"
        lines.append(line)
    if run.trained:  # how each model was trained; its guided variants align its own layers
        lines += ["", "| model | method | backbone | own map at | aligned layers (guided) |"]
        lines.append("|:--|:--|:--|:--|:--|")
        for trained in run.trained.values():
            own = f"{trained.explainer} at {trained.layer}"
            own += " (class-agnostic)" if trained.class_agnostic else ""
            cells = [trained.label, trained.method, trained.model, own, ", ".join(trained.aligned)]
            lines.append("| " + " | ".join(escape(cell) for cell in cells) + " |")
    lines.append("")
    for table in tables:
        lines += [f"## {escape(table.name)}", "", render_markdown(table, ci)]
        lines.append(f"LaTeX: [tables/{table.name}.tex](tables/{table.name}.tex)")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for caption, png in figures:
            pdf = png.with_suffix(".pdf").as_posix()
            lines += [f"![{escape(caption)}]({png.as_posix()})", "", f"[PDF]({pdf})", ""]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines).rstrip() + "\n"


def _render_text(table: TextTable) -> str:
    """A :class:`TextTable` as a pipe table (emphasised spans in bold) and its notes."""
    alignment = {"c": ":-:", "r": "--:"}  # else (l, p{…}) left
    lines = [
        f"**{escape(table.title)}**",
        "",
        "| " + " | ".join(escape(name) for name in table.header) + " |",
        "|" + "|".join(alignment.get(a, ":--") for a in table.align) + "|",
    ]
    for row in table.rows:
        cells = [
            "".join(f"**{escape(text)}**" if bold else escape(text) for text, bold in cell)
            for cell in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if table.notes:
        lines += ["", *(escape(note) + "  " for note in table.notes)]
    return "\n".join(lines).rstrip() + "\n"


def _cell(cell: CellText) -> str:
    if not cell.value:
        return "–"
    text = f"**{cell.value}**" if cell.bold else cell.value
    if cell.spread:
        text += f" ± {cell.spread}"
    if cell.ci:
        text += f" \\[{cell.ci[0]}, {cell.ci[1]}\\]"
    return text + escape(cell.stars) + ("†" if cell.dagger else "")
