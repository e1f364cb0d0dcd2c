"""Cosine (the paper's CAM-COS/ATT-COS), Pearson and Spearman: golden values, conventions,
agreement with the NumPy reference, and invariance properties."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aubench.metrics import cosine, pearson, spearman
from tests import metrics_reference as ref

CORRELATIONS = {"cosine": cosine, "pearson": pearson, "spearman": spearman}


def test_golden_values_on_a_2x2_map():
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    h = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # cosine: <m, h> = 1, |m| = 1, |h| = √2 → 1/√2
    assert cosine(m, h).item() == pytest.approx(1 / math.sqrt(2), abs=1e-7)
    # Pearson: m − 0.25 = (.75, −.25, −.25, −.25), h − 0.5 = (.5, .5, −.5, −.5);
    # Σ products = .375 − .125 + .125 + .125 = .5; Σ m'² = .75, Σ h'² = 1 → .5/√.75 = 1/√3
    assert pearson(m, h).item() == pytest.approx(1 / math.sqrt(3), abs=1e-7)
    # Spearman: ranks of m = (4, 2, 2, 2) (three zeros share ranks 1..3), of h = (3.5, 3.5, 1.5,
    # 1.5); centred (1.5, −.5, −.5, −.5) and (1, 1, −1, −1): 2 / √(3 · 4) = 1/√3
    assert spearman(m, h).item() == pytest.approx(1 / math.sqrt(3), abs=1e-7)


def test_identical_and_opposite_maps():
    m = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
    for fn in CORRELATIONS.values():
        torch.testing.assert_close(fn(m, m), torch.ones(3))
    torch.testing.assert_close(pearson(m, 1 - m), -torch.ones(3))
    torch.testing.assert_close(spearman(m, 1 - m), -torch.ones(3))


@pytest.mark.parametrize("name", CORRELATIONS)
def test_constant_maps_and_invalid_samples_are_nan(name):
    fn = CORRELATIONS[name]
    h = torch.rand(5, 4, 4, generator=torch.Generator().manual_seed(1))
    m = h.clone()
    m[0] = 0.0  # all-zero map (a constant map after min-max): 0/0
    m[1] = 0.7  # constant map: no spatial information
    h[2] = 0.3  # constant heatmap
    m[3, 0, 0] = math.nan
    scores = fn(m, h, torch.tensor([True, True, True, True, False]))
    assert scores.isnan().all()


def test_cosine_equals_the_papers_cosine_similarity():
    m = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(2))
    h = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(3))
    expected = F.cosine_similarity(m.flatten(1), h.flatten(1), dim=1, eps=1e-8)
    torch.testing.assert_close(cosine(m, h), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CORRELATIONS)
def test_agrees_with_numpy_reference(name, dtype):
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(4), 10, dtype)
    ours = CORRELATIONS[name](torch.tensor(maps), torch.tensor(heat), torch.tensor(valid))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours.numpy(), getattr(ref, name)(maps, heat, valid), atol=tol)


def test_spearman_equals_scipy():
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(5)
    m = np.round(rng.random((3, 8, 8)) * 5) / 5  # ties
    h = rng.random((3, 8, 8))
    expected = [scipy_stats.spearmanr(m[i].ravel(), h[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(spearman(torch.tensor(m), torch.tensor(h)).numpy(), expected)


# --- properties ---------------------------------------------------------------------------------

unit_maps = arrays(
    np.float64,
    (2, 4, 5),
    # no subnormals: a map of zeros and one 1e-45 is constant once shifted (a·m + b rounds it
    # away), so the property cannot hold there (hypothesis found it)
    elements=st.one_of(
        st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1, width=32, allow_subnormal=False)
    ),
)
grid_maps = arrays(np.float64, (2, 4, 5), elements=st.integers(0, 64).map(lambda i: i / 64))
scales = st.floats(1e-3, 1e3)


@settings(max_examples=40, deadline=None)
@given(unit_maps, unit_maps, scales)
def test_cosine_is_scale_invariant(m, h, a):
    m, h = torch.tensor(m), torch.tensor(h)
    torch.testing.assert_close(cosine(a * m, h), cosine(m, h), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(unit_maps, unit_maps, scales, st.floats(-10, 10))
def test_pearson_is_affine_invariant(m, h, a, b):
    m, h = torch.tensor(m), torch.tensor(h)
    torch.testing.assert_close(
        pearson(a * m + b, h), pearson(m, h), equal_nan=True, atol=1e-6, rtol=0
    )


@settings(max_examples=40, deadline=None)
@given(grid_maps, unit_maps)
def test_spearman_is_invariant_to_increasing_transforms(m, h):
    # on a 1/64 grid, so that the transform keeps distinct values distinct in floating point
    m, h = torch.tensor(m), torch.tensor(h)
    torch.testing.assert_close(spearman(torch.exp(3 * m) - 2, h), spearman(m, h), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(unit_maps, unit_maps)
def test_bounds_and_symmetry(m, h):
    m, h = torch.tensor(m), torch.tensor(h)
    for fn in CORRELATIONS.values():
        scores = fn(m, h)
        finite = scores[~scores.isnan()]
        assert ((finite >= -1) & (finite <= 1)).all()
        torch.testing.assert_close(scores, fn(h, m), equal_nan=True)
    finite = cosine(m, h)
    assert (finite[~finite.isnan()] >= 0).all()  # non-negative maps
