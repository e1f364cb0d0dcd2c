"""Pointing game, energy pointing game, relevance mass/rank accuracy, top-k and ROC-AUC: golden
values with ties, the tie rules, NaN conventions, the NumPy reference, sklearn and Quantus."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aubench.metrics import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roc_auc,
    top_k_intersection,
)
from tests import metrics_reference as ref

# six pixels: .9 in, three tied .5 (one in), .1 in, 0 out; the AU region is {0, 1, 4}
TIED = torch.tensor([[[0.9, 0.5, 0.5, 0.5, 0.1, 0.0]]])
TIED_HEAT = torch.tensor([[[1.0, 0.8, 0.0, 0.3, 0.6, 0.0]]])


def test_golden_rank_metrics_with_ties():
    # RRA: K = |G| = 3: .9 (in) + 2 of the 3 tied .5s, of which 1 is in → 1 + 2·⅓ = 5/3 → 5/9
    assert relevance_rank_accuracy(TIED, TIED_HEAT).item() == pytest.approx(5 / 9)
    # top-k at fraction ½: k = ⌈1.5⌉ = 2: .9 + 1 of the tied .5s → (1 + ⅓) / 2 = 2/3
    assert top_k_intersection(TIED, TIED_HEAT).item() == pytest.approx(2 / 3)
    assert top_k_intersection(TIED, TIED_HEAT, k=1).item() == 1.0
    # fraction .3 of |G| = 10 is k = 3 exactly (not ⌈3.0000000000000004⌉ = 4): of 20 ascending
    # pixels, G = the top 3 and the bottom 7; the top 3 are inside → 1 (k = 4 would give ¾)
    ramp = torch.arange(20.0)[None, None]
    region = (ramp >= 17) | (ramp < 7)
    assert top_k_intersection(ramp, region, fraction=0.3).item() == 1.0
    assert top_k_intersection(ramp, region, k=4).item() == 0.75
    # k = 5: .9, the three .5s and .1: 3 in → 3/5 (no tie at the cut)
    assert top_k_intersection(TIED, TIED_HEAT, k=5).item() == pytest.approx(3 / 5)
    # AUC: inside {.9, .5, .1} vs outside {.5, .5, 0}: .9 wins 3; .5 ties 2 (½ each) and wins 1
    # → 2; .1 wins 1 → 6 of 9 pairs
    assert roc_auc(TIED, TIED_HEAT).item() == pytest.approx(2 / 3)


def test_golden_pointing_game_tie_rules():
    m = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # two tied maxima
    h = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # one of them inside
    assert pointing_game(m, h).item() == 0.5  # "share": |M ∩ G| / |M|
    assert pointing_game(m, h, ties="any").item() == 1.0  # Quantus
    assert pointing_game(m, h, ties="all").item() == 0.0
    constant = torch.full((1, 2, 2), 0.3)  # a constant map scores chance, |G| / N
    assert pointing_game(constant, h).item() == 0.25
    assert pointing_game(constant, h, ties="any").item() == 1.0  # why "any" is not the default


def test_golden_mass_metrics():
    m = torch.tensor([[[0.5, 0.3], [0.2, 0.0]]])
    h = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert relevance_mass_accuracy(m, h).item() == pytest.approx(0.8)  # (.5 + .3) / 1
    signed = torch.tensor([[[0.5, -0.5], [0.25, 0.25]]])
    h = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # RMA keeps the sign: .5 / (.5 − .5 + .25 + .25) = 1; energy clips: .5 / (.5 + .25 + .25)
    assert relevance_mass_accuracy(signed, h).item() == pytest.approx(1.0)
    assert energy_pointing_game(signed, h).item() == pytest.approx(0.5)


def test_empty_and_full_regions():
    m = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0))
    h = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])
    for fn in (pointing_game, relevance_rank_accuracy, top_k_intersection, roc_auc):
        assert fn(m, h)[0].isnan(), fn.__name__  # Quantus's pointing game says True here
    assert roc_auc(m, h)[1].isnan()  # no outside pixel: AUC undefined
    assert relevance_rank_accuracy(m, h)[1].item() == 1.0
    zero = torch.zeros(1, 3, 3)
    assert relevance_mass_accuracy(zero, h[1:]).isnan().all()  # 0 / 0


def test_pro_rata_ties_are_the_expectation_over_tie_breaking():
    # brute force: every ordering of the tied pixels, equally likely
    rng = np.random.default_rng(1)
    for _ in range(5):
        m = rng.integers(0, 3, 7).astype(np.float64)
        region = rng.random(7) > 0.5
        region[0] = True
        values = []
        for perm in itertools.permutations(range(7)):
            rank = np.lexsort((np.array(perm), -m))  # descending value, ties by the permutation
            values.append(region[rank[: region.sum()]].mean())
        ours = relevance_rank_accuracy(
            torch.tensor(m)[None, None], torch.tensor(region)[None, None]
        )
        assert ours.item() == pytest.approx(np.mean(values))


METRICS = {
    "pointing_game": pointing_game,
    "energy_pointing_game": energy_pointing_game,
    "relevance_mass_accuracy": relevance_mass_accuracy,
    "relevance_rank_accuracy": relevance_rank_accuracy,
    "top_k_intersection": top_k_intersection,
    "roc_auc": roc_auc,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", METRICS)
def test_agrees_with_numpy_reference(name, dtype):
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(2), 10, dtype)
    t = torch.tensor(maps), torch.tensor(heat), torch.tensor(valid)
    tol = 1e-6 if dtype == np.float32 else 1e-12  # relative too: row 9's signed mass ≈ −11
    expected = getattr(ref, name)(maps, heat, valid)
    np.testing.assert_allclose(METRICS[name](*t).numpy(), expected, atol=tol, rtol=tol)
    if name == "pointing_game":
        for ties in ("any", "all"):
            ours = pointing_game(*t, ties=ties).numpy()
            np.testing.assert_array_equal(ours, ref.pointing_game(maps, heat, valid, ties=ties))
    if name == "top_k_intersection":
        ours = top_k_intersection(*t, k=17, mask_threshold=0.3).numpy()
        expected = ref.top_k_intersection(maps, heat, valid, k=17, mask_threshold=0.3)
        np.testing.assert_allclose(ours, expected, atol=tol)


def test_roc_auc_equals_sklearn():
    from sklearn import metrics as sk_metrics

    rng = np.random.default_rng(3)
    maps = np.round(rng.random((4, 10, 10)) * 6) / 6  # heavy ties
    heat = rng.random((4, 10, 10))
    expected = [
        sk_metrics.roc_auc_score(h.ravel() >= 0.5, m.ravel())
        for m, h in zip(maps, heat, strict=True)
    ]
    np.testing.assert_allclose(
        roc_auc(torch.tensor(maps), torch.tensor(heat)).numpy(), expected, atol=1e-12
    )


# --- properties ---------------------------------------------------------------------------------

unit_maps = arrays(
    np.float64,
    (2, 3, 4),
    elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1, width=32)),
)


@settings(max_examples=25, deadline=None)
@given(unit_maps, unit_maps, st.floats(1e-3, 1e3))
def test_bounds_and_scale_invariance(m, h, a):
    m, h = torch.tensor(m), torch.tensor(h)
    for name, fn in METRICS.items():
        scores = fn(m, h)
        defined = ~scores.isnan()
        assert ((scores[defined] >= 0) & (scores[defined] <= 1 + 1e-12)).all(), name
        torch.testing.assert_close(fn(a * m, h), scores, equal_nan=True, msg=name)
    torch.testing.assert_close(
        top_k_intersection(m, h, fraction=1.0), relevance_rank_accuracy(m, h), equal_nan=True
    )
    torch.testing.assert_close(roc_auc(-m, h), 1 - roc_auc(m, h), equal_nan=True)
