"""Models from anywhere: the same weights as a factory + checkpoint, a TorchScript file and a
torch.export .pt2 file give the same outputs; timm models take safetensors and aubench
checkpoints; what works on each form; every bad input is one clear error naming the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from aubench.models import (
    FeatureCapture,
    LayerAccessError,
    create,
    describe_support,
    load_model,
    load_state,
    resolve_layers,
    source_of,
    supports_layers,
)
from aubench.train.checkpoint import save_checkpoint
from aubench.train.config import TrainConfig
from tests.explain_models import one_thread  # noqa: F401 (autouse)
from tests.user_models import GreyNet, make_grey_net, save_forms

USER_FILE = Path(__file__).with_name("user_models.py")
FACTORY = f"{USER_FILE}:make_grey_net"


@pytest.fixture(scope="module")
def grey() -> GreyNet:
    return make_grey_net().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory, grey) -> dict[str, Path]:
    return save_forms(grey, tmp_path_factory.mktemp("grey"))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_factory_torchscript_and_export_forms_agree(grey, files, images):
    forms = {
        "factory": load_model(FACTORY, files["state"]),
        "module": load_model("tests.user_models:make_grey_net", files["state"]),
        "torchscript": load_model(str(files["script"])),
        "export": load_model(str(files["export"])),
    }
    expected = grey(images)
    for kind, model in forms.items():
        assert not model.training, kind
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=0, msg=kind)
    assert source_of(forms["torchscript"]).kind == "torchscript"
    assert source_of(forms["export"]).file == files["export"]
    assert source_of(forms["factory"]).report.complete


def test_export_form_keeps_names_fires_hooks_and_passes_gradients(files, images):
    model = load_model(str(files["export"]))
    assert supports_layers(model)
    assert resolve_layers(model, "layers.conv2,layers.conv3") == ["layers.conv2", "layers.conv3"]
    inputs = images.clone().requires_grad_()
    with FeatureCapture(model, ["layers.conv2", "layers.conv3"]) as capture:
        logits = model(inputs)
    assert capture.spatial("layers.conv2").shape == (3, 16, 24, 24)
    assert capture.spatial("layers.conv3").shape == (3, 16, 12, 12)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), capture.raw["layers.conv3"])
    assert grad.shape == (3, 16, 12, 12) and grad.abs().sum() > 0
    logits = model(inputs)
    logits[:, 0].sum().backward()
    assert inputs.grad.abs().sum() > 0
    assert "every explainer" in describe_support(model)


def test_torchscript_layer_capture_is_one_clear_error(files, images):
    model = load_model(str(files["script"]))
    assert not supports_layers(model)
    for attempt in (
        lambda: resolve_layers(model, ["layers.conv3"]),
        lambda: FeatureCapture(model, ["layers.conv3"]),
    ):
        with pytest.raises(LayerAccessError, match="TorchScript") as err:
            attempt()
        assert str(files["script"]) in str(err.value) and ".pt2" in str(err.value)
    inputs = images.clone().requires_grad_()  # input-level attributions still work
    model(inputs)[:, 0].sum().backward()
    assert inputs.grad.abs().sum() > 0
    assert "input-level attributions" in describe_support(model)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("resnet10t", 7).eval()


def test_timm_with_a_safetensors_checkpoint_takes_its_head_width(tmp_path, resnet):
    file = tmp_path / "resnet10t.safetensors"
    save_file(resnet.state_dict(), file)
    model = load_model("timm:resnet10t", file)
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(images), resnet(images), atol=1e-5, rtol=0)
    assert source_of(model).report.complete and source_of(model).kind == "timm"


def test_timm_with_an_aubench_checkpoint_rebuilds_its_large_maps(tmp_path, resnet):
    file = save_checkpoint(
        tmp_path / "best.pt", {"config": TrainConfig().model_dump(), "model": resnet.state_dict()}
    )
    model = load_model("timm:resnet10t", file, num_classes=7)
    trained = create("resnet10t", 7, large_maps=True).eval()
    trained.load_state_dict(resnet.state_dict())
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(images), trained(images), atol=1e-5, rtol=0)
    with FeatureCapture(model, ["layer4"]) as capture:
        model(images)
    assert capture.spatial("layer4").shape[-2:] == (8, 8)  # large maps: /8 at 64 px


def test_checkpoint_wrappers_and_ddp_prefix_are_unwrapped(tmp_path, grey, images):
    file = tmp_path / "wrapped.pt"
    state = {f"module.{k}": v for k, v in grey.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, file)
    model = GreyNet()
    assert load_state(model, file).complete
    torch.testing.assert_close(model.eval()(images), grey(images))


def test_shape_mismatch_names_the_key_both_shapes_and_the_file(tmp_path):
    file = tmp_path / "eight.pth"
    torch.save(GreyNet(num_classes=8).state_dict(), file)
    with pytest.raises(ValueError, match=r"fc\.weight \[8, 16\] in the file, \[7, 16\]") as err:
        load_model(FACTORY, file)
    assert str(file) in str(err.value) and "strict" in str(err.value)


def test_non_strict_loading_loads_what_matches_and_reports_the_rest(tmp_path, grey):
    file = tmp_path / "partial.pth"
    state = {k: v for k, v in GreyNet(num_classes=8).state_dict().items() if "conv1" not in k}
    torch.save({**state, "extra.weight": torch.zeros(1)}, file)
    model = load_model(FACTORY, file, strict=False)
    report = source_of(model).report
    assert report.missing == ("layers.conv1.weight", "layers.conv1.bias")
    assert report.unexpected == ("extra.weight",)
    assert report.mismatched == (("fc.weight", (8, 16), (7, 16)), ("fc.bias", (8,), (7,)))
    assert "layers.conv3.weight" in report.loaded
    torch.testing.assert_close(model.layers.conv3.weight, state["layers.conv3.weight"])
    text = str(report)
    assert "skipped" in text and "layers.conv1.weight" in text and "extra.weight" in text


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path, grey):
    file = tmp_path / "renamed.pth"
    torch.save({k.replace("conv1", "first"): v for k, v in grey.state_dict().items()}, file)
    with pytest.raises(ValueError, match=r"missing from the file: layers\.conv1\.weight") as err:
        load_model(FACTORY, file)
    assert "not in the model: layers.first.weight" in str(err.value)


@pytest.mark.parametrize("kind", ["truncated", "safetensors", "text"])
def test_a_corrupt_checkpoint_is_one_error_naming_it(tmp_path, grey, kind):
    file = tmp_path / ("grey.safetensors" if kind == "safetensors" else "grey.pth")
    torch.save(grey.state_dict(), file)
    if kind == "safetensors":
        save_file(grey.state_dict(), file)
    payload = file.read_bytes()
    file.write_bytes(b"not weights" if kind == "text" else payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="corrupt") as err:
        load_model(FACTORY, file)
    assert str(file) in str(err.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("resnet10t", "did you mean timm:resnet10t"),
        ("my model", "unknown model spec 'my model'"),
        ("weights/missing.pt2", "no file weights/missing.pt2 exists"),
        ("not-a-module!:make", "unknown model spec 'not-a-module!:make'"),
        ("tests.no_such_module:make", "cannot import module 'tests.no_such_module'"),
    ],
)
def test_an_unknown_spec_form_names_the_value(spec, expected):
    with pytest.raises(ValueError, match=expected) as err:
        load_model(spec)
    assert "timm:NAME" in str(err.value) or "did you mean" in str(err.value)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        ("broken_factory", r"raised RuntimeError: weights server unreachable"),
        ("not_a_module", r"returned a dict, not a torch\.nn\.Module"),
        ("make_grey_nett", r"no callable 'make_grey_nett'; did you mean make_grey_net"),
    ],
)
def test_a_bad_factory_names_the_spec(factory, expected):
    spec = f"{USER_FILE}:{factory}"
    with pytest.raises(ValueError, match=expected) as err:
        load_model(spec)
    assert spec in str(err.value)


def test_a_missing_factory_file_and_a_broken_one_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.py"):
        load_model(f"{tmp_path}/nowhere.py:make")
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nthis is not python\n")
    with pytest.raises(
        ValueError, match=re.escape(f"importing model factory file {broken} failed")
    ):
        load_model(f"{broken}:make")


def test_a_factory_file_imports_its_neighbours(tmp_path):
    (tmp_path / "blocks.py").write_text("from torch import nn\n\nHEAD = nn.Linear\n")
    (tmp_path / "net.py").write_text(
        "from blocks import HEAD\n\n\ndef make():\n    return HEAD(2, 3)\n"
    )
    assert isinstance(load_model(f"{tmp_path / 'net.py'}:make"), torch.nn.Linear)


def test_model_files_are_recognised_by_content(files):
    with pytest.raises(ValueError, match="is a weights file, not a model"):
        load_model(str(files["state"]))
    with pytest.raises(ValueError, match="carries its own weights"):
        load_model(str(files["export"]), files["state"])


def test_a_corrupt_model_file_is_named(tmp_path, files):
    for name in ("script", "export"):
        file = tmp_path / files[name].name
        payload = files[name].read_bytes()
        file.write_bytes(payload[:4096] + payload[-2048:])
        with pytest.raises(ValueError, match=re.escape(str(file))):
            load_model(str(file))


def test_timm_needs_a_head_width(tmp_path):
    with pytest.raises(ValueError, match="timm:resnet10t: give num_classes"):
        load_model("timm:resnet10t")
    with pytest.raises(ValueError, match="unknown model 'resnet10x'"):
        load_model("timm:resnet10x", num_classes=7)
    with pytest.raises(ValueError, match="num_classes sets the head of timm: models only"):
        load_model(FACTORY, num_classes=7)


def test_a_missing_layer_of_a_user_model_suggests_near_names(grey):
    with pytest.raises(ValueError, match=r"'layers\.conv4' in GreyNet; did you mean layers\.conv"):
        resolve_layers(grey, ["layers.conv4"])
