"""IoU/Dice at fixed, Otsu and best thresholds, pixel AP and the dataset-level PxAP."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aubench.metrics import PxAP, dice, iou, otsu_thresholds, pixel_ap
from tests import metrics_reference as ref

# a 1×4 map; the AU region is pixels 0 and 2 (heatmap ≥ 0.5)
MAP = torch.tensor([[[0.9, 0.6, 0.4, 0.1]]])
HEAT = torch.tensor([[[1.0, 0.2, 0.7, 0.0]]])


def test_golden_fixed_threshold():
    # P = {m ≥ .5} = {0, 1}, G = {0, 2}: |P ∩ G| = 1, |P ∪ G| = 3
    assert iou(MAP, HEAT).item() == pytest.approx(1 / 3)
    assert dice(MAP, HEAT).item() == pytest.approx(2 * 1 / (2 + 2))
    # at 0.3: P = {0, 1, 2}: ∩ = 2, ∪ = 3
    assert iou(MAP, HEAT, threshold=0.3).item() == pytest.approx(2 / 3)
    # G = {h ≥ 0.8} = {0}: P = {0, 1} → 1/2
    assert iou(MAP, HEAT, mask_threshold=0.8).item() == pytest.approx(1 / 2)


def test_golden_best_threshold():
    # levels 10: P(τ) = all 4 (τ ≤ .1): IoU 2/4, Dice 4/6; {0,1,2} (.1 < τ ≤ .4): 2/3, 4/5;
    # {0,1} (≤ .6): 1/3, 1/2; {0} (≤ .9): 1/2, 2/3; ∅ (τ = 1): 0, 0 → best 2/3 and 4/5
    assert iou(MAP, HEAT, threshold="best", levels=10).item() == pytest.approx(2 / 3)
    assert dice(MAP, HEAT, threshold="best", levels=10).item() == pytest.approx(4 / 5)


def test_golden_otsu():
    # two values, 0 and 1: every split between them has the same between-class variance; the
    # first is after bin 0, so the threshold is bin 0's centre, 1/512, and P = the ones
    m = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]])
    h = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0, 1.0]]])
    assert otsu_thresholds(m.flatten(1)).item() == 1 / 512
    # P = {2, 3, 4}, G = {2, 3, 5}: ∩ 2, ∪ 4
    assert iou(m, h, threshold="otsu").item() == pytest.approx(1 / 2)
    assert dice(m, h, threshold="otsu").item() == pytest.approx(2 / 3)


def test_golden_pixel_ap():
    # descending: .9 (in) → P 1, R ½; .6 (out) → R unchanged; .4 (in) → P ⅔, R 1; .1 (out):
    # AP = 1·½ + ⅔·½ = 5/6
    assert pixel_ap(MAP, HEAT, levels=10).item() == pytest.approx(5 / 6)
    assert pixel_ap(MAP, HEAT).item() == pytest.approx(5 / 6)  # default 1000 levels


def test_nan_conventions():
    h = torch.zeros(2, 3, 3)
    h[1, 1, 1] = 1.0
    m = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0))
    m[1] = 0.4  # constant map: Otsu is undefined, fixed thresholds are not
    for fn in (iou, dice, pixel_ap):
        assert fn(m, h)[0].isnan()  # empty AU region
    assert iou(m, h, threshold="otsu")[1].isnan()
    assert iou(m, h, threshold=0.3)[1].item() == pytest.approx(1 / 9)
    assert iou(m, h, threshold=0.5)[1].item() == 0.0  # nothing predicted: 0, not NaN


def test_bad_thresholds_raise():
    with pytest.raises(ValueError, match="threshold must be in"):
        iou(MAP, HEAT, threshold=1.5)
    with pytest.raises(ValueError, match="threshold must be in"):
        dice(MAP, HEAT, threshold="median")
    with pytest.raises(ValueError, match="levels must be a positive int"):
        iou(MAP, HEAT, threshold="best", levels=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.5, 0.25, "otsu", "best"])
@pytest.mark.parametrize("is_dice", [False, True])
def test_overlap_agrees_with_numpy_reference(threshold, is_dice, dtype):
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(1), 8, dtype)
    fn = dice if is_dice else iou
    ours = fn(torch.tensor(maps), torch.tensor(heat), torch.tensor(valid), threshold=threshold)
    expected = ref.overlap(maps, heat, valid, threshold=threshold, dice=is_dice)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_ap_agrees_with_numpy_reference(dtype):
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(2), 8, dtype)
    ours = pixel_ap(torch.tensor(maps), torch.tensor(heat), torch.tensor(valid), levels=40)
    np.testing.assert_allclose(ours.numpy(), ref.pixel_ap(maps, heat, valid, levels=40), atol=1e-12)


def test_otsu_matches_scikit_image():
    from skimage import filters

    rng = np.random.default_rng(3)
    maps = (rng.random((20, 300)) ** 3).astype(np.float32)
    ours = otsu_thresholds(torch.tensor(maps)).numpy()
    theirs = np.array([filters.threshold_otsu(m) for m in maps])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)  # scikit-image's bin centres are float32
    for m, a, b in zip(maps, ours, theirs, strict=True):
        assert ((m > a) == (m > b)).all()


# --- PxAP (dataset level) -----------------------------------------------------------------------


def wsolevaluation_pxap(maps, masks, delta):
    """PxAP as wsolevaluation's MaskEvaluator computes it (anchors-and-metrics.md §2.4):
    histograms over the edges [0, δ, …, 1 − δ, 1, 2, 3], reverse cumulative sums, precision
    times the recall increments from the highest threshold down, NaN precisions skipped."""
    edges = np.append(np.arange(0, 1, delta), [1.0, 2.0, 3.0])
    inside = sum(np.histogram(m[g], bins=edges)[0] for m, g in zip(maps, masks, strict=True))
    outside = sum(np.histogram(m[~g], bins=edges)[0] for m, g in zip(maps, masks, strict=True))
    tp, fp = inside[::-1].cumsum(), outside[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / inside.sum()
    terms = precision[1:] * np.diff(recall)
    return terms[~np.isnan(precision[1:])].sum()


def test_pxap_equals_wsolevaluation():
    rng = np.random.default_rng(4)
    maps, heat, _ = ref.nasty_batch(rng, 6, np.float64)
    keep = [0, 1, 5, 6, 10, 11, 12, 13, 14]  # finite maps in [0, 1] (wsolevaluation's checker)
    maps, heat = maps[keep] * 0.999 + 5e-4, heat[keep]  # off the bin edges
    metric = PxAP(levels=100)
    metric.update(torch.tensor(maps), torch.tensor(heat))
    expected = wsolevaluation_pxap(maps, heat >= 0.5, 0.01)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-12)


def test_pxap_golden_and_reset():
    metric = PxAP(levels=10)
    metric.update(MAP, HEAT)
    assert metric.compute().item() == pytest.approx(5 / 6)  # one image: its pixel AP
    # a second image whose only region pixel sits below an outside one: .8 (out) > .7 (in).
    # Descending over both: .9 in (P 1, R ⅓) .8 out .7 in (P ⅔, R ⅔) .6 out .4 in (P ⅗, R 1):
    # AP = ⅓ + ⅔·⅓ + ⅗·⅓ = 34/45
    metric.update(torch.tensor([[[0.8, 0.7, 0.0, 0.0]]]), torch.tensor([[[0.0, 1.0, 0.0, 0.0]]]))
    assert metric.compute().item() == pytest.approx(34 / 45)
    assert metric.counts.shape == (12, 2)  # O(levels) state
    metric.reset()
    metric.update(MAP, torch.zeros_like(HEAT))
    assert math.isnan(metric.compute().item())  # no region pixel seen


def test_pxap_agrees_with_reference_and_shards_merge():
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(5), 8)
    t_maps, t_heat, t_valid = torch.tensor(maps), torch.tensor(heat), torch.tensor(valid)
    whole = PxAP(levels=50)
    whole.update(t_maps, t_heat, t_valid)
    expected = ref.pxap(maps, heat, valid, levels=50)
    assert whole.compute().item() == pytest.approx(expected, abs=1e-12)
    shards = [PxAP(levels=50) for _ in range(3)]
    for rank, shard in enumerate(shards):  # what torchrun ranks see: disjoint slices
        shard.update(t_maps[rank::3], t_heat[rank::3], t_valid[rank::3])
    for shard in shards[1:]:
        shards[0].merge_state(shard)  # the same "sum" reduction as the distributed sync
    assert shards[0].compute().item() == pytest.approx(expected, abs=1e-12)


# --- properties ---------------------------------------------------------------------------------

unit_maps = arrays(
    np.float32,
    (2, 3, 4),
    elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1, width=32)),
)


@settings(max_examples=25, deadline=None)
@given(unit_maps, unit_maps)
def test_overlap_properties(m, h):
    m, h = torch.tensor(m), torch.tensor(h)
    for threshold in (0.5, "otsu", "best"):
        a, d = iou(m, h, threshold=threshold), dice(m, h, threshold=threshold)
        torch.testing.assert_close(d, 2 * a / (1 + a), equal_nan=True)  # Dice = 2 IoU / (1 + IoU)
        defined = ~a.isnan()
        assert ((a[defined] >= 0) & (a[defined] <= d[defined]) & (d[defined] <= 1)).all()
    # τ = 0.5 is level 2 of the 4-level grid (m·4 ≥ 2 ⇔ m ≥ 0.5 exactly): best ≥ fixed
    best, fixed = iou(m, h, threshold="best", levels=4), iou(m, h, threshold=0.5)
    defined = ~fixed.isnan()
    assert (best[defined] >= fixed[defined]).all()
    ap = pixel_ap(m, h, levels=20)
    assert ((ap[~ap.isnan()] >= 0) & (ap[~ap.isnan()] <= 1 + 1e-12)).all()
