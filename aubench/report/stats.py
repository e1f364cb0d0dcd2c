"""Statistics behind the report: seed averages and paired tests between baseline and guided.

**Paired test.** For one (model, method, layer, metric) and one guided variant, the pairs are
the per-image scores of the baseline and of the guided variant on the same (seed, split, image
id); pairs where either score is missing (NaN: invalid heatmap, undefined metric) are dropped.
The test is the two-sided paired *sign-flip permutation test* of the differences
``d_i = guided_i − baseline_i``: under H0 (no effect) each ``d_i`` is as likely to be ``−d_i``,
so ``p = P(|Σ s_i d_i| ≥ |Σ d_i|)`` over random signs ``s_i = ±1``. Up to
:data:`EXACT_MAX_PAIRS` pairs every one of the ``2^n`` sign vectors is enumerated (exact p);
beyond, :data:`RESAMPLES` random sign vectors from a seeded generator give the Monte-Carlo
``p = (1 + hits) / (1 + resamples)``. Accuracy is tested on the per-image correctness
``100·[pred == label]`` (a permutation form of McNemar's test). Numpy only (no scipy).

**Correction.** Tables apply Holm's step-down correction over all the tests of one table
(:func:`holm`); marks are ``*`` for p < 0.05 and ``**`` for p < 0.01 (:func:`significance_mark`).

**Seeds.** Several seeds are averaged; their sample standard deviation is shown as ``±``
(:func:`seed_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from aubench.bench.results import CLASSIFIER

#: Pairs up to which the sign-flip test enumerates all 2^n sign vectors.
EXACT_MAX_PAIRS = 16
#: Random sign vectors of the Monte-Carlo test beyond :data:`EXACT_MAX_PAIRS` pairs.
RESAMPLES = 10_000
#: (threshold, mark) from the strictest: ``p < threshold`` earns ``mark``.
SIGNIFICANCE = ((0.01, "**"), (0.05, "*"))
#: Columns identifying a pair of per-image scores (the variant aside).
PAIR_KEY = ["model", "seed", "split", "id", "method", "layer", "metric"]
#: Sign-matrix elements drawn at once in the Monte-Carlo test.
_CHUNK_ELEMENTS = 1 << 22


def sign_flip_test(
    differences: Sequence[float] | np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> float:
    """Two-sided paired sign-flip permutation test of paired differences (see module doc).

    Args:
        differences: (n,) finite ``guided − baseline`` differences.
        resamples: random sign vectors when n > :data:`EXACT_MAX_PAIRS`.
        seed: seed of the Monte-Carlo generator.

    Returns:
        The p-value in (0, 1]; NaN when there is no pair.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        raise ValueError("sign_flip_test needs finite differences (drop NaN pairs first)")
    n = d.size
    if n == 0:
        return float("nan")
    # a sign vector's sum ties the observed one up to rounding when it is the same multiset
    threshold = abs(d.sum()) - 1e-9 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_MAX_PAIRS:
        bits = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1
        return float(np.mean(np.abs((1 - 2 * bits) @ d) >= threshold))
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    total = d.sum()
    # random bits b; s = 2b − 1 gives Σ s_i d_i = 2·(b·d) − Σ d_i
    hits = sum(
        int(np.count_nonzero(np.abs(2.0 * (bits @ d) - total) >= threshold))
        for bits in _random_bits(n, resamples, seed)
    )
    return (hits + 1) / (resamples + 1)


@lru_cache(maxsize=1)
def _random_bits(n: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """The Monte-Carlo sign bits (``resamples`` × n, in read-only float64 row chunks) of a test
    of n pairs: 8 bits per byte drawn from a generator seeded with ``seed``, so every test of n
    pairs uses the same ones — drawn once, kept for the next test of n pairs (:func:`paired_tests`
    runs its tests by n)."""
    rng = np.random.default_rng(seed)
    step, chunks = max(1, _CHUNK_ELEMENTS // n), []
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        bytes_ = rng.integers(0, 256, (rows, (n + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(bytes_, axis=1, count=n).astype(np.float64)
        bits.flags.writeable = False
        chunks.append(bits)
    return tuple(chunks)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and do not count as tests).

    With m tests sorted ``p_(1) ≤ … ≤ p_(m)``: ``p'_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = p[order] * (len(order) - np.arange(len(order)))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def significance_mark(p: float) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else "" (NaN: untested)."""
    return next((mark for level, mark in SIGNIFICANCE if p < level), "")


def seed_summary(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Average results rows over seeds.

    Args:
        rows: results rows (``value``, ``ci_low``, ``ci_high`` and ``keys``), one per seed of
            each key.
        keys: the columns identifying a cell once the seeds are averaged.

    Returns:
        ``keys`` + ``value``, ``ci_low``, ``ci_high`` (means over seeds), ``spread`` (sample
        standard deviation of ``value`` over seeds; NaN with one seed) and ``n_seeds``.
    """
    grouped = rows.groupby(list(keys), sort=False, dropna=False)
    return grouped.agg(
        value=("value", "mean"),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        spread=("value", "std"),
        n_seeds=("value", "size"),
    ).reset_index()


def accuracy_rows(per_image: pd.DataFrame) -> pd.DataFrame:
    """The classifier's per-image ``pred`` rows turned into ``accuracy`` rows worth 100 when the
    prediction equals the (integer) label, else 0."""
    rows = per_image[(per_image["method"] == CLASSIFIER) & (per_image["metric"] == "pred")].copy()
    correct = rows["value"].to_numpy(np.float64) == rows["label"].to_numpy(np.float64)
    rows["value"] = np.where(rows["value"].isna(), np.nan, 100.0 * correct)
    rows["metric"] = "accuracy"
    return rows


def paired_tests(
    per_image: pd.DataFrame,
    baseline: str,
    guided: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired sign-flip tests of each guided variant against ``baseline`` (uncorrected).

    Args:
        per_image: per-image scores (columns of :data:`aubench.bench.results.PER_IMAGE_COLUMNS`).
        baseline: the unguided variant.
        guided: the variants tested against it.
        resamples, seed: Monte-Carlo settings of :func:`sign_flip_test`.

    Returns:
        One row per (model, variant, method, layer, metric) with a pair: ``n`` pairs pooled over
        seeds, ``mean_diff`` (guided − baseline) and ``p``.
    """
    scores = per_image[~((per_image["method"] == CLASSIFIER) & (per_image["metric"] == "pred"))]
    scores = pd.concat([scores, accuracy_rows(per_image)], ignore_index=True)
    scores = scores[np.isfinite(scores["value"].to_numpy(np.float64))]
    base = scores.loc[scores["variant"] == baseline, [*PAIR_KEY, "value"]]
    out, differences = [], []
    for name in guided:
        other = scores.loc[scores["variant"] == name, [*PAIR_KEY, "value"]]
        pairs = other.merge(base, on=PAIR_KEY, suffixes=("", "_base"))
        pairs["diff"] = pairs["value"] - pairs["value_base"]
        for (model, method, layer, metric), group in pairs.groupby(
            ["model", "method", "layer", "metric"], sort=False
        ):
            d = group["diff"].to_numpy()
            out.append((model, name, method, layer, metric, d.size, d.mean()))
            differences.append(d)
    p = np.full(len(out), np.nan)
    for i in sorted(range(len(out)), key=lambda i: differences[i].size):  # same n: same bits
        p[i] = sign_flip_test(differences[i], resamples, seed)
    _random_bits.cache_clear()
    columns = ["model", "variant", "method", "layer", "metric", "n", "mean_diff"]
    return pd.DataFrame(out, columns=columns).assign(p=p)
