"""Cascading model-parameter randomisation on a tiny conv net."""

import pytest
import torch
from torch import nn

from aubench.metrics import cascading_randomisation, randomisable_layers


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()


def saliency(model, images, targets):
    """|∂ logit_target / ∂ x|, channel-summed: a map that depends on every layer."""
    images = images.clone().requires_grad_(True)
    logits = model(images)
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), images)
    return grad.abs().sum(1)


def first_layer_activation(model, images, targets):
    """Channel mean of the first conv's output: depends on layer "0" only."""
    return model[0](images).mean(1)


IMAGES = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
TARGETS = torch.tensor([0, 1, 0])


def test_layers_are_randomised_from_the_top():
    model = tiny_net()
    assert randomisable_layers(model) == ["0", "2", "6"]  # registration order = depth
    result = cascading_randomisation(model, IMAGES, TARGETS, saliency)
    assert result.layers == ("6", "2", "0")
    assert result.similarity.shape == (3, 3)


def test_a_map_that_ignores_the_model_stays_identical():
    # golden: the maps never change, so ρ = 1 at every depth
    result = cascading_randomisation(tiny_net(), IMAGES, TARGETS, lambda m, x, t: x.mean(1))
    torch.testing.assert_close(result.similarity, torch.ones(3, 3))


def test_only_depths_reaching_the_map_change_it():
    result = cascading_randomisation(tiny_net(), IMAGES, TARGETS, first_layer_activation)
    # randomising "6" and "2" leaves the first conv alone: ρ = 1; then "0" is reset: ρ < 1
    torch.testing.assert_close(result.similarity[:2], torch.ones(2, 3))
    assert (result.similarity[2] < 0.99).all()


def test_callers_model_and_global_rng_are_untouched_and_seeds_repeat():
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    first = cascading_randomisation(model, IMAGES, TARGETS, saliency, seed=5)
    assert torch.equal(torch.random.get_rng_state(), rng)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    again = cascading_randomisation(model, IMAGES, TARGETS, saliency, seed=5)
    torch.testing.assert_close(first.similarity, again.similarity)
    other = cascading_randomisation(model, IMAGES, TARGETS, saliency, seed=6)
    assert not torch.equal(first.similarity, other.similarity)
    assert (first.similarity[-1] < 0.9).all()  # fully random weights: a different map


def test_explicit_layers_validity_absolute_and_constant_maps():
    model = tiny_net()
    result = cascading_randomisation(
        model, IMAGES, TARGETS, saliency, torch.tensor([True, False, True]), layers=["2"]
    )
    assert result.layers == ("2",) and result.similarity[0, 1].isnan()
    signed = cascading_randomisation(
        model, IMAGES, TARGETS, lambda m, x, t: x.mean(1) - 0.5, absolute=True
    )
    torch.testing.assert_close(signed.similarity, torch.ones(3, 3))
    constant = cascading_randomisation(model, IMAGES, TARGETS, lambda m, x, t: torch.zeros(3, 8, 8))
    assert constant.similarity.isnan().all()  # a constant map has no ranking
    with pytest.raises(ValueError, match=r"layers \['7'\] are not modules"):
        cascading_randomisation(model, IMAGES, TARGETS, saliency, layers=["7"])
