"""Reports of run folders (LaTeX tables, figures, a Markdown summary).

``write_report(run, out=None, metrics=None, ci=False)`` (:mod:`aubench.report.build`) and
``control_flags(table, metrics)`` (:mod:`aubench.report.runs`) are imported on first use, so
importing one light module of ``aubench.report`` does not load them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["control_flags", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from aubench.report.build import write_report

        return write_report
    if name == "control_flags":
        from aubench.report.runs import control_flags

        return control_flags
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
