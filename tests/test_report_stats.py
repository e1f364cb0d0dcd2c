"""The report's statistics: exact sign-flip p-values counted by hand, Holm, seed spread, and
the pairing of per-image scores."""

import math

import numpy as np
import pandas as pd
import pytest

from aubench.report import stats
from aubench.report.stats import (
    holm,
    paired_tests,
    seed_summary,
    sign_flip_test,
    significance_mark,
)


def test_sign_flip_exact_p_values_counted_by_hand():
    # all six differences negative: only the all-minus and all-plus sign vectors reach |Σ| =
    # 2.1, so p = 2 / 2^6
    assert sign_flip_test([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6]) == 2 / 64
    # |d| = 1,2,3,4,5,1 with Σd = 14: flipping a subset S gives Σ = 16 − 2·Σ_S|d|, and |Σ| ≥ 14
    # iff Σ_S ≤ 1 or Σ_S ≥ 15: S ∈ {∅, {1}, {1'}} and their complements, 6 of 64
    assert sign_flip_test([1, 2, 3, 4, 5, -1]) == 6 / 64
    # eight same-sign differences: 2 / 256 < 0.01
    assert sign_flip_test(np.linspace(0.1, 0.8, 8)) == 2 / 256


def test_sign_flip_edge_cases():
    assert sign_flip_test([0.0, 0.0, 0.0]) == 1.0  # no difference at all
    assert math.isnan(sign_flip_test([]))
    with pytest.raises(ValueError, match="finite"):
        sign_flip_test([0.1, float("nan")])


def test_sign_flip_monte_carlo_beyond_the_exact_limit():
    # 30 same-sign pairs: a random sign vector ties only with probability 2^-29, so no hit and
    # p = (0 + 1) / (resamples + 1)
    assert sign_flip_test(np.full(30, 0.5), resamples=999) == 1 / 1000
    # symmetric differences: the observed sum is 0, every resample reaches it
    assert sign_flip_test(np.tile([1.0, -1.0], 20), resamples=500) == 1.0
    with pytest.raises(ValueError, match="resamples"):
        sign_flip_test(np.ones(20), resamples=0)


def test_monte_carlo_agrees_with_the_exact_enumeration(monkeypatch):
    d = np.random.default_rng(3).normal(0.1, 0.3, 14)
    exact = sign_flip_test(d)
    monkeypatch.setattr(stats, "EXACT_MAX_PAIRS", 0)
    sampled = sign_flip_test(d, resamples=20_000)
    assert 0.01 < exact < 0.9
    assert abs(sampled - exact) < 0.015  # binomial sd ≤ 0.0036 at 20,000 resamples
    assert sign_flip_test(d, resamples=20_000) == sampled  # seeded: reproducible


def test_holm_step_down_with_untested_entries():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06
    adjusted = holm([0.01, 0.04, np.nan, 0.03])
    np.testing.assert_allclose(adjusted[[0, 1, 3]], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[2])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_significance_marks():
    assert [significance_mark(p) for p in (0.0078, 0.01, 0.049, 0.05, float("nan"))] == [
        "**",
        "*",
        "*",
        "",
        "",
    ]


def test_seed_summary_mean_and_spread():
    rows = pd.DataFrame(
        {
            "method": ["cam", "cam", "gc"],
            "seed": [0, 1, 0],
            "value": [0.5, 0.7, 0.4],
            "ci_low": [0.4, 0.6, 0.3],
            "ci_high": [0.6, 0.8, 0.5],
        }
    )
    out = seed_summary(rows, ["method"]).set_index("method")
    assert out.loc["cam", "value"] == pytest.approx(0.6)
    assert out.loc["cam", "spread"] == pytest.approx(math.sqrt(0.02))  # sd of 0.5, 0.7
    assert (out.loc["cam", "ci_low"], out.loc["cam", "n_seeds"]) == (pytest.approx(0.5), 2)
    assert math.isnan(out.loc["gc", "spread"])


def _per_image(variant, values, preds):
    rows = [
        ("m", variant, seed, "test", f"i{i}", 1, "cam", "l4", "cosine", v, "valid")
        for seed, vs in values.items()
        for i, v in enumerate(vs)
    ]
    rows += [
        ("m", variant, 0, "test", f"i{i}", 1, "classifier", "", "pred", float(p), "valid")
        for i, p in enumerate(preds)
    ]
    columns = ["model", "variant", "seed", "split", "id", "label", "method", "layer", "metric"]
    return pd.DataFrame(rows, columns=[*columns, "value", "reason"])


def test_paired_tests_pair_by_seed_and_id_and_test_accuracy():
    base = _per_image("base", {0: [0.1, 0.2, np.nan], 1: [0.3, 0.3, 0.3]}, [1, 0, 0, 0])
    guided = _per_image("g", {0: [0.2, 0.4, 0.9], 1: [0.4, 0.35, 0.1]}, [1, 1, 1, 1])
    out = paired_tests(pd.concat([base, guided]), "base", ["g"]).set_index("metric")
    # image i2 of seed 0 is NaN in the baseline: 5 pairs, differences 0.1, 0.2, 0.1, 0.05, −0.2
    assert out.loc["cosine", "n"] == 5
    assert out.loc["cosine", "mean_diff"] == pytest.approx(0.05)
    assert out.loc["cosine", "p"] == sign_flip_test([0.1, 0.2, 0.1, 0.05, -0.2])
    # accuracy from predictions vs label 1: baseline right once, guided four times
    assert out.loc["accuracy", "mean_diff"] == pytest.approx(75.0)
    assert out.loc["accuracy", "p"] == 2 / 8  # three +100 differences and one 0
    assert out.loc["accuracy", ["model", "variant", "method", "layer"]].tolist() == [
        "m",
        "g",
        "classifier",
        "",
    ]
