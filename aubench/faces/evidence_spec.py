"""Where a heatmap's AUs come from: the ``evidence`` setting of training and evaluation.

A setting (``TrainConfig.evidence``, a suite's ``evidence``, ``--evidence``) is one of

- ``codebook``: the label's prototype AUs, every one at full weight (aubench's default, the
  paper's maps);
- ``facs``: the AUs the dataset coded for each image (the synthetic faces: the AUs the renderer
  drew, the exact truth; CK+: its FACS files; readers in :mod:`aubench.data.au_evidence`);
- ``detector:PATH``: an AU detector's per-image output (OpenFace, py-feat or LibreFace, a CSV
  or Parquet file or a folder of per-image CSVs);
- ``hybrid`` / ``hybrid:PATH``: the codebook's AUs of the label, each weighted by its intensity
  in the dataset's coding (``hybrid``) or in a detector's output (``hybrid:PATH``); an AU the
  source does not measure keeps weight 1 (:func:`aubench.faces.evidence.hybrid_evidence`).

This module only parses the setting (no torch: the configuration and the command line read it);
whether PATH exists is checked when the evidence is read.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

CODEBOOK, FACS, DETECTOR, HYBRID = "codebook", "facs", "detector", "hybrid"
#: The kinds of evidence, in the order the module doc lists them.
EVIDENCE_KINDS: tuple[str, ...] = (CODEBOOK, FACS, DETECTOR, HYBRID)
_USAGE = "codebook, facs, detector:PATH, hybrid or hybrid:PATH"


class EvidenceSpec(NamedTuple):
    """A parsed ``evidence`` setting: its ``kind`` (:data:`EVIDENCE_KINDS`) and ``path`` (a
    detector's output; None for the dataset's own coding or the codebook)."""

    kind: str
    path: str | None = None

    @property
    def per_image(self) -> bool:
        """Whether the maps need each image's evidence (every kind but ``codebook``)."""
        return self.kind != CODEBOOK

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_evidence(spec: str) -> EvidenceSpec:
    """``spec`` (module doc) as an :class:`EvidenceSpec`; ``ValueError`` naming the value and
    the accepted forms (with a near match) otherwise."""
    if not isinstance(spec, str):
        raise ValueError(f"evidence must be one of {_USAGE}, got {spec!r}")
    kind, colon, path = spec.strip().partition(":")
    kind, path = kind.strip().lower(), path.strip()
    if kind not in EVIDENCE_KINDS:
        close = difflib.get_close_matches(kind, EVIDENCE_KINDS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown evidence {spec!r}{hint} (choose from {_USAGE})")
    if kind == DETECTOR and not path:
        raise ValueError(
            f"evidence {spec!r}: give the detector's output, detector:PATH (an OpenFace, py-feat "
            "or LibreFace CSV/Parquet file, or a folder of per-image CSVs)"
        )
    if kind in (CODEBOOK, FACS) and colon:
        raise ValueError(f"evidence {spec!r}: {kind} takes no path (choose from {_USAGE})")
    return EvidenceSpec(kind, path or None)


def check_evidence(spec: str) -> str:
    """``spec`` in its canonical form (``detector:PATH``, the kind in lower case), or
    ``ValueError`` (:func:`parse_evidence`); for validators."""
    return str(parse_evidence(spec))
