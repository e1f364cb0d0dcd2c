"""Aggregation of per-sample scores: per-class means over scored samples, the paper's macro
average over non-neutral classes, the image-level mean, stratified bootstrap 95% CIs, and the
count of excluded samples by reason.

A sample is *scored* when it is valid and its score is finite. Invalid samples are excluded and
counted by their reason code; valid samples whose metric is undefined (NaN: constant map, empty
region…) are excluded and counted as ``"undefined"`` — unless ``fill_undefined`` gives them a
value, as the paper does with 0 (``nan_to_num`` of its cosine; paper-protocol.md §5.2).

A non-neutral class with no scored sample is left out of the macro average, unless
``empty_class`` gives it a value: the reference code writes −1 for such a class and averages it
in (paper-evaluation-protocol.md item 5); the classes so filled are listed in
:attr:`Aggregate.empty_classes`, so that tables can flag the macro values they enter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from aubench.metrics.base import check_valid

__all__ = ["Aggregate", "aggregate", "aggregate_many", "bootstrap_ci"]

#: Bootstrap replicates × samples drawn at once (bounds the resampling temporaries).
_DRAWS_PER_CHUNK = 1 << 22


@dataclass(eq=False)  # tensor fields: no element-wise __eq__; not frozen, for torchmetrics
class Aggregate:
    """Summary of one metric over a set of samples (float64 tensors on the CPU).

    ``per_class`` (C,) mean over each class's scored samples (NaN when it has none; the
    ``empty_class`` value for the classes of ``empty_classes``), ``per_class_n`` (C,) their
    counts, ``per_class_ci`` (C, 2); ``macro`` the unweighted mean of the per-class values over
    ``macro_classes`` (the non-neutral classes with a scored sample, and the empty ones when
    ``empty_class`` is given), ``macro_ci``; ``image_mean`` the mean over all scored samples,
    ``image_ci``; ``n_scored``; ``excluded`` reason name → count; ``empty_classes`` the
    non-neutral classes without a scored sample that entered the macro with the
    ``empty_class`` value (empty unless it is given).
    """

    per_class: torch.Tensor
    per_class_n: torch.Tensor
    per_class_ci: torch.Tensor
    macro: float
    macro_ci: tuple[float, float]
    macro_classes: tuple[int, ...]
    image_mean: float
    image_ci: tuple[float, float]
    n_scored: int
    excluded: dict[str, int]
    empty_classes: tuple[int, ...] = ()


def aggregate(
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    reasons: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    neutral: int | None = 0,
    reason_names: Mapping[int, str] | Sequence[str] | None = None,
    fill_undefined: float | None = None,
    empty_class: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Aggregate:
    """Aggregate per-sample ``scores`` (N,) of one metric.

    Args:
        scores: (N,) per-sample scores, NaN where undefined.
        labels: (N,) int class ids in [0, num_classes).
        valid: (N,) bool, None for all.
        reasons: (N,) int invalid-reason codes (0 = valid; e.g.
            :func:`aubench.faces.heatmaps.invalid_reasons`); None counts every invalid sample
            as ``"invalid"``.
        num_classes: C; default ``max(labels) + 1``.
        neutral: the class left out of the macro average (0, the canonical neutral; None keeps
            every class).
        reason_names: code → name (a mapping or a sequence indexed by code); default
            ``"reason_<code>"``.
        fill_undefined: score given to valid samples whose score is NaN (the paper: 0.0);
            None excludes them as ``"undefined"``.
        empty_class: the value of each non-neutral class of ``[0, num_classes)`` with no
            scored sample, averaged into the macro (the reference code: −1; its classes are
            listed in ``empty_classes``); None leaves such classes out of the macro.
        n_boot: bootstrap replicates (0: no CIs, NaN bounds).
        confidence: CI level (percentile bootstrap).
        seed: seed of the resampling.

    Returns:
        :class:`Aggregate`. The bootstrap resamples samples with replacement *within each class*
        (class sizes fixed, so every per-class mean exists in every replicate); the same
        replicates give the per-class, macro and image-level intervals.
    """
    scores = _as_cpu("scores", scores, torch.float64)
    (result,) = aggregate_many(
        scores[None],
        labels,
        valid,
        reasons,
        num_classes=num_classes,
        neutral=neutral,
        reason_names=reason_names,
        fill_undefined=fill_undefined,
        empty_class=empty_class,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    return result


def aggregate_many(
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    reasons: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    neutral: int | None = 0,
    reason_names: Mapping[int, str] | Sequence[str] | None = None,
    fill_undefined: float | None = None,
    empty_class: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Aggregate]:
    """:func:`aggregate` of each row of ``scores`` (K, N) — K metrics of the same N samples
    (``labels``, ``valid``, ``reasons`` and the options as :func:`aggregate`) — vectorised
    over the rows: the rows with the same scored samples share their bootstrap draws (each
    row's draws are those :func:`aggregate` makes for it alone, from ``seed``), so their
    means, replicates and quantiles are computed together. Returns one :class:`Aggregate` a
    row, exactly what :func:`aggregate` returns for it.
    """
    scores = torch.as_tensor(scores).detach().cpu()
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (K, N), got {tuple(scores.shape)}")
    scores = scores.to(torch.float64)
    if not len(scores):
        return []
    rows = scores.shape[1]
    labels = _as_cpu("labels", labels, torch.int64, rows)
    valid = valid.cpu() if isinstance(valid, torch.Tensor) else valid
    flags = check_valid(valid, rows, torch.device("cpu"))
    classes = (int(labels.max()) + 1 if rows else 0) if num_classes is None else num_classes
    if rows and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if fill_undefined is not None:
        scores = torch.where(flags & scores.isnan(), fill_undefined, scores)
    scored = flags & scores.isfinite()  # (K, N)
    invalid = _invalid_counts(flags, reasons, reason_names, rows)
    undefined = (flags & ~scored).sum(1).tolist()
    results: list[Aggregate | None] = [None] * len(scores)
    patterns, which = torch.unique(scored, dim=0, return_inverse=True)
    for pattern, members in zip(patterns, _members(which, len(patterns)), strict=True):
        values, groups = scores[members][:, pattern], labels[pattern]
        counts = torch.bincount(groups, minlength=classes)
        per_class = torch.zeros(len(members), classes, dtype=torch.float64)
        per_class = per_class.index_add_(1, groups, values) / counts
        kept = [c for c in range(classes) if c != neutral]
        empty = tuple(c for c in kept if counts[c] == 0) if empty_class is not None else ()
        if empty:
            per_class[:, list(empty)] = empty_class
        macro_classes = tuple(c for c in kept if counts[c] > 0 or c in empty)
        macro = per_class[:, list(macro_classes)].mean(1) if macro_classes else None
        image = values.mean(1) if len(groups) else None
        class_ci, macro_ci, image_ci = bootstrap_ci(
            values, groups, classes, macro_classes, n_boot, confidence, seed, empty_class
        )
        for k, row in enumerate(members.tolist()):
            excluded = dict(invalid)
            if undefined[row]:
                excluded["undefined"] = undefined[row]
            results[row] = Aggregate(
                per_class=per_class[k],
                per_class_n=counts,
                per_class_ci=class_ci[k],
                macro=math.nan if macro is None else macro[k].item(),
                macro_ci=tuple(macro_ci[k].tolist()),
                macro_classes=macro_classes,
                image_mean=math.nan if image is None else image[k].item(),
                image_ci=tuple(image_ci[k].tolist()),
                n_scored=len(groups),
                excluded=excluded,
                empty_classes=empty,
            )
    return results


def bootstrap_ci(
    values: torch.Tensor,
    groups: torch.Tensor,
    classes: int,
    macro_classes: Sequence[int],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    empty_class: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Percentile intervals from a bootstrap stratified by class, for K score columns of the
    same samples at once.

    ``values`` (…, n) float64 scores and ``groups`` (n,) their classes. Each replicate draws, for
    every class c with n_c samples, n_c of its samples with replacement (all replicates at once,
    in chunks; the draws depend on ``seed`` and n only, so every column gets those it would get
    alone): replicate b's class mean is ``μ*_bc``, its macro mean the average of ``μ*_bc`` over
    ``macro_classes`` (a class of them without samples counts ``empty_class`` in every
    replicate), its image mean the average of all drawn values. Returns
    ``(per-class (…, C, 2), macro (…, 2), image (…, 2))`` as (low, high); NaN without samples or
    when ``n_boot`` is 0.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be ≥ 0, got {n_boot}")
    lead, width = values.shape[:-1], values.shape[-1]
    columns = math.prod(lead)
    values = values.reshape(columns, width)
    class_ci = torch.full((columns, classes, 2), math.nan, dtype=torch.float64)
    macro_ci = torch.full((columns, 2), math.nan, dtype=torch.float64)
    image_ci = torch.full((columns, 2), math.nan, dtype=torch.float64)

    def shaped() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            class_ci.reshape(*lead, classes, 2),
            macro_ci.reshape(*lead, 2),
            image_ci.reshape(*lead, 2),
        )

    if n_boot == 0 or width == 0:
        return shaped()
    order = torch.argsort(groups, stable=True)
    values, groups = values[:, order], groups[order]
    counts = torch.bincount(groups, minlength=classes)
    starts = torch.cumsum(counts, 0) - counts
    generator = torch.Generator().manual_seed(seed)
    step = max(1, _DRAWS_PER_CHUNK // width)
    per_piece = max(1, _DRAWS_PER_CHUNK // (min(step, n_boot) * width))  # columns drawn at once
    class_means, image_means = [], []
    for first in range(0, n_boot, step):
        draws = min(step, n_boot - first)
        uniform = torch.rand(draws, width, generator=generator, dtype=torch.float64)
        picks = starts[groups] + (uniform * counts[groups]).long().clamp(max=counts[groups] - 1)
        sums = torch.zeros(columns, draws, classes, dtype=torch.float64)
        means = torch.empty(columns, draws, dtype=torch.float64)
        for piece in range(0, columns, per_piece):
            part = slice(piece, piece + per_piece)
            drawn = values[part][:, picks]  # (columns, draws, n)
            sums[part].index_add_(2, groups, drawn)
            means[part] = drawn.mean(2)
        class_means.append(sums / counts)
        image_means.append(means)
    replicate = torch.cat(class_means, 1)  # (columns, n_boot, C)
    levels = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    present = counts > 0
    class_ci[:, present] = torch.quantile(replicate[..., present], levels, dim=1).permute(1, 2, 0)
    image_ci = torch.quantile(torch.cat(image_means, 1), levels, dim=1).T
    if macro_classes:
        if empty_class is not None:
            replicate[..., ~present] = empty_class
        macro = replicate[..., list(macro_classes)].mean(2)
        macro_ci = torch.quantile(macro, levels, dim=1).T
    return shaped()


def _members(which: torch.Tensor, patterns: int) -> list[torch.Tensor]:
    """The row indices (ascending) of each of ``patterns`` groups, from ``which`` (K,)."""
    order = torch.argsort(which, stable=True)
    return list(order.split(torch.bincount(which, minlength=patterns).tolist()))


def _invalid_counts(
    flags: torch.Tensor,
    reasons: torch.Tensor | None,
    names: Mapping[int, str] | Sequence[str] | None,
    rows: int,
) -> dict[str, int]:
    """Reason name → count over the invalid samples (``flags`` false)."""
    excluded: dict[str, int] = {}
    invalid = ~flags
    if reasons is None:
        codes = torch.zeros(int(invalid.sum()), dtype=torch.int64)
    else:
        codes = _as_cpu("reasons", reasons, torch.int64, rows)[invalid]
    for code, count in zip(*torch.unique(codes, return_counts=True), strict=True):
        name = "invalid" if reasons is None else _reason_name(int(code), names)
        excluded[name] = excluded.get(name, 0) + int(count)
    return excluded


def _reason_name(code: int, names: Mapping[int, str] | Sequence[str] | None) -> str:
    if code == 0:  # flagged invalid without a reason
        return "invalid"
    if isinstance(names, Mapping):
        return names.get(code, f"reason_{code}")
    return names[code] if names is not None and code < len(names) else f"reason_{code}"


def _as_cpu(
    name: str, value: torch.Tensor, dtype: torch.dtype, rows: int | None = None
) -> torch.Tensor:
    """``value`` as a 1-D CPU tensor of ``dtype`` (and length ``rows``), else a clear error."""
    tensor = torch.as_tensor(value).detach().cpu()
    if tensor.ndim != 1 or (rows is not None and tensor.shape[0] != rows):
        expected = "(N,)" if rows is None else f"({rows},)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")
    if dtype == torch.int64 and tensor.is_floating_point():
        raise ValueError(f"{name} must hold integers, got dtype {tensor.dtype}")
    return tensor.to(dtype)
