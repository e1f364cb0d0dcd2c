"""SIM, KL and NSS (saliency-benchmark metrics) and the per-AU energy breakdown."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aubench.metrics import kl, nss, per_au_energy, sim
from tests import metrics_reference as ref

SALIENCY = {"sim": sim, "kl": kl, "nss": nss}


def test_golden_values():
    m = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # P = (½, 0, 0, ½)
    h = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # Q = (½, ½, 0, 0)
    assert sim(m, h).item() == pytest.approx(0.5)  # min(½, ½) only at pixel 0
    # KL with P = (½, ½), Q = (¾, ¼): ¾ ln(1.5) + ¼ ln(0.5) = 0.1308120...
    p = torch.tensor([[[0.5, 0.5]]])
    q = torch.tensor([[[0.75, 0.25]]])
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl(p, q).item() == pytest.approx(expected, abs=1e-7)
    # NSS: m = (1, 0, 0, 0): mean ¼, population std √(3/16); at pixel 0: ¾ / √(3/16) = √3
    one = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert nss(one, one).item() == pytest.approx(math.sqrt(3))


def test_identical_distributions():
    m = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sim(m, m), torch.ones(3))
    torch.testing.assert_close(sim(4 * m, m), torch.ones(3))  # distributions: scale-free
    assert kl(m, m).abs().max() < 1e-6


def test_signed_maps_are_shifted_and_zero_maps_are_nan():
    m = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]]])
    h = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]])
    # (−1, 1) shifted by 1 → (0, 2) → P = (0, 1) = Q
    torch.testing.assert_close(sim(m, h), torch.tensor([1.0, math.nan]), equal_nan=True)
    assert kl(m, h)[1].isnan()
    assert nss(m, h)[1].isnan()  # constant map
    assert nss(m, torch.zeros_like(h))[0].isnan()  # empty AU region


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", SALIENCY)
def test_agrees_with_numpy_reference(name, dtype):
    maps, heat, valid = ref.nasty_batch(np.random.default_rng(1), 10, dtype)
    ours = SALIENCY[name](torch.tensor(maps), torch.tensor(heat), torch.tensor(valid))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    expected = getattr(ref, name)(maps, heat, valid)
    np.testing.assert_allclose(ours.numpy(), expected, atol=tol, rtol=tol)


unit_maps = arrays(
    np.float64,
    (2, 3, 4),
    elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1, width=32)),
)


grid_maps = arrays(np.float64, (2, 3, 4), elements=st.integers(0, 64).map(lambda i: i / 64))


@settings(max_examples=25, deadline=None)
@given(unit_maps, unit_maps, st.floats(1e-2, 1e2))
def test_bounds_and_scale_invariance(m, h, a):
    m, h = torch.tensor(m), torch.tensor(h)
    s, d = sim(m, h), kl(m, h)
    assert ((s[~s.isnan()] >= 0) & (s[~s.isnan()] <= 1 + 1e-12)).all()
    assert (d[~d.isnan()] >= -1e-9).all()
    torch.testing.assert_close(sim(a * m, h), s, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(grid_maps, unit_maps, st.integers(-8, 8))
def test_nss_is_affine_invariant(m, h, shift):
    # a 1/64 grid, a power-of-two scale and an integer shift: the transform is exact
    m, h = torch.tensor(m), torch.tensor(h)
    torch.testing.assert_close(nss(4 * m + shift, h), nss(m, h), equal_nan=True)


# --- per-AU energy ------------------------------------------------------------------------------


def test_per_au_energy_golden():
    m = torch.tensor([[[0.5, 0.25], [0.25, 0.0]]])  # energy 1
    regions = torch.zeros(1, 3, 2, 2)
    regions[0, 0, 0, :] = 1.0  # AU a: top row → .75
    regions[0, 1, :, 0] = 0.9  # AU b: left column → .75 (regions overlap)
    regions[0, 2] = 0.2  # AU c: below the threshold everywhere → absent → NaN
    expected = torch.tensor([[0.75, 0.75, math.nan]])
    torch.testing.assert_close(per_au_energy(m, regions), expected, equal_nan=True)


def test_per_au_energy_agrees_with_reference_and_checks_input():
    rng = np.random.default_rng(2)
    maps = rng.random((6, 7, 8)) - 0.2
    maps[1] = -1.0  # no positive energy
    maps[2, 0, 0] = np.nan
    regions = rng.random((6, 4, 7, 8)) ** 3
    valid = np.array([True, True, True, False, True, True])
    ours = per_au_energy(torch.tensor(maps), torch.tensor(regions), torch.tensor(valid))
    expected = ref.per_au_energy(maps, regions, valid)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)
    with pytest.raises(ValueError, match=r"regions must have shape \(B, K, H, W\), got"):
        per_au_energy(torch.tensor(maps), torch.tensor(regions[:, 0]))
    with pytest.raises(ValueError, match=r"= \(6, K ≥ 1, 7, 8\) to match maps, got \(6, 4, 7, 7\)"):
        per_au_energy(torch.tensor(maps), torch.tensor(regions[..., :7]))
