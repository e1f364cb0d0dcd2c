"""Aggregation: per-class and macro means, the image-level mean, excluded counts, bootstrap CIs,
and the streaming accumulators across shards (in-process merges and a real 2-process run)."""

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aubench.metrics import PxAP, ScoreAggregator, aggregate, aggregate_many, cosine

SCORES = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, math.nan, 7.0])
LABELS = torch.tensor([1, 1, 2, 2, 0, 3, 3, 0])
VALID = torch.tensor([True, True, True, True, False, True, True, False])
REASONS = torch.tensor([0, 0, 0, 0, 1, 0, 0, 2])


def test_golden_means_and_exclusions():
    result = aggregate(SCORES, LABELS, VALID, REASONS, reason_names={1: "no_aus"}, n_boot=0)
    # class 0 (neutral): both invalid; class 1: (1 + 2)/2; class 2: (3 + 4)/2; class 3: 6 (the
    # NaN is undefined, excluded) → macro over 1, 2, 3 = (1.5 + 3.5 + 6)/3 = 11/3
    torch.testing.assert_close(
        result.per_class,
        torch.tensor([math.nan, 1.5, 3.5, 6.0], dtype=torch.float64),
        equal_nan=True,
    )
    assert result.per_class_n.tolist() == [0, 2, 2, 1]
    assert result.macro == pytest.approx(11 / 3)
    assert result.macro_classes == (1, 2, 3)
    assert result.image_mean == pytest.approx((1 + 2 + 3 + 4 + 6) / 5)
    assert result.n_scored == 5
    assert result.excluded == {"no_aus": 1, "reason_2": 1, "undefined": 1}
    assert math.isnan(result.macro_ci[0]) and result.per_class_ci.isnan().all()


def test_paper_fill_and_neutral_options():
    # the paper turns a NaN cosine into 0 and keeps the sample: class 3 = (6 + 0)/2
    filled = aggregate(SCORES, LABELS, VALID, fill_undefined=0.0, n_boot=0)
    assert filled.per_class[3].item() == 3.0 and "undefined" not in filled.excluded
    assert filled.excluded == {"invalid": 2}
    everyone = aggregate(SCORES, LABELS, neutral=None, n_boot=0)  # all valid, class 0 counted
    assert everyone.macro_classes == (0, 1, 2, 3)
    assert everyone.per_class[0].item() == 6.0
    named = aggregate(SCORES, LABELS, VALID, REASONS, reason_names=["valid", "no_aus"], n_boot=0)
    assert named.excluded == {"no_aus": 1, "reason_2": 1, "undefined": 1}


def test_empty_class_option_averages_the_reference_minus_one_into_the_macro():
    # 5 classes: class 4 has no sample at all → −1, averaged in; the reference code's convention
    result = aggregate(SCORES, LABELS, VALID, num_classes=5, empty_class=-1.0, n_boot=0)
    torch.testing.assert_close(
        result.per_class,
        torch.tensor([math.nan, 1.5, 3.5, 6.0, -1.0], dtype=torch.float64),
        equal_nan=True,
    )
    assert result.per_class_n.tolist() == [0, 2, 2, 1, 0]
    assert result.macro_classes == (1, 2, 3, 4) and result.empty_classes == (4,)
    assert result.macro == (1.5 + 3.5 + 6.0 - 1.0) / 4 == 2.5
    assert result.image_mean == pytest.approx(16 / 5)  # the image-level mean is untouched
    # undefined → 0 first (the paper): class 3 = (6 + 0)/2, so (1.5 + 3.5 + 3 − 1)/4
    paper = aggregate(
        SCORES, LABELS, VALID, num_classes=5, fill_undefined=0.0, empty_class=-1.0, n_boot=0
    )
    assert paper.macro == 1.75 and paper.empty_classes == (4,)
    # off (the default): the empty class is left out of the macro, as before
    plain = aggregate(SCORES, LABELS, VALID, num_classes=5, n_boot=0)
    assert plain.macro_classes == (1, 2, 3) and plain.empty_classes == ()
    assert plain.macro == pytest.approx(11 / 3) and math.isnan(plain.per_class[4])
    # a class whose only valid sample is undefined is empty unless undefined scores are filled
    undefined = torch.tensor([1.0, 2.0, math.nan]), torch.tensor([1, 1, 2])
    assert aggregate(*undefined, empty_class=-1.0, n_boot=0).macro == (1.5 - 1) / 2
    filled = aggregate(*undefined, fill_undefined=0.0, empty_class=-1.0, n_boot=0)
    assert filled.macro == 0.75 and filled.empty_classes == ()
    # the neutral class is never filled, nor averaged
    assert aggregate(*undefined, num_classes=3, empty_class=-1.0, n_boot=0).per_class[0].isnan()


def test_empty_class_bootstrap_shifts_the_macro_interval_affinely():
    # every replicate's macro with the empty class is (K·m − 1)/(K + 1) of the K classes' m:
    # an increasing affine map, so the percentile bounds map the same way
    rng = np.random.default_rng(1)
    labels = torch.tensor(np.repeat([1, 2, 3], [40, 30, 20]))
    scores = torch.tensor(rng.random(90))
    without = aggregate(scores, labels, num_classes=5, n_boot=500, seed=2)
    minus_one = aggregate(scores, labels, num_classes=5, empty_class=-1.0, n_boot=500, seed=2)

    assert minus_one.empty_classes == (4,) and minus_one.macro_classes == (1, 2, 3, 4)
    assert minus_one.macro == pytest.approx((3 * without.macro - 1) / 4, abs=1e-15)
    expected = [(3 * bound - 1) / 4 for bound in without.macro_ci]
    assert list(minus_one.macro_ci) == pytest.approx(expected, abs=1e-12)
    assert minus_one.image_ci == without.image_ci
    torch.testing.assert_close(minus_one.per_class_ci, without.per_class_ci, equal_nan=True)
    assert minus_one.per_class_ci[4].isnan().all()  # no interval for a filled class
    # aggregate_many: each row its own empty classes (row 2 has no scored sample of class 3)
    rows = torch.stack([scores, torch.where(labels == 3, math.nan, scores)])
    first, second = aggregate_many(rows, labels, num_classes=5, empty_class=-1.0, n_boot=50)
    assert (first.empty_classes, second.empty_classes) == ((4,), (3, 4))
    assert second.macro == pytest.approx((scores[:40].mean() + scores[40:70].mean() - 2) / 4)


def test_nothing_scored():
    result = aggregate(torch.full((3,), math.nan), torch.tensor([1, 2, 2]), num_classes=7)
    assert result.per_class.shape == (7,) and result.per_class.isnan().all()
    assert math.isnan(result.macro) and math.isnan(result.image_mean)
    assert math.isnan(result.image_ci[0]) and result.excluded == {"undefined": 3}


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        aggregate(SCORES, LABELS, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must have shape \(8,\), got \(7,\)"):
        aggregate(SCORES, LABELS[:7])
    with pytest.raises(ValueError, match="labels must hold integers"):
        aggregate(SCORES, LABELS.float())
    with pytest.raises(ValueError, match="confidence must be in"):
        aggregate(SCORES, LABELS, confidence=95)


def test_bootstrap_is_stratified_seeded_and_calibrated():
    rng = np.random.default_rng(0)
    labels = torch.tensor(np.repeat([1, 2, 3], [400, 300, 1]))
    scores = torch.tensor(np.concatenate([rng.normal(0, 1, 400), 10 + rng.random(300), [42.0]]))
    result = aggregate(scores, labels, n_boot=2000, seed=3)
    again = aggregate(scores, labels, n_boot=2000, seed=3)  # seeded
    assert (again.macro_ci, again.image_ci) == (result.macro_ci, result.image_ci)
    torch.testing.assert_close(
        again.per_class_ci, result.per_class_ci, equal_nan=True, atol=0, rtol=0
    )
    # stratified: a class's replicates only ever draw its own samples
    low, high = result.per_class_ci[2].tolist()
    assert 10 < low < high < 11
    assert result.per_class_ci[3].tolist() == [42.0, 42.0]  # one sample: no spread
    # class 1 is N(0, 1) with n = 400: the 95% CI half-width is about 1.96/√400 = 0.098
    low, high = result.per_class_ci[1].tolist()
    assert (high - low) / 2 == pytest.approx(1.96 / 20, rel=0.15)
    assert low < result.per_class[1].item() < high
    # the macro mean's spread comes from classes 1 and 2 only (class 3 is fixed):
    # sd = √(1/400 + (1/12)/300) / 3
    sd = math.sqrt(1 / 400 + 1 / 12 / 300) / 3
    assert (result.macro_ci[1] - result.macro_ci[0]) / 2 == pytest.approx(1.96 * sd, rel=0.15)
    assert result.image_ci[0] < result.image_mean < result.image_ci[1]


# --- streaming ----------------------------------------------------------------------------------


def batches(seed=0, n=4):
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        maps = torch.rand(5, 6, 7, generator=gen)
        heat = torch.rand(5, 6, 7, generator=gen)
        labels = torch.randint(0, 7, (5,), generator=gen)
        valid = labels != 0
        if i == 1:
            maps[2] = 0.5  # constant map: undefined cosine
        yield maps, heat, labels, valid, torch.where(valid, 0, 1)


def test_score_aggregator_equals_aggregate_and_merges():
    parts = list(batches())
    whole = ScoreAggregator("cosine", aggregate_options={"num_classes": 7, "n_boot": 200})
    shards = [
        ScoreAggregator(cosine, aggregate_options={"num_classes": 7, "n_boot": 200})
        for _ in range(2)
    ]
    for i, (maps, heat, labels, valid, reasons) in enumerate(parts):
        whole.update(maps, heat, labels, valid, reasons)
        shards[i % 2].update(maps, heat, labels, valid, reasons)
    expected = aggregate(
        torch.cat([cosine(m, h, v) for m, h, _, v, _ in parts]),
        torch.cat([p[2] for p in parts]),
        torch.cat([p[3] for p in parts]),
        torch.cat([p[4] for p in parts]),
        num_classes=7,
        n_boot=200,
    )
    result = whole.compute()
    assert result.macro == pytest.approx(expected.macro)
    assert result.excluded == expected.excluded and result.excluded["undefined"] == 1
    shards[0].merge_state(shards[1])  # the "cat" reduction the distributed sync applies
    merged = shards[0].compute()
    assert merged.macro == pytest.approx(expected.macro)  # order differs, means do not
    assert merged.per_class_n.tolist() == expected.per_class_n.tolist()
    whole.reset()
    assert whole.scores == []
    with pytest.raises(ValueError, match="needs a map metric"):
        ScoreAggregator("deletion_auc")


def _sharded_worker(rank, world, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        pxap, scores = PxAP(levels=50), ScoreAggregator("roc_auc", aggregate_options={"n_boot": 0})
        for i, (maps, heat, labels, valid, reasons) in enumerate(batches()):
            if i % world == rank:
                pxap.update(maps, heat, valid)
                scores.update(maps, heat, labels, valid, reasons)
        result = (pxap.compute().item(), scores.compute().macro, scores.compute().n_scored)
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_run_equals_one_process(tmp_path):
    pxap, scores = PxAP(levels=50), ScoreAggregator("roc_auc", aggregate_options={"n_boot": 0})
    for maps, heat, labels, valid, reasons in batches():
        pxap.update(maps, heat, valid)
        scores.update(maps, heat, labels, valid, reasons)
    expected = (pxap.compute().item(), scores.compute().macro, scores.compute().n_scored)
    out = tmp_path / "result"
    mp.spawn(_sharded_worker, args=(2, tmp_path / "store", out), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert got[0] == pytest.approx(expected[0], abs=1e-12)
        assert got[1] == pytest.approx(expected[1], abs=1e-12)
        assert got[2] == expected[2]
