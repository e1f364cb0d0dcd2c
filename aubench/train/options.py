"""The training options that are checked without torch: alignment-loss names and the weight λ
(shared by the config, which the command line builds, and the losses)."""

from __future__ import annotations

import difflib

ALIGN_LOSSES = ("cosine", "std-cosine", "l1", "l2")


def check_loss_name(kind: str) -> str:
    """``kind`` if it names an alignment loss, else ``ValueError`` with near matches."""
    if kind in ALIGN_LOSSES:
        return kind
    close = difflib.get_close_matches(str(kind), ALIGN_LOSSES, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    choices = ", ".join(ALIGN_LOSSES)
    raise ValueError(f"unknown alignment loss {kind!r}{hint} (choose from {choices})")


def check_lambda(lam: float) -> float:
    """Return ``lam`` as a float if it is a finite number ≥ 0, else raise ``ValueError``."""
    value = float(lam)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"the alignment weight λ must be a finite number ≥ 0, got {lam!r}")
    return value
