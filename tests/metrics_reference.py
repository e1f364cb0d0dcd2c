"""Straightforward NumPy references of every metric definition in aubench.metrics, written from
the definitions (docstrings, shared/reference/anchors-and-metrics.md §2), one sample at a time,
in float64, with loops where that is the plainest way to say it. The batched torch code is
checked against these on random inputs with ties, constant maps, empty masks and invalid
samples (``nasty_batch``).
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan


# --- inputs ------------------------------------------------------------------------------------


def nasty_batch(rng: np.random.Generator, size: int = 5, dtype=np.float32):
    """(maps, heatmaps, valid) for 12 + ``size`` samples of 9×11 pixels covering the edge cases.

    Rows: a smooth map, a map quantised to 4 levels (many ties), a constant map, an all-zero
    map, an empty AU region, an AU region covering the whole map, a tied maximum, a NaN map
    value, an invalid sample, a map with negative values, a heatmap of one pixel, a map whose
    maximum ties inside and outside the region; then ``size`` random rows with ties.
    """
    h, w = 9, 11
    ys, xs = np.mgrid[0:h, 0:w]

    def blob(cy, cx, s):
        return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * s**2))

    heat = [blob(rng.uniform(2, 6), rng.uniform(2, 8), rng.uniform(1.5, 3)) for _ in range(12)]
    maps = [rng.random((h, w)) for _ in range(12)]
    maps[1] = np.round(maps[1] * 3) / 3  # 4 levels: ties everywhere
    maps[2] = np.full((h, w), 0.3)
    maps[3] = np.zeros((h, w))
    heat[4] = heat[4] * 0.4  # peak below 0.5: empty region
    heat[5] = np.ones((h, w))  # region covers everything
    maps[6] = np.zeros((h, w))
    maps[6][1, 1] = maps[6][7, 9] = 1.0  # two tied maxima
    maps[7][3, 3] = NAN
    maps[9] = maps[9] - 0.5  # signed
    heat[10] = np.zeros((h, w))
    heat[10][4, 5] = 1.0  # one-pixel region
    maps[11] = np.where(heat[11] >= 0.5, 0.5, 0.2)
    maps[11][0, 0] = maps[11][int(np.argmax(heat[11])) // w, int(np.argmax(heat[11])) % w] = 0.9
    for _ in range(size):
        maps.append(np.round(rng.random((h, w)) * rng.integers(2, 30)) / 30)
        heat.append(blob(rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 4)))
    valid = np.ones(len(maps), dtype=bool)
    valid[8] = False
    return np.stack(maps).astype(dtype), np.stack(heat).astype(dtype), valid


def _rows(maps, heatmaps, valid):
    """Yield (index, map, heatmap) as flat float64 rows for the samples that can be scored."""
    for i, (m, h) in enumerate(zip(maps, heatmaps, strict=True)):
        if valid is not None and not valid[i]:
            continue
        if not (np.isfinite(m).all() and np.isfinite(h).all()):
            continue
        yield i, m.reshape(-1).astype(np.float64), h.reshape(-1).astype(np.float64)


def _per_sample(fn):
    """Lift ``fn(map_row, heat_row, **kw) -> float`` to a batch, NaN where not scorable."""

    def batch(maps, heatmaps, valid=None, **kwargs):
        out = np.full(len(maps), NAN)
        for i, m, h in _rows(maps, heatmaps, valid):
            out[i] = fn(m, h, **kwargs)
        return out

    batch.__name__ = fn.__name__
    return batch


def _constant(x):
    return x.max() == x.min()


# --- correlation -------------------------------------------------------------------------------


@_per_sample
def cosine(m, h):
    if _constant(m) or _constant(h):
        return NAN
    return float(np.dot(m, h) / (np.sqrt(np.dot(m, m)) * np.sqrt(np.dot(h, h))))


@_per_sample
def pearson(m, h):
    if _constant(m) or _constant(h):
        return NAN
    return float(np.corrcoef(m, h)[0, 1])


def average_ranks(x):
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = np.empty(len(x))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for p in order[i : j + 1]:
            ranks[p] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@_per_sample
def spearman(m, h):
    if _constant(m) or _constant(h):
        return NAN
    return float(np.corrcoef(average_ranks(m), average_ranks(h))[0, 1])


# --- overlap -----------------------------------------------------------------------------------


def otsu_threshold(m, bins=256):
    """Otsu on ``bins`` equal bins over [min, max]: the centre of the first bin t maximising
    w1·w2·(mu1 − mu2)², written (k1·w2 − k2·w1)² / (w1·w2) with k the sums of 2·(bin + ½)."""
    lo, hi = m.min(), m.max()
    if lo == hi:
        return lo
    hist = [0] * bins
    for v in m:
        hist[min(int((v - lo) * (bins / (hi - lo))), bins - 1)] += 1
    best, best_var = 0, -1.0
    for t in range(bins - 1):
        w1, w2 = sum(hist[: t + 1]), sum(hist[t + 1 :])
        k1 = sum(c * (2 * i + 1) for i, c in enumerate(hist[: t + 1]))
        k2 = sum(c * (2 * i + 1) for i, c in enumerate(hist) if i > t)
        if w1 == 0 or w2 == 0:
            continue
        var = float(k1 * w2 - k2 * w1) ** 2 / float(w1 * w2)
        if var > best_var:
            best, best_var = t, var
    return lo + (best + 0.5) * ((hi - lo) / bins)


def _overlap(pred, region, dice):
    inter = np.sum(pred & region)
    if dice:
        return 2 * inter / (pred.sum() + region.sum())
    union = np.sum(pred | region)
    return inter / union


def overlap(maps, heatmaps, valid=None, threshold=0.5, mask_threshold=0.5, levels=100, dice=False):
    """IoU (or Dice) at a number, ``"otsu"`` or ``"best"`` (max over j/levels, m·L >= j)."""
    out = np.full(len(maps), NAN)
    for i, m64, h in _rows(maps, heatmaps, valid):
        region = h >= mask_threshold
        if not region.any():
            continue
        m = maps[i].reshape(-1)  # native dtype: the grid product m·L is taken in it
        if threshold == "otsu":
            if _constant(m64):
                continue
            out[i] = _overlap(m64 > otsu_threshold(m64), region, dice)
        elif threshold == "best":
            out[i] = max(_overlap(m * levels >= j, region, dice) for j in range(levels + 1))
        else:
            out[i] = _overlap(m >= threshold, region, dice)
    return out


def pixel_ap(maps, heatmaps, valid=None, mask_threshold=0.5, levels=1000):
    out = np.full(len(maps), NAN)
    for i, _, h in _rows(maps, heatmaps, valid):
        region = h >= mask_threshold
        if region.any():
            out[i] = _ap([maps[i].reshape(-1)], [region], levels)
    return out


def pxap(maps, heatmaps, valid=None, mask_threshold=0.5, levels=1000):
    """Dataset-level AP: one curve from every scorable sample's pixels."""
    rows = [(maps[i].reshape(-1), h >= mask_threshold) for i, _, h in _rows(maps, heatmaps, valid)]
    if not any(r.any() for _, r in rows):
        return NAN
    return _ap([m for m, _ in rows], [r for _, r in rows], levels)


def _ap(maps, regions, levels):
    """Σ_j P_j (R_j − R_{j+1}) for j = L..0, skipping levels that predict nothing."""
    positives = sum(r.sum() for r in regions)
    total, previous_recall = 0.0, 0.0
    for j in range(levels, -1, -1):
        pred = [np.clip(np.floor(m * levels), -1, levels) >= j for m in maps]
        tp = sum(np.sum(p & r) for p, r in zip(pred, regions, strict=True))
        predicted = sum(p.sum() for p in pred)
        recall = tp / positives
        if predicted:
            total += tp / predicted * (recall - previous_recall)
        previous_recall = recall
    return total


# --- point, mass, rank -------------------------------------------------------------------------


@_per_sample
def pointing_game(m, h, mask_threshold=0.5, ties="share"):
    region = h >= mask_threshold
    if not region.any():
        return NAN
    top = m == m.max()
    hits = np.sum(top & region)
    return {"share": hits / top.sum(), "any": float(hits > 0), "all": float(hits == top.sum())}[
        ties
    ]


@_per_sample
def relevance_mass_accuracy(m, h, mask_threshold=0.5):
    region = h >= mask_threshold
    if not region.any() or m.sum() == 0:
        return NAN
    return m[region].sum() / m.sum()


@_per_sample
def energy_pointing_game(m, h, mask_threshold=0.5):
    region = h >= mask_threshold
    e = np.maximum(m, 0)
    if not region.any() or e.sum() == 0:
        return NAN
    return e[region].sum() / e.sum()


@_per_sample
def top_k_intersection(m, h, mask_threshold=0.5, fraction=0.5, k=None):
    """Expected share of the k highest pixels inside, ties at the cut broken uniformly at random."""
    region = h >= mask_threshold
    if not region.any():
        return NAN
    k = max(1, math.ceil(fraction * region.sum() - 1e-9)) if k is None else k  # 0.3·10 → 3
    cut = np.sort(m)[::-1][k - 1]
    above, tied = m > cut, m == cut
    places = k - above.sum()
    expected = np.sum(above & region) + places * np.sum(tied & region) / tied.sum()
    return expected / k


def relevance_rank_accuracy(maps, heatmaps, valid=None, mask_threshold=0.5):
    return top_k_intersection(maps, heatmaps, valid, mask_threshold=mask_threshold, fraction=1.0)


@_per_sample
def roc_auc(m, h, mask_threshold=0.5):
    """Mean over (inside, outside) pixel pairs of 1[a > b] + ½·1[a = b]."""
    region = h >= mask_threshold
    if region.all() or not region.any():
        return NAN
    pos, neg = m[region], m[~region]
    wins = sum(np.sum(p > neg) + 0.5 * np.sum(p == neg) for p in pos)
    return wins / (len(pos) * len(neg))


# --- saliency ----------------------------------------------------------------------------------


def _distribution(x):
    x = x - min(x.min(), 0.0)
    return None if x.sum() == 0 else x / x.sum()


@_per_sample
def sim(m, h):
    p, q = _distribution(m), _distribution(h)
    return NAN if p is None or q is None else float(np.minimum(p, q).sum())


@_per_sample
def kl(m, h, eps=2.2204e-16):
    p, q = _distribution(m), _distribution(h)
    return NAN if p is None or q is None else float(np.sum(q * np.log(eps + q / (p + eps))))


@_per_sample
def nss(m, h, mask_threshold=0.5):
    region = h >= mask_threshold
    if not region.any() or _constant(m):
        return NAN
    return float(((m - m.mean()) / m.std())[region].mean())


# --- per AU ------------------------------------------------------------------------------------


def per_au_energy(maps, regions, valid=None, region_threshold=0.5):
    out = np.full(regions.shape[:2], NAN)
    for i in range(len(maps)):
        m = maps[i].reshape(-1).astype(np.float64)
        r = regions[i].reshape(regions.shape[1], -1)
        if (valid is not None and not valid[i]) or not np.isfinite(m).all():
            continue
        if not np.isfinite(r).all():
            continue
        e = np.maximum(m, 0)
        for k in range(regions.shape[1]):
            inside = r[k] >= region_threshold
            if inside.any() and e.sum() > 0:
                out[i, k] = e[inside].sum() / e.sum()
    return out


# --- faithfulness (model: one image (C, H, W) -> logits (classes,), NumPy) ---------------------


def _score(model, image, target, output):
    logits = np.asarray(model(image), dtype=np.float64)
    if output == "logit":
        return logits[target]
    z = np.exp(logits - logits.max())
    return z[target] / z.sum()


def perturbation_auc(
    model, images, maps, targets, steps=20, baseline=0.0, insert=False, output="probability"
):
    """Deletion (or insertion) AUC, one image and one step at a time."""
    out = np.full(len(images), NAN)
    for i, (x, m, y) in enumerate(zip(images, maps, targets, strict=True)):
        flat = m.reshape(-1)
        if not np.isfinite(flat).all():
            continue
        pixels = flat.size
        order = sorted(range(pixels), key=lambda p: -flat[p])  # stable: ties in index order
        stride = math.ceil(pixels / steps)
        counts = [*range(0, pixels, stride), pixels]
        base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape)
        curve = []
        for c in counts:
            top = np.zeros(pixels, dtype=bool)
            top[order[:c]] = True
            top = top.reshape(m.shape)[None]
            xp = np.where(top, x, base) if insert else np.where(top, base, x)
            curve.append(_score(model, xp, y, output))
        fractions = [c / pixels for c in counts]
        out[i] = sum(
            (fractions[j + 1] - fractions[j]) * (curve[j] + curve[j + 1]) / 2
            for j in range(len(counts) - 1)
        )
    return out


def confidence_change(model, images, maps, targets, output="probability"):
    """(drop, increase) per sample: max(0, y − o)/y and 1[o > y] with o the score of x·map."""
    drop, increase = np.full(len(images), NAN), np.full(len(images), NAN)
    for i, (x, m, y) in enumerate(zip(images, maps, targets, strict=True)):
        base, masked = _score(model, x, y, output), _score(model, x * m[None], y, output)
        drop[i] = max(0.0, base - masked) / base if base > 0 else NAN
        increase[i] = float(masked > base)
    return drop, increase


def au_occlusion(model, images, region, targets, offsets, baseline=0.0, output="probability"):
    """AU-occlusion ratio per sample with given cyclic offsets (S, n_random) for the S samples
    whose region is non-empty, in index order (the draws are the seeded generator's)."""
    out = np.full(len(images), NAN)
    usable = [i for i in range(len(images)) if region[i].any()]
    width = region.shape[2]
    for slot, i in enumerate(usable):
        x, y = images[i], targets[i]
        base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape)

        def drop(mask, x=x, y=y, base=base):
            return _score(model, x, y, output) - _score(model, np.where(mask, base, x), y, output)

        random = [
            drop(np.roll(region[i], divmod(int(o), width), axis=(0, 1))) for o in offsets[slot]
        ]
        if np.mean(random) > 0:
            out[i] = drop(region[i]) / np.mean(random)
    return out
