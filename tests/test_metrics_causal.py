"""Causal AU metrics on hand-built tensors: exact values computed by hand."""

import math

import pytest
import torch

from aubench.metrics import CAUSAL_METRICS, METRICS
from aubench.metrics.causal import (
    au_attribution_agreement,
    au_top1_agreement,
    cue_energy_share,
    dose_response,
    mirror_equivariance,
)

ALL = torch.ones(1, 4, dtype=torch.bool)


def rows(*values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_agreement_is_spearman_over_the_present_aus():
    # energy ranks (1, 3, 2, 4), effect ranks (2, 4, 3, 1): Σd² = 12, ρ = 1 − 6·12/(4·15)
    rho = au_attribution_agreement(rows([0.1, 0.5, 0.3, 0.9]), rows([1, 3, 2, 0]), ALL)
    assert rho.tolist() == pytest.approx([-0.2], abs=1e-15)
    # an absent AU is left out, whatever its values: the other three agree perfectly
    present = torch.tensor([[True, True, True, False]])
    assert au_attribution_agreement(
        rows([0.1, 0.5, 0.3, 0.9]), rows([1, 3, 2, 0]), present
    ).tolist() == [1.0]


def test_agreement_averages_tied_ranks():
    # energy ranks (1.5, 1.5, 3), effect ranks (1, 2, 3): 1.5 / √(1.5 · 2) = √3 / 2
    rho = au_attribution_agreement(rows([1, 1, 2]), rows([1, 2, 3]), torch.ones(1, 3, dtype=bool))
    assert rho.item() == pytest.approx(math.sqrt(3) / 2, abs=1e-15)
    # one AU carries everything on both sides, the others tie at zero: exactly 1
    energy, effects = rows([0, 0, 0.7, 0, 0]), rows([0, 0, 0.25, 0, 0])
    assert au_attribution_agreement(energy, effects, torch.ones(1, 5, dtype=bool)).tolist() == [1.0]


def test_agreement_and_top1_are_nan_where_undefined():
    energy = rows([0.1, 0.5, 0.3, 0.9], [0.2, 0.2, 0.2, 0.2], [0.1, 0.5, 0.3, 0.9], [1, 2, 3, 4])
    effects = rows([1, 3, 2, 0], [1, 3, 2, 0], [1, 1, 1, 1], [1, 2, 3, 4])
    present = torch.tensor(
        [[True, False, False, False], [True] * 4, [True] * 4, [True, True, False, False]]
    )
    energy[3, 1] = math.nan  # left out: one usable AU remains
    for metric in (au_attribution_agreement, au_top1_agreement):
        assert metric(energy, effects, present).isnan().all()


def test_top1_shares_tied_maxima():
    present = torch.ones(4, 4, dtype=torch.bool)
    energy = rows([1, 2, 3, 0], [1, 2, 3, 0], [1, 3, 3, 0], [1, 3, 3, 0])
    effects = rows([0, 1, 5, 2], [0, 5, 1, 2], [0, 1, 5, 2], [0, 5, 5, 2])
    # unique maxima: hit, miss; the map's top tied between AU1, AU2 with AU2 most harmful: 1/2;
    # both tied on the same two AUs: a hit whichever the map's top is
    assert au_top1_agreement(energy, effects, present).tolist() == [1.0, 0.0, 0.5, 1.0]
    # float32 in, float32 out
    assert au_top1_agreement(energy.float(), effects.float(), present).dtype == torch.float32


def test_per_au_inputs_are_checked():
    with pytest.raises(ValueError, match="effects must have the shape of energy"):
        au_attribution_agreement(rows([1, 2]), rows([1, 2, 3]), torch.ones(1, 2, dtype=bool))
    with pytest.raises(TypeError, match="present must be a bool tensor"):
        au_top1_agreement(rows([1, 2]), rows([1, 2]), torch.ones(1, 2))


def test_dose_response_slope_and_correlation():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    # e = 2·l + 1 (slope 2, r 1); e = −l/2 (slope −1/2, r −1); a hand example: cov 4, var 5, 5
    energies = torch.stack([2 * logits + 1, -logits / 2, rows([0, 2, 1, 3])[0]], 1)
    result = dose_response(energies, logits[:, None].expand(-1, 3))
    torch.testing.assert_close(result.slope, rows([2.0, -0.5, 0.8])[0], rtol=0, atol=1e-15)
    torch.testing.assert_close(result.correlation, rows([1.0, -1.0, 0.8])[0], rtol=0, atol=1e-15)


def test_dose_response_per_au_and_undefined_cases():
    steps = torch.tensor([0.0, 0.5, 1.0])
    # (S, B, A) = (3, 1, 3): a flat logit (both NaN), a flat energy (slope 0, r NaN), a NaN step
    logits = torch.stack([torch.zeros(3), steps, steps], 1)[:, None]
    energies = torch.stack([steps, torch.full((3,), 0.3), torch.tensor([0.0, math.nan, 1.0])], 1)
    result = dose_response(energies[:, None], logits)
    assert result.slope.shape == (1, 3)
    assert result.slope[0, 0].isnan() and result.correlation[0, 0].isnan()
    assert result.slope[0, 1] == 0 and result.correlation[0, 1].isnan()
    assert result.slope[0, 2].isnan() and result.correlation[0, 2].isnan()
    with pytest.raises(ValueError, match="at least 2 dose steps"):
        dose_response(torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="logit_changes must have the shape"):
        dose_response(torch.zeros(3, 4), torch.zeros(3, 5))


def test_cue_energy_share():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 1.0], [1.0, 2.0]]] * 2)
    cue = torch.tensor([[[False, False], [False, True]], [[True, False], [False, True]]] * 2)
    cue[3] = False  # no cue drawn
    maps[2] = 0.0  # no positive energy
    # 4 / 10; negative values clip to 0: (0 + 2) / 4
    torch.testing.assert_close(
        cue_energy_share(maps, cue, torch.tensor([True, True, True, True])),
        torch.tensor([0.4, 0.5, math.nan, math.nan]),
        equal_nan=True,
    )
    assert cue_energy_share(maps, cue, torch.tensor([False] * 4)).isnan().all()
    with pytest.raises(TypeError, match="cue_masks must be a bool tensor"):
        cue_energy_share(maps, cue.float())


def test_mirror_equivariance():
    ramp = torch.tensor([[[1.0, 2.0, 4.0], [0.0, 1.0, 3.0]]])
    # the flipped face's map is the mirrored map: 1; the same map again (a fixed side): r of
    # (1, 2, 4, 0, 1, 3) and (4, 2, 1, 3, 1, 0): (13 − 11²/6) / (31 − 11²/6) = −43/65
    assert mirror_equivariance(ramp, ramp.flip(-1)).tolist() == pytest.approx([1.0], abs=1e-7)
    assert mirror_equivariance(ramp, ramp).tolist() == pytest.approx([-43 / 65], abs=1e-7)
    assert mirror_equivariance(torch.ones(1, 2, 3), ramp).isnan().all()  # a constant map


def test_metadata():
    assert set(CAUSAL_METRICS) == {
        "au_attribution_agreement",
        "au_top1_agreement",
        "dose_response_slope",
        "dose_response_correlation",
        "cue_energy_share",
        "mirror_equivariance",
    }
    # scored by name: the cue share (kind cue: the evaluation gives it the cue masks) and mirror
    # equivariance (kind mirror: it gives it the maps of the flipped images)
    assert set(CAUSAL_METRICS) & set(METRICS) == {"cue_energy_share", "mirror_equivariance"}
    assert METRICS["mirror_equivariance"].kind == "mirror"
    share = CAUSAL_METRICS["cue_energy_share"]
    assert share is METRICS["cue_energy_share"] and share.kind == "cue"
    assert (share.higher_is_better, share.range, share.category) == (False, (0.0, 1.0), "mass")
    agreement = CAUSAL_METRICS["au_attribution_agreement"]
    assert (agreement.arrow, agreement.category) == ("↑", "faithfulness")
    slope = CAUSAL_METRICS["dose_response_slope"]
    assert (slope.kind, slope.column_prefix) == ("per_au", "dose_slope")
    logits = torch.tensor([[0.0], [1.0], [2.0]])
    assert slope(2 * logits, logits).tolist() == [2.0]
    assert CAUSAL_METRICS["dose_response_correlation"](2 * logits, logits).tolist() == [1.0]
