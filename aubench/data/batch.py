"""Batches: collate Sample dicts, then add AU heatmaps computed from the (transformed) landmarks.

Heatmaps are never stored or transformed alongside the image: they are rebuilt from each batch's
landmarks and labels after the geometric augmentations, so map and image always agree (DESIGN.md).
Build them on the device the model runs on: ``add_heatmaps(to_device(batch), ...)``.
:func:`add_heatmaps` is the one way to give a batch its maps, validity flags and invalid reasons
(the trainer and the suite evaluation use it, and so does :class:`HeatmapCollate`).

Per-image AU evidence (``evidence`` other than ``codebook``, :mod:`aubench.faces.evidence_spec`):
the batch also holds each sample's evidence vector (:data:`~aubench.data.au_evidence.EVIDENCE_KEY`,
given by :class:`~aubench.data.au_evidence.EvidenceFaces`), and the evidence maps
(:func:`~aubench.faces.evidence.evidence_heatmaps`) are drawn from the same transformed landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate

from aubench.data.au_evidence import EVIDENCE_KEY
from aubench.faces.codebook import Codebook
from aubench.faces.evidence import (
    FACS_AUS,
    AUEvidence,
    EvidenceHeatmaps,
    evidence_heatmaps,
    hybrid_evidence,
)
from aubench.faces.evidence_spec import HYBRID, parse_evidence
from aubench.faces.heatmaps import au_heatmaps, invalid_reasons
from aubench.faces.region_registry import get_region_model

#: The keys :func:`add_heatmaps` adds for per-image evidence: its maps, validity and reasons.
EVIDENCE_MAPS = ("evidence_heatmap", "evidence_valid", "evidence_reason")


def add_heatmaps(
    batch: dict,
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
    evidence: str = "codebook",
) -> dict:
    """Add ``heatmap`` (B, H, W) in [0, 1], ``valid`` (B,) bool and ``invalid_reason`` (B,) codes.

    ``batch`` holds ``image`` (B, 3, H, W), ``landmarks`` (B, 68, 2) in that image's pixels and
    ``label`` (B,); the maps have the image's size and live on the landmarks' device. With
    per-image ``evidence`` (not ``codebook``) the batch also holds its
    :data:`~aubench.data.au_evidence.EVIDENCE_KEY` (B, 99), and the evidence's maps are added
    beside the codebook's as :data:`EVIDENCE_MAPS` (:func:`evidence_maps`).
    """
    missing = {"image", "landmarks", "label"} - batch.keys()
    if missing:
        raise KeyError(f"a batch needs {sorted(missing)} to build AU heatmaps")
    size = tuple(batch["image"].shape[-2:])
    maps, valid = au_heatmaps(batch["landmarks"], batch["label"], size, codebook, regions)
    reasons = invalid_reasons(batch["landmarks"], batch["label"], valid, codebook, regions)
    out = {**batch, "heatmap": maps, "valid": valid, "invalid_reason": reasons}
    if parse_evidence(evidence).per_image:
        drawn = evidence_maps(batch, codebook, regions, evidence)
        out |= dict(zip(EVIDENCE_MAPS, drawn, strict=True))
    return out


def add_target_heatmaps(
    batch: dict,
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
    evidence: str = "codebook",
) -> dict:
    """Add the heatmaps a guided model aligns with as ``heatmap``, ``valid`` and
    ``invalid_reason``: the codebook's (:func:`add_heatmaps`), or with per-image ``evidence``
    the evidence's (:func:`evidence_maps`, with :class:`~aubench.faces.heatmaps.InvalidReason`
    codes), so a batch transform (CutMix) mixes them like codebook maps."""
    if not parse_evidence(evidence).per_image:
        return add_heatmaps(batch, codebook, regions)
    maps, valid, reasons = evidence_maps(batch, codebook, regions, evidence)
    return {**batch, "heatmap": maps, "valid": valid, "invalid_reason": reasons}


def evidence_maps(
    batch: dict,
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
    evidence: str = "facs",
) -> EvidenceHeatmaps:
    """The AU heatmaps of a batch's per-image evidence: its
    :data:`~aubench.data.au_evidence.EVIDENCE_KEY` (B, 99) as
    :class:`~aubench.faces.evidence.AUEvidence` over every FACS AU, for ``hybrid`` weighting the
    codebook's AUs of each label (:func:`~aubench.faces.evidence.hybrid_evidence`; ``codebook``
    None: the region model's), drawn from the batch's landmarks by
    :func:`~aubench.faces.evidence.evidence_heatmaps`."""
    if EVIDENCE_KEY not in batch:
        raise KeyError(
            f"evidence {evidence!r} needs each sample's {EVIDENCE_KEY!r}: open the split with "
            "aubench.data.au_evidence.EvidenceFaces"
        )
    values = batch[EVIDENCE_KEY].to(batch["landmarks"].device)
    found = AUEvidence(FACS_AUS, values)
    if parse_evidence(evidence).kind == HYBRID:
        book = codebook or get_region_model(regions).default_codebook
        found = hybrid_evidence(found, batch["label"], book)
    return evidence_heatmaps(batch["landmarks"], found, tuple(batch["image"].shape[-2:]), regions)


class HeatmapCollate:
    """A DataLoader ``collate_fn``: ``default_collate`` then :func:`add_heatmaps` (on the CPU)."""

    def __init__(
        self,
        codebook: str | Codebook | dict | None = None,
        regions: str = "default",
        evidence: str = "codebook",
    ):
        self.codebook = codebook
        self.regions = regions
        self.evidence = evidence

    def __call__(self, samples: Sequence[dict]) -> dict:
        batch = default_collate(list(samples))
        batch["label"] = torch.as_tensor(batch["label"])
        return add_heatmaps(batch, self.codebook, self.regions, self.evidence)
