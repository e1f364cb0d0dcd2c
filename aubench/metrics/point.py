"""Point, mass and rank metrics of a map against its AU region G = ``heatmap >= mask_threshold``:
pointing game, energy-based pointing game, relevance mass and rank accuracy, top-k intersection
and ROC-AUC (Quantus's localisation family, with explicit tie rules).

Every metric here is NaN for invalid samples and empty AU regions (Quantus's pointing game
returns True there, shared/reference/anchors-and-metrics.md §2.10). Ties are resolved by value,
never by the order a sort happens to leave them in: where the top-k cut falls inside a group of
equal values, the group contributes its inside share pro rata (the expectation under random
tie-breaking). Maps are used as given; none of these metrics depends on a positive rescaling.

Differences from Quantus 0.6 (which normalises ``a / max|a|`` over the whole batch first; that
changes none of these scores): its pointing game counts a hit when *any* tied maximum is inside;
its top-k and rank accuracy break ties in ``np.argsort`` order; its top-k uses a fixed k (1000);
its AUC is ``sklearn.metrics.roc_curve`` + ``auc``, which scores ties exactly as here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from aubench.metrics.base import MapBatch, check_threshold, register, safe_ratio

__all__ = [
    "energy_pointing_game",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "roc_auc",
    "top_k_intersection",
]


@register("pointing_game", higher_is_better=True, range=(0.0, 1.0), category="point")
def pointing_game(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
    ties: Literal["share", "any", "all"] = "share",
) -> torch.Tensor:
    """Pointing game (Zhang et al. 2018): is the map's maximum inside the AU region?

    With M the set of pixels equal to the map's maximum, the score is ``|M ∩ G| / |M|`` for
    ``ties="share"`` (the default: a unique maximum scores 1 or 0; a constant map scores the
    chance level |G|/N), ``1[M ∩ G ≠ ∅]`` for ``"any"`` (Quantus) and ``1[M ⊆ G]`` for ``"all"``.
    No tolerance disc around the maximum (the original's 15 px), as in Quantus.

    (B, H, W) → (B,) in [0, 1]; NaN for invalid samples and empty AU regions.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    at_max = batch.maps == batch.map_high[..., None]
    n_max = at_max.sum(-1, dtype=torch.int32)  # int32 sums of bool run twice as fast on CPU
    n_inside = (at_max & batch.mask(mask_threshold)).sum(-1, dtype=torch.int32)
    if ties == "share":
        score = n_inside.to(batch.dtype) / n_max
    elif ties == "any":
        score = (n_inside > 0).to(batch.dtype)
    elif ties == "all":
        score = (n_inside == n_max).to(batch.dtype)
    else:
        raise ValueError(f"ties must be 'share', 'any' or 'all', got {ties!r}")
    return batch.finish(score, batch.mask_size(mask_threshold) > 0)


@register("energy_pointing_game", higher_is_better=True, range=(0.0, 1.0), category="mass")
def energy_pointing_game(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM): the share of the map's positive
    energy inside the AU region, ``Σ_{p∈G} max(m_p, 0) / Σ_p max(m_p, 0)``.

    Equals :func:`relevance_mass_accuracy` on non-negative maps (the house normalisation);
    differs on signed maps, which it clips. (B, H, W) → (B,) in [0, 1]; NaN for invalid
    samples, empty AU regions and maps with no positive value.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    return _mass_share(batch, batch.positive_maps(), mask_threshold)


@register("relevance_mass_accuracy", higher_is_better=True, range=(0.0, 1.0), category="mass")
def relevance_mass_accuracy(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Relevance mass accuracy (Arras et al. 2022): ``Σ_{p∈G} m_p / Σ_p m_p``, no clipping and
    no ε (as Quantus).

    (B, H, W) → (B,), in [0, 1] for non-negative maps; NaN for invalid samples, empty AU regions
    and maps summing to 0.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    return _mass_share(batch, batch.maps, mask_threshold)


@register("relevance_rank_accuracy", higher_is_better=True, range=(0.0, 1.0), category="rank")
def relevance_rank_accuracy(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Relevance rank accuracy (Arras et al. 2022): ``|top_K(m) ∩ G| / K`` with K = |G|.

    Ties at the cut count pro rata (module docstring); this is :func:`top_k_intersection` with
    ``fraction=1``. (B, H, W) → (B,) in [0, 1]; NaN for invalid samples and empty AU regions.
    """
    return top_k_intersection(maps, heatmaps, valid, fraction=1.0, mask_threshold=mask_threshold)


@register("top_k_intersection", higher_is_better=True, range=(0.0, 1.0), category="rank")
def top_k_intersection(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    fraction: float = 0.5,
    k: int | None = None,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Top-k intersection (Theiner et al. 2021): ``|top_k(m) ∩ G| / k``.

    Args:
        maps, heatmaps: (B, H, W); valid: (B,) bool, None for all.
        fraction: k = ⌈fraction · |G|⌉ per sample (at least 1), fraction in (0, 1], so the
            score means the same on small and large AU regions (fraction 1 is the relevance
            rank accuracy).
        k: a fixed k for every sample instead (Quantus's convention, default 1000 there),
            1 ≤ k ≤ N.
        mask_threshold: G = ``heatmap >= mask_threshold``.

    Returns:
        (B,) in [0, 1]: the expected share of the k highest pixels inside G, ties at the cut
        counted pro rata. NaN for invalid samples and empty AU regions.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    size = batch.mask_size(mask_threshold)
    if k is None:
        fraction = check_threshold("fraction", fraction)
        # float64 and a 1e-9 slack: 0.3 · 10 must give k = 3, not ⌈3.0000000000000004⌉ = 4
        count = torch.ceil(size.double() * fraction - 1e-9).long().clamp(min=1)
    elif isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= batch.pixels:
        raise ValueError(f"k must be an int in [1, {batch.pixels}] (pixels per map), got {k!r}")
    else:
        count = torch.full_like(size, k)
    count = count.expand(batch.maps.shape[:-1])
    hits = _top_count_inside(batch, mask_threshold, count)
    return batch.finish(hits / count, size > 0)


@register("roc_auc", higher_is_better=True, range=(0.0, 1.0), category="rank")
def roc_auc(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Area under the ROC curve of the map as a pixel classifier of the AU region, exact with ties.

    ``AUC = P(m_p > m_q) + ½ P(m_p = m_q)`` for p ∈ G, q ∉ G, computed from average ranks:
    ``(Σ_{p∈G} rank_p − |G|(|G|+1)/2) / (|G| · |Gᶜ|)`` (Mann–Whitney); equals
    ``sklearn.metrics.roc_auc_score``. (B, H, W) → (B,) in [0, 1]; NaN for invalid samples and
    AU regions that are empty or cover the whole map. The ranks come from the batch's shared
    sort (:meth:`MapBatch.twice_ranks`, also behind :func:`~aubench.metrics.correlation.spearman`).
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    ranked = batch.ranked(mask_threshold)
    n_in = ranked.inside[..., -1].to(torch.int64)
    n_out = batch.pixels - n_in
    rank_sum2 = (batch.twice_ranks() * ranked.bits).sum(-1, dtype=torch.int64)
    u2 = rank_sum2 - n_in * (n_in + 1)  # twice the Mann–Whitney U, exact in int64
    score, defined = safe_ratio(u2.double(), 2.0 * n_in.double() * n_out.double())
    return batch.finish(score, defined)


def _mass_share(batch: MapBatch, values: torch.Tensor, mask_threshold: float) -> torch.Tensor:
    share, defined = safe_ratio(batch.inside_sum(values, mask_threshold), values.sum(-1))
    return batch.finish(share, defined & (batch.mask_size(mask_threshold) > 0))


def _top_count_inside(batch: MapBatch, mask_threshold: float, count: torch.Tensor) -> torch.Tensor:
    """Expected pixels of G among each map's ``count`` (P, B) highest, ties at the cut pro rata.

    With t the count-th highest value: the pixels above t all count; the tie group of t
    (g pixels, g_in of them in G) fills the remaining ``count − above`` places, each pixel
    equally likely, so it adds ``(count − above) · g_in / g``.
    """
    ranked = batch.ranked(mask_threshold)
    values, inside = ranked.values, ranked.inside
    n = batch.pixels
    cut = values.gather(-1, (n - count)[..., None])
    low = torch.searchsorted(values, cut, right=False)  # first position of the tie group
    high = torch.searchsorted(values, cut, right=True)  # one past its last position
    inside_to_high = inside.gather(-1, high - 1).squeeze(-1).double()
    inside_to_low = (
        torch.where(low > 0, inside.gather(-1, (low - 1).clamp(min=0)), 0).squeeze(-1).double()
    )
    above = (n - high).squeeze(-1)
    group = (high - low).squeeze(-1)
    inside_above = inside[..., -1].double() - inside_to_high
    share = (inside_to_high - inside_to_low) / group
    return inside_above + (count - above) * share
