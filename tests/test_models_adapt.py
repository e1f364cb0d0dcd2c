"""Adapting a model to aubench's batches: ImageNet-normalised RGB in, the card's grey/RGB and
mean/std to the model, its outputs back in the canonical class order, on every model form."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD
from aubench.explain import INPUT, get_explainer
from aubench.models import (
    FeatureCapture,
    LayerAccessError,
    ScriptedForward,
    adapt_inputs_outputs,
    canonical_class,
    load_card,
    load_model,
)
from tests.explain_models import one_thread  # noqa: F401 (autouse)
from tests.user_models import USER_CLASSES, InputProbe, OneHotNet, make_grey_net, save_forms

GREY_CARD = {"input_size": 48, "channels": 1, "mean": 0.5, "std": 0.5, "classes": USER_CLASSES}
SOURCE = {"source_mean": IMAGENET_MEAN, "source_std": IMAGENET_STD, "dataset_classes": 7}


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """RGB pixels on [0, 1] as aubench's datasets yield them."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(2))


def test_grey_input_is_luma_of_the_unnormalised_rgb_on_the_cards_scale(pixels):
    probe = InputProbe(channels=1)
    with adapt_inputs_outputs(probe, load_card(GREY_CARD), **SOURCE) as model:
        assert model is probe
        model(normalised(pixels))
    luma = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
    torch.testing.assert_close(probe.seen, (luma[:, None] - 0.5) / 0.5)
    assert probe.seen.min() >= -1 and probe.seen.max() <= 1


def test_rgb_input_takes_the_cards_statistics_or_the_datasets(pixels):
    probe = InputProbe(channels=3)
    card = {"input_size": 48, "classes": USER_CLASSES}
    with adapt_inputs_outputs(probe, load_card(card, mean=[0.5], std=[0.25]), **SOURCE) as model:
        model(normalised(pixels))
    torch.testing.assert_close(probe.seen, (pixels - 0.5) / 0.25)
    with adapt_inputs_outputs(probe, load_card(card), **SOURCE) as model:
        model(normalised(pixels))
    torch.testing.assert_close(probe.seen, normalised(pixels))


@pytest.mark.parametrize("probabilities", [False, True])
def test_outputs_come_back_in_the_canonical_order(pixels, probabilities):
    card = load_card(GREY_CARD, output="probabilities" if probabilities else "logits")
    for hot, name in enumerate(USER_CLASSES):
        net = OneHotNet(hot, probabilities=probabilities).eval()
        with adapt_inputs_outputs(net, card, **SOURCE) as model:
            scores = model(normalised(pixels))
        assert scores.shape == (3, 7)
        assert (scores.argmax(1) == canonical_class(name)).all()
        if probabilities:  # log p, so gradient explanations explain log p
            torch.testing.assert_close(scores.exp().sum(1), torch.ones(3))
    assert net(torch.zeros(1, 1, 48, 48)).argmax(1).item() == len(USER_CLASSES) - 1  # unhooked


def test_a_model_class_the_dataset_lacks_is_dropped(pixels):
    card = load_card(GREY_CARD, classes=["contempt", *USER_CLASSES])
    with adapt_inputs_outputs(OneHotNet(0, width=8), card, **SOURCE) as model:
        scores = model(normalised(pixels))
    assert scores.shape == (3, 7) and (scores == 0).all()


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict[str, torch.nn.Module]:
    grey = make_grey_net().eval()
    files = save_forms(grey, tmp_path_factory.mktemp("grey"))
    user_file = Path(__file__).with_name("user_models.py")
    return {
        "module": grey,
        "factory": load_model(f"{user_file}:make_grey_net", files["state"]),
        "torchscript": load_model(str(files["script"])),
        "export": load_model(str(files["export"])),
    }


def test_every_form_adapts_to_the_same_canonical_scores(forms, pixels):
    grey = forms["module"]
    luma = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2])[:, None]
    order = [USER_CLASSES.index(n) for n in ("neutral", "happy", "surprise", "fear")]
    order += [USER_CLASSES.index(n) for n in ("angry", "disgust", "sad")]
    expected = grey((luma - 0.5) / 0.5)[:, order]
    card = load_card(GREY_CARD)
    for kind, net in forms.items():
        with adapt_inputs_outputs(net, card, **SOURCE) as model:
            torch.testing.assert_close(
                model(normalised(pixels)), expected, atol=1e-5, rtol=0, msg=kind
            )
        assert isinstance(model, ScriptedForward) == (kind == "torchscript")


def test_layers_of_an_adapted_model_keep_their_names_except_under_torchscript(forms, pixels):
    card = load_card(GREY_CARD, layers=["layers.conv3"])
    images = normalised(pixels).requires_grad_()
    with (
        adapt_inputs_outputs(forms["export"], card, **SOURCE) as model,
        FeatureCapture(model, card.layers) as capture,
    ):
        model(images)[:, 0].sum().backward()
    assert capture.spatial("layers.conv3").shape == (3, 16, 12, 12)
    assert images.grad.abs().sum() > 0  # gradients reach the dataset's images
    with adapt_inputs_outputs(forms["torchscript"], card, **SOURCE) as model:
        with pytest.raises(LayerAccessError, match=r"grey\.bin\) is TorchScript"):
            FeatureCapture(model, card.layers)
        images.grad = None
        model(images)[:, 0].sum().backward()
    assert images.grad.abs().sum() > 0  # input-level attributions work on TorchScript


def test_an_output_width_unlike_the_cards_names_both(forms, pixels):
    card = load_card(GREY_CARD, classes=[*USER_CLASSES, "contempt"])
    with (
        adapt_inputs_outputs(forms["module"], card, **SOURCE) as model,
        pytest.raises(ValueError, match="outputs 7 scores per image but its card lists 8 classes"),
    ):
        model(normalised(pixels))


@pytest.mark.parametrize("kind", ["module", "torchscript", "export"])
def test_grey_rgb_mismatch_names_both(forms, kind):
    card = load_card(GREY_CARD, channels=3, mean=[0.5], std=[0.5])
    pattern = r"layers\.conv1\.weight, weight \[8, 1, 3, 3\]\) takes 1 input channel.*channels: 3"
    with (
        pytest.raises(ValueError, match=pattern),
        adapt_inputs_outputs(forms[kind], card, **SOURCE),
    ):
        pass


def test_a_grey_card_without_its_own_statistics_is_refused():
    card = load_card({"input_size": 48, "channels": 1, "classes": USER_CLASSES})
    with (
        pytest.raises(ValueError, match="a grey model's card needs its own mean and std"),
        adapt_inputs_outputs(InputProbe(channels=1), card, **SOURCE),
    ):
        pass


def test_images_of_another_size_or_channel_count_are_named(pixels):
    with adapt_inputs_outputs(InputProbe(channels=1), load_card(GREY_CARD), **SOURCE) as model:
        with pytest.raises(ValueError, match=r"images are 32×32 px but .* input_size is 48×48"):
            model(normalised(pixels)[..., :32, :32])
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\) images, got shape \(3, 1, 48, 48\)"):
            model(pixels[:, :1])


def test_aubench_explainers_run_on_an_adapted_export_and_input_level_ones_on_torchscript(
    forms, pixels
):
    card = load_card(GREY_CARD, layers=["layers.conv3"])
    targets = torch.tensor([1, 4, 6])
    with adapt_inputs_outputs(forms["export"], card, **SOURCE) as model:
        maps = get_explainer("gradcam")(model, normalised(pixels), targets, card.layers)
        assert maps["layers.conv3"].shape == (3, 12, 12)
    with adapt_inputs_outputs(forms["torchscript"], card, **SOURCE) as model:
        maps = get_explainer("saliency")(model, normalised(pixels), targets, card.layers)
        assert maps[INPUT].shape == (3, 48, 48) and maps[INPUT].abs().sum() > 0
        with pytest.raises(LayerAccessError, match=r"export it with torch\.export to a \.pt2 file"):
            get_explainer("gradcam")(model, normalised(pixels), targets, card.layers)
