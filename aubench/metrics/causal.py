"""Causal AU metrics: do a map's per-AU energies follow what the model actually uses?

On faces whose AUs can be removed or scaled one at a time (the synthetic faces' counterfactuals,
:mod:`aubench.bench.counterfactual`), each AU's **causal effect** on the model is measured
without off-distribution pixel deletion: the drop of the target logit (or probability) when that
AU alone is removed. These functions score maps against such effects, and two related checks:

- :func:`au_attribution_agreement`: Spearman's ρ, per image, between the map's per-AU energy and
  the per-AU causal effects over the AUs the face shows;
- :func:`au_top1_agreement`: whether the map's most energetic AU is one whose removal hurts
  most;
- :func:`dose_response`: across the steps of an AU's intensity scaled from 0 to 1, the slope and
  Pearson correlation of the map's energy in that AU's region against the target logit;
- :func:`cue_energy_share`: the share of a map's positive energy on a shortcut cue's pixels;
- :func:`mirror_equivariance`: Pearson's r between a face's map and the mirrored map of the
  mirrored face.

They take tensors only (any device) and return NaN where a score is undefined. None of them has
the map-metric signature ``(maps, heatmaps, valid)`` with an AU heatmap as second argument, so
none is scored as a map metric. :func:`cue_energy_share` is registered in
:data:`~aubench.metrics.base.METRICS` as the one metric of kind ``cue`` (a suite may list it: the
evaluation gives it each image's cue mask, :class:`~aubench.metrics.kinds.CueScores`), and
:func:`mirror_equivariance` as the one of kind ``mirror`` (the evaluation gives it each
producer's maps of the flipped images, :class:`~aubench.metrics.kinds.MirrorScores`).
:data:`CAUSAL_METRICS` holds the metadata of all as :class:`~aubench.metrics.base.Metric`
records (direction, range, category; ``kind`` records the shape of their columns: ``per_au``
for the dose-response pair, one column per AU ``<prefix>:AU<k>``, ``cue`` for the cue share,
``mirror`` for mirror equivariance, one per image otherwise). The agreement and
dose-response functions are registered too, under the names a suite lists (kinds ``causal``
and ``dose``; :data:`SUITE_METRICS`: ``au_agreement``, ``au_top1``, ``dose_slope``,
``dose_corr``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import NamedTuple

import torch

from aubench.metrics._ranking import average_ranks
from aubench.metrics.base import METRICS, Metric, check_tensor, register, safe_ratio
from aubench.metrics.correlation import pearson
from aubench.metrics.point import energy_pointing_game

__all__ = [
    "CAUSAL_METRICS",
    "SUITE_METRICS",
    "DoseResponse",
    "au_attribution_agreement",
    "au_top1_agreement",
    "cue_energy_share",
    "dose_response",
    "mirror_equivariance",
]


def au_attribution_agreement(
    energy: torch.Tensor, effects: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Spearman's ρ per image between a map's per-AU energy and the per-AU causal effects.

    Over the set U_b of AUs used for image b — ``present`` and both values finite (an AU whose
    region lies outside the image has no energy and is left out) — with r, s the 1-based ranks of
    the energies and the effects within U_b, ties sharing their mean rank (``scipy.stats.
    spearmanr``'s convention):

        ρ_b = Σ_{k∈U_b} (r_k − r̄)(s_k − s̄) / √(Σ (r_k − r̄)² · Σ (s_k − s̄)²)

    Args:
        energy: (B, A) the map's energy per AU, e.g. the share in each AU region
            (:func:`~aubench.metrics.per_au.per_au_energy`); any monotone energy gives the same ρ.
        effects: (B, A) causal effect per AU (the target's drop when the AU is removed).
        present: (B, A) bool, the AUs the face shows.

    Returns:
        (B,) in [−1, 1]; NaN when fewer than 2 AUs are used or the energies or the effects are
        constant over them.
    """
    energy, effects, used = _check_per_au(energy, effects, present)
    # unused entries rank above every used one (+inf), so the used ones rank 1 … |U_b|
    ranks_e = average_ranks(torch.where(used, energy, math.inf))
    ranks_f = average_ranks(torch.where(used, effects, math.inf))
    count = used.sum(1)
    centred_e = torch.where(used, ranks_e - _used_mean(ranks_e, used, count), 0)
    centred_f = torch.where(used, ranks_f - _used_mean(ranks_f, used, count), 0)
    # √(v_e·v_f), not √v_e·√v_f: equal ranks give exactly 1
    variance = centred_e.square().sum(1) * centred_f.square().sum(1)
    rho, defined = safe_ratio((centred_e * centred_f).sum(1), variance.sqrt())
    return torch.where(defined & (count >= 2), rho.clamp(-1, 1), math.nan)


def au_top1_agreement(
    energy: torch.Tensor, effects: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Does the map's most energetic AU match the AU whose removal hurts most?

    Over the AUs used (as :func:`au_attribution_agreement`), with T_E the AUs of maximal energy
    and T_F those of maximal effect, the score is ``|T_E ∩ T_F| / |T_E|``: the chance that the
    map's top AU, ties broken at random, is one of the most harmful to remove (1 or 0 when the
    energy's maximum is unique; any AU tied for the largest effect counts as a hit, as a tied
    maximum pixel shares the hit in :func:`~aubench.metrics.point.pointing_game`).

    Args:
        energy, effects, present: (B, A) as :func:`au_attribution_agreement`.

    Returns:
        (B,) in [0, 1]; NaN when fewer than 2 AUs are used or the energies or the effects are
        constant over them (a model that no AU moves, or a map that prefers none, has no top AU).
    """
    energy, effects, used = _check_per_au(energy, effects, present)
    top_e, spread_e = _top(energy, used)
    top_f, spread_f = _top(effects, used)
    share = (top_e & top_f).sum(1).to(energy.dtype) / top_e.sum(1).clamp(min=1)
    defined = (used.sum(1) >= 2) & spread_e & spread_f
    return torch.where(defined, share, math.nan)


class DoseResponse(NamedTuple):
    """``slope``: energy change per unit of logit change (ordinary least squares of the energy on
    the logit across the dose steps); ``correlation``: Pearson's r of the two across the steps.
    Both shaped like one step of the inputs: (B,) or (B, A)."""

    slope: torch.Tensor
    correlation: torch.Tensor


def dose_response(energies: torch.Tensor, logit_changes: torch.Tensor) -> DoseResponse:
    """Does the map's energy in an AU's region track the logit as the AU's intensity is scaled?

    For S dose steps (the AU drawn at scales s_1 … s_S of its intensity, e.g. 0, 0.25, … 1),
    with e_t the map's energy in the AU's region and l_t the target logit (or its change from
    any fixed reference: both scores are invariant to a shift of l) at step t, per image (and AU):

        slope = Σ_t (l_t − l̄)(e_t − ē) / Σ_t (l_t − l̄)²
        r     = Σ_t (l_t − l̄)(e_t − ē) / √(Σ_t (l_t − l̄)² · Σ_t (e_t − ē)²)

    A faithful map puts more energy on the AU as the AU raises the logit: r near 1, slope > 0.

    Args:
        energies: (S, B) or (S, B, A) energy in the AU's region at each step
            (:func:`~aubench.metrics.per_au.per_au_energy` of the map of each step).
        logit_changes: the same shape, the target logit at each step.

    Returns:
        :class:`DoseResponse` of (B,) or (B, A) tensors. Slope is NaN where the logit does not
        change across the steps, r also where the energy does not; a non-finite value at any
        step (an AU the face does not show) makes both NaN.
    """
    check_tensor("energies", energies, (2, 3), "(S, B) or (S, B, A)")
    check_tensor("logit_changes", logit_changes, (2, 3), "(S, B) or (S, B, A)")
    if logit_changes.shape != energies.shape:
        raise ValueError(
            f"logit_changes must have the shape of energies {tuple(energies.shape)}, "
            f"got {tuple(logit_changes.shape)}"
        )
    if energies.shape[0] < 2:
        raise ValueError(f"dose_response needs at least 2 dose steps, got {energies.shape[0]}")
    dtype = _dtype(energies, logit_changes)
    e = energies.to(dtype) - energies.to(dtype).mean(0)
    x = logit_changes.to(dtype) - logit_changes.to(dtype).mean(0)
    covariance, var_x, var_e = (x * e).sum(0), x.square().sum(0), e.square().sum(0)
    slope, moves = safe_ratio(covariance, var_x)
    r, defined = safe_ratio(covariance, (var_x * var_e).sqrt())
    return DoseResponse(
        torch.where(moves, slope, math.nan), torch.where(defined, r.clamp(-1, 1), math.nan)
    )


@register("cue_energy_share", higher_is_better=False, range=(0.0, 1.0), category="mass", kind="cue")
def cue_energy_share(
    maps: torch.Tensor,
    cue_masks: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Share of each map's positive energy on the shortcut cue: ``Σ_{p∈C} max(m_p, 0) /
    Σ_p max(m_p, 0)`` with C the cue's pixels (the energy-based pointing game with the cue as
    the region). Lower is better: a model that reads the cue, or a map that points at it.

    Args:
        maps: (B, H, W) maps at the resolution of the masks, or (P, B, H, W): the maps of P
            producers of the same images (scores (P, B)).
        cue_masks: (B, H, W) bool, the cue's pixels (all False where no cue was drawn).
        valid: (B,) bool, None for all.

    Returns:
        (B,) (or (P, B)) in [0, 1]; NaN for invalid samples, non-finite maps, maps with no
        positive value and samples without a cue.
    """
    check_tensor("cue_masks", cue_masks, 3, "(B, H, W)")
    if cue_masks.dtype != torch.bool:
        raise TypeError(f"cue_masks must be a bool tensor, got dtype {cue_masks.dtype}")
    return energy_pointing_game(maps, cue_masks, valid, mask_threshold=1.0)


@register(
    "mirror_equivariance",
    higher_is_better=True,
    range=(-1.0, 1.0),
    category="sanity",
    kind="mirror",
)
def mirror_equivariance(
    maps: torch.Tensor,
    maps_of_flipped: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Mirror equivariance of explanations: Pearson's r between a face's map and the mirrored
    map of the mirrored face.

    ``r(m, flip(m′))`` with m the map of image x, m′ the map of the horizontally flipped image
    flip(x) (landmarks flipped with their left/right parts swapped, so its AU sides swap), and
    ``flip(m′)[i, j] = m′[i, W − 1 − j]``. A method whose maps follow the face gives 1; a
    lateralised one (a fixed side, or the model's own asymmetry) less.

    Args:
        maps: (B, H, W) maps of the images.
        maps_of_flipped: (B, H, W) maps of the flipped images, as computed (not flipped back).
        valid: (B,) bool, None for all.

    Returns:
        (B,) in [−1, 1]; NaN for invalid samples, non-finite and constant maps.
    """
    check_tensor("maps_of_flipped", maps_of_flipped, 3, "(B, H, W)")
    return pearson(maps, maps_of_flipped.flip(-1), valid)


def _check_per_au(
    energy: torch.Tensor, effects: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``energy``, ``effects`` in the compute dtype and the (B, A) bool of the AUs used."""
    check_tensor("energy", energy, 2, "(B, A)")
    check_tensor("effects", effects, 2, "(B, A)")
    check_tensor("present", present, 2, "(B, A)")
    for name, value in (("effects", effects), ("present", present)):
        if value.shape != energy.shape:
            raise ValueError(
                f"{name} must have the shape of energy {tuple(energy.shape)}, "
                f"got {tuple(value.shape)}"
            )
        if value.device != energy.device:
            raise ValueError(f"{name} is on {value.device} but energy on {energy.device}")
    if present.dtype != torch.bool:
        raise TypeError(f"present must be a bool tensor, got dtype {present.dtype}")
    dtype = _dtype(energy, effects)
    energy, effects = energy.detach().to(dtype), effects.detach().to(dtype)
    return energy, effects, present & energy.isfinite() & effects.isfinite()


def _used_mean(values: torch.Tensor, used: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(B, 1) mean of ``values`` (B, A) over the used entries of each row (0 for none)."""
    return (torch.where(used, values, 0).sum(1) / count.clamp(min=1))[:, None]


def _top(values: torch.Tensor, used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) bool the used entries equal to their row's maximum over the used ones, and (B,)
    whether the used values of the row take more than one value."""
    high = torch.where(used, values, -math.inf).amax(1, keepdim=True)
    low = torch.where(used, values, math.inf).amin(1, keepdim=True)
    return used & (values == high), (high > low)[:, 0]


def _dose_slope(energies: torch.Tensor, logit_changes: torch.Tensor) -> torch.Tensor:
    """:attr:`DoseResponse.slope` of :func:`dose_response`."""
    return dose_response(energies, logit_changes).slope


def _dose_correlation(energies: torch.Tensor, logit_changes: torch.Tensor) -> torch.Tensor:
    """:attr:`DoseResponse.correlation` of :func:`dose_response`."""
    return dose_response(energies, logit_changes).correlation


def _dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (as the map metrics)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


#: Metadata of the causal metrics (not in :data:`~aubench.metrics.base.METRICS`: see the module
#: doc), name → :class:`~aubench.metrics.base.Metric`.
CAUSAL_METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "au_attribution_agreement",
            au_attribution_agreement,
            True,
            (-1.0, 1.0),
            "faithfulness",
            kind="model",
        ),
        Metric("au_top1_agreement", au_top1_agreement, True, (0.0, 1.0), "faithfulness", "model"),
        Metric(
            "dose_response_slope",
            _dose_slope,
            True,
            (-math.inf, math.inf),
            "faithfulness",
            kind="per_au",
            column_prefix="dose_slope",
        ),
        Metric(
            "dose_response_correlation",
            _dose_correlation,
            True,
            (-1.0, 1.0),
            "faithfulness",
            kind="per_au",
            column_prefix="dose_corr",
        ),
        METRICS["cue_energy_share"],
        METRICS["mirror_equivariance"],
    )
}

#: The causal metrics a suite lists (registered in :data:`~aubench.metrics.base.METRICS`),
#: scored by the evaluation on the synthetic faces' AU counterfactuals
#: (:mod:`aubench.bench.causal_scores`), their metadata that of the functions above:
#:
#: - ``au_agreement`` (kind ``causal``): :func:`au_attribution_agreement` per image of the
#:   map's energy share per AU region against the target logit's drop when each AU is removed;
#: - ``au_top1`` (kind ``causal``): :func:`au_top1_agreement`, the same inputs;
#: - ``dose_slope``, ``dose_corr`` (kind ``dose``): :func:`dose_response`'s slope and r, per
#:   AU (columns ``dose_slope:AU<k>``) and their mean over each image's AUs (``dose_slope``).
SUITE_METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        replace(CAUSAL_METRICS["au_attribution_agreement"], name="au_agreement", kind="causal"),
        replace(CAUSAL_METRICS["au_top1_agreement"], name="au_top1", kind="causal"),
        replace(
            CAUSAL_METRICS["dose_response_slope"],
            name="dose_slope",
            kind="dose",
            column_prefix=None,
        ),
        replace(
            CAUSAL_METRICS["dose_response_correlation"],
            name="dose_corr",
            kind="dose",
            column_prefix=None,
        ),
    )
}
for _name, _metric in SUITE_METRICS.items():
    if _name in METRICS:
        raise ValueError(f"metric {_name!r} is already registered")
    METRICS[_name] = _metric
