"""Per-image AU evidence and its heatmaps: which AUs a face shows, and how strongly.

The codebook says which AUs an expression *should* show; evidence says which AUs *this* image
shows: a dataset's FACS coding (CK+, DISFA, BP4D), an AU detector's output (OpenFace, py-feat,
LibreFace; readers in :mod:`aubench.data.au_evidence`), or the codebook's AUs weighted by a
detector (:func:`hybrid_evidence`).

:class:`AUEvidence` holds it as ``intensities`` (B, A) over a fixed tuple of FACS AU numbers
``aus``, normalised to [0, 1] (a 0–5 FACS intensity is divided by 5; presence-only sources give
1 for present, 0 for absent); NaN means "not coded / unknown" and counts as absent. An AU is
*present* in an image when its intensity is > 0.

The evidence heatmap (:func:`evidence_heatmaps`) is

    A = minmax( max_{k present} w_k · R_k )

with R_k AU k's region from the region model and w_k its intensity: at w = 1 on a label's codebook
AUs it is exactly the codebook heatmap of :func:`aubench.faces.heatmaps.au_heatmaps` (the region
model's :meth:`~aubench.faces.region_model.RegionModel.weighted_maps` draws it, batched). AUs that
aubench has no region for (e.g. AU45 blink, AU11) cannot be drawn: :meth:`AUEvidence.unregioned`
counts them per AU, and an image whose present AUs all lack a region is invalid
(:attr:`EvidenceReason.NO_REGION_AUS`), as is one with no present AU at all
(:attr:`EvidenceReason.NO_PRESENT_AUS`); nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np
import torch

from aubench.faces.codebook import ALL_AUS, EXPRESSIONS, Codebook, get_codebook
from aubench.faces.heatmaps import InvalidReason, _prepare, count_reasons
from aubench.faces.landmarks import as_landmarks
from aubench.faces.region_model import RegionModel
from aubench.faces.region_registry import get_region_model

#: FACS codes are one- or two-digit numbers; anything else in an AU column is an unknown AU.
FACS_AU_RANGE = range(1, 100)
#: Every FACS AU number, 1–99, in order: a per-sample evidence vector
#: (:data:`aubench.data.au_evidence.EVIDENCE_KEY`) holds AU k in column k − 1.
FACS_AUS: tuple[int, ...] = tuple(FACS_AU_RANGE)
#: The top of the FACS intensity scale (A–E = 1–5), which normalised intensities divide by.
FACS_MAX_INTENSITY = 5.0


class EvidenceReason(IntEnum):
    """Why an evidence heatmap is invalid (0 = valid): the members of
    :class:`aubench.faces.heatmaps.InvalidReason` an evidence map can have, with their codes
    (so one code has one name everywhere); ``no_aus`` (a neutral label) does not occur, the
    evidence replaces the label."""

    VALID = int(InvalidReason.VALID)
    NO_LANDMARKS = int(InvalidReason.NO_LANDMARKS)  # a landmark is non-finite
    OUTSIDE = int(InvalidReason.OUTSIDE)  # no region of a present AU lies inside the image
    NO_PRESENT_AUS = int(InvalidReason.NO_PRESENT_AUS)  # no AU shown (all absent, or not coded)
    NO_REGION_AUS = int(InvalidReason.NO_REGION_AUS)  # AUs present, none with a region


@dataclass(frozen=True)
class AUEvidence:
    """Per-image AU intensities in [0, 1] (module doc).

    Attributes:
        aus: (A,) distinct FACS AU numbers (1–99) naming the columns; any AU, drawable or not.
        intensities: (B, A) float, in [0, 1] or NaN (not coded / unknown, counted as absent).
    """

    aus: tuple[int, ...]
    intensities: torch.Tensor

    def __post_init__(self) -> None:
        values = self.intensities
        if values.ndim != 2 or values.shape[1] != len(self.aus) or not values.is_floating_point():
            raise ValueError(
                f"intensities must be a float (B, {len(self.aus)}) tensor over aus={self.aus}, "
                f"got {values.dtype} {tuple(values.shape)}"
            )
        bad = [au for au in self.aus if not isinstance(au, int | np.integer)]
        bad += [au for au in self.aus if au not in FACS_AU_RANGE]
        if bad or len(set(self.aus)) != len(self.aus):
            raise ValueError(f"aus must be distinct FACS AU numbers 1–99, got {self.aus}")
        outside = ~torch.isnan(values) & ((values < 0) | (values > 1))
        if outside.any():
            row, col = (int(i) for i in outside.nonzero()[0])
            raise ValueError(
                f"AU intensities must be normalised to [0, 1] (NaN = not coded): image {row}, "
                f"AU{self.aus[col]} is {float(values[row, col])} (divide 0–5 FACS intensities "
                f"by {FACS_MAX_INTENSITY:g}: AUEvidence.from_scores)"
            )

    @classmethod
    def from_scores(
        cls,
        scores: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
        aus: Sequence[int],
        scale: float = FACS_MAX_INTENSITY,
    ) -> AUEvidence:
        """Evidence from raw scores (B, A) on ``[0, scale]``: ``intensity = score / scale``
        (FACS 0–5 by default; ``scale=1`` for presence or probabilities). NaN stays NaN."""
        return cls(tuple(int(au) for au in aus), torch.as_tensor(scores).double() / scale)

    def __len__(self) -> int:
        return self.intensities.shape[0]

    def present(self) -> torch.Tensor:
        """(B, A) bool: intensity > 0 (NaN is not present)."""
        return self.intensities > 0

    def weights(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """(B, len(ALL_AUS)) the intensities on the drawable AUs of
        :data:`~aubench.faces.codebook.ALL_AUS`: 0 where absent, not coded (NaN) or not in
        ``aus``; the unregioned AUs are left out (:meth:`unregioned` counts them)."""
        values = self.intensities.to(device, dtype or self.intensities.dtype)
        out = values.new_zeros(len(self), len(ALL_AUS))
        pairs = [(ALL_AUS.index(au), j) for j, au in enumerate(self.aus) if au in ALL_AUS]
        if pairs:
            columns, sources = (list(c) for c in zip(*pairs, strict=True))
            out[:, columns] = values[:, sources].nan_to_num(nan=0.0)
        return out

    def unregioned(self) -> dict[int, int]:
        """AU number → how many images show it present, for the AUs aubench has no region for
        (they cannot be drawn; report them)."""
        present = self.present().sum(dim=0).tolist()
        return {au: n for au, n in zip(self.aus, present, strict=True) if au not in ALL_AUS and n}


def codebook_evidence(
    labels: torch.Tensor | np.ndarray | Sequence[int], codebook: str | Codebook | dict
) -> AUEvidence:
    """The codebook's prototype as evidence: intensity 1 for each AU of the label's set, 0 for
    the codebook's other AUs (over ``codebook.aus``). Its evidence heatmap is the codebook map."""
    book = get_codebook(codebook)
    label_ids = torch.as_tensor(labels).long().reshape(-1)
    columns = [ALL_AUS.index(au) for au in book.aus]
    return AUEvidence(book.aus, book.matrix(label_ids.device)[label_ids][:, columns].double())


def hybrid_evidence(
    evidence: AUEvidence,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    codebook: str | Codebook | dict,
) -> AUEvidence:
    """The codebook's AUs for each label, weighted by the evidence (``hybrid``).

    Over ``codebook.aus``: w = detected intensity for the label's AUs, 0 for the others. A label
    AU the evidence does not measure (no column, or NaN in that image) keeps the codebook's
    weight 1, so a detector that lacks an AU (OpenFace has no AU27) does not erase it.
    """
    prior = codebook_evidence(labels, codebook)
    if len(prior) != len(evidence):
        raise ValueError(f"{len(prior)} labels for {len(evidence)} images of evidence")
    column = {au: j for j, au in enumerate(evidence.aus)}
    detected = torch.full_like(prior.intensities, float("nan"))
    shared = [(k, column[au]) for k, au in enumerate(prior.aus) if au in column]
    if shared:
        targets, sources = (list(c) for c in zip(*shared, strict=True))
        detected[:, targets] = evidence.intensities[:, sources].to(detected)
    weighted = prior.intensities * detected.nan_to_num(nan=1.0)
    return AUEvidence(prior.aus, weighted)


class EvidenceHeatmaps(NamedTuple):
    """``heatmaps`` (B, H, W) in [0, 1] (zeros where invalid), ``valid`` (B,) bool and
    ``reasons`` (B,) :class:`EvidenceReason` codes."""

    heatmaps: torch.Tensor
    valid: torch.Tensor
    reasons: torch.Tensor


def evidence_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    evidence: AUEvidence,
    size: int | tuple[int, int],
    regions: str | RegionModel = "default",
) -> EvidenceHeatmaps:
    """AU heatmaps from per-image evidence: ``minmax(max_{k present} w_k · R_k)`` (module doc).

    Args:
        landmarks: (B, 68, 2) (x, y) pixels in the frame of an image of ``size``; non-finite rows
            mark failed detections.
        evidence: B images' AU intensities (:class:`AUEvidence`).
        size: (H, W) of the image, or one int for a square.
        regions: a region model with AUs (``default``, ``generic``, ``belharbi2024``, …).

    Returns:
        :class:`EvidenceHeatmaps` on the landmarks' device, float64 for float64 landmarks and
        float32 otherwise. Reasons, in precedence order: no present AU > present AUs but none
        with a region > non-finite landmarks > no present region inside the image.
    """
    model = get_region_model(regions)
    if model.default_codebook is None:
        raise ValueError(f"regions={model.name!r} has no AUs; evidence heatmaps need an AU model")
    points = as_landmarks(landmarks)
    if len(evidence) != points.shape[0]:
        raise ValueError(
            f"evidence has {len(evidence)} images for landmarks of {points.shape[0]} faces"
        )
    labels = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    faces, _ = _prepare(points, labels, size, None, model)  # validation; the label is unused
    weights = evidence.weights(points.device, faces.points.dtype)
    drawable = weights > 0
    maps, valid = model.weighted_maps(
        faces._replace(au_mask=drawable & faces.finite[:, None]), weights
    )
    reasons = torch.where(valid, int(EvidenceReason.VALID), int(EvidenceReason.OUTSIDE))
    reasons = torch.where(faces.finite, reasons, int(EvidenceReason.NO_LANDMARKS))
    reasons = torch.where(drawable.any(dim=1), reasons, int(EvidenceReason.NO_REGION_AUS))
    shown = evidence.present().any(dim=1).to(points.device)
    reasons = torch.where(shown, reasons, int(EvidenceReason.NO_PRESENT_AUS))
    return EvidenceHeatmaps(maps, valid, reasons)


#: Counts of invalid images by reason name (valid images are not counted): an evidence map's
#: reasons have :class:`~aubench.faces.heatmaps.InvalidReason`'s codes and names.
count_evidence_reasons = count_reasons


def prototype_agreement(
    evidence: AUEvidence,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    codebook: str | Codebook | dict,
) -> dict[str, dict]:
    """How the AUs each image shows agree with its label's prototype, per class.

    With S_i the AUs present in image i (intensity > 0; AUs without a region included) and P_i
    the prototype of its label in ``codebook``, per class c of the images (by
    :data:`~aubench.faces.codebook.EXPRESSIONS` name, classes without an image left out):

    - ``n``: its images; ``prototype``: P_c (AU numbers);
    - ``exact``: how many have S_i = P_c;
    - ``jaccard``: the mean of |S_i ∩ P_c| / |S_i ∪ P_c| (1 when both are empty);
    - ``au_frequency``: AU number (as a string) → the share of its images showing it, for every
      AU shown by one of them or in P_c (which AUs the class really uses).

    JSON-ready; computed in one batched pass.
    """
    book = get_codebook(codebook)
    label_ids = torch.as_tensor(labels).long().reshape(-1).cpu()
    if len(label_ids) != len(evidence):
        raise ValueError(f"{len(label_ids)} labels for {len(evidence)} images of evidence")
    aus = sorted(set(evidence.aus) | set(book.aus))
    present = torch.zeros(len(evidence), len(aus), dtype=torch.bool)
    present[:, [aus.index(au) for au in evidence.aus]] = evidence.present().cpu()
    table = book.matrix(torch.device("cpu"))  # (classes, len(ALL_AUS)) bool
    drawn = [(aus.index(au), ALL_AUS.index(au)) for au in book.aus]
    prototype = torch.zeros(len(table), len(aus), dtype=torch.bool)
    prototype[:, [k for k, _ in drawn]] = table[:, [j for _, j in drawn]]
    expected = prototype[label_ids]
    union = (present | expected).sum(1).double()
    overlap = (present & expected).sum(1).double()
    jaccard = torch.where(union > 0, overlap / union.clamp_min(1), 1.0)  # float64: 2/3 exactly
    classes = len(table)
    n = torch.bincount(label_ids, minlength=classes)
    exact = torch.bincount(label_ids, (present == expected).all(1).double(), minlength=classes)
    jaccard_sum = torch.bincount(label_ids, jaccard.double(), minlength=classes)
    shown = torch.zeros(classes, len(aus), dtype=torch.float64).index_add_(
        0, label_ids, present.double()
    )
    out = {}
    for c in torch.nonzero(n).flatten().tolist():
        frequency = shown[c] / n[c]
        listed = (frequency > 0) | prototype[c]
        out[EXPRESSIONS[c]] = {
            "n": int(n[c]),
            "prototype": [au for au, p in zip(aus, prototype[c].tolist(), strict=True) if p],
            "exact": int(exact[c]),
            "jaccard": float(jaccard_sum[c] / n[c]),
            "au_frequency": {
                str(au): float(f)
                for au, f, keep in zip(aus, frequency.tolist(), listed.tolist(), strict=True)
                if keep
            },
        }
    return out
