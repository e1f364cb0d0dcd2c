"""models/: timm factory, local weights, large maps, layer resolution, capture and attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aubench.cli import main
from aubench.models import (
    FeatureCapture,
    create,
    layer_attention,
    list_layers,
    resolve_layer,
    resolve_layers,
    set_large_maps,
    stage_names,
)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_create_builds_requested_head_and_rejects_unknown_names():
    model = create("resnet18", 7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*resnet18"):
        create("resnet19", 7)
    with pytest.raises(ValueError, match="num_classes"):
        create("resnet18", 0)


def test_vit_takes_the_input_size_at_construction():
    model = create("vit_tiny_patch16_224", 8, img_size=64)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_load_backbone_and_keep_a_fresh_head_of_another_size(tmp_path, suffix):
    torch.manual_seed(0)
    source = create("resnet18", 1000)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = create("resnet18", 7, pretrained=path)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.fc.weight.shape == (7, 512)


def test_missing_corrupt_or_foreign_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth does not exist.*--pretrained"):
        create("resnet18", 7, pretrained=tmp_path / "nothere.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt\.pth: cannot read weights"):
        create("resnet18", 7, pretrained=corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"other.weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="none of its 1 tensors match ResNet"):
        create("resnet18", 7, pretrained=foreign)
    with pytest.raises(ValueError, match=r"expected one of \.pth"):
        create("resnet18", 7, pretrained=__file__)


def test_hub_weights_absent_offline_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no resnet18 weights in the local hub cache"):
        create("resnet18", 7, pretrained="hub")


def test_large_maps_gives_28x28_layer4_at_224_with_the_same_weights():
    torch.manual_seed(0)
    model = create("resnet18", 7)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    set_large_maps(model)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 512, 28, 28)
    bottleneck = create("resnet50", 7, large_maps=True)
    shapes = {i.name: i.shape for i in list_layers(bottleneck, 224, depth=1)}
    assert shapes["layer3"] == (1, 1024, 28, 28) and shapes["layer4"] == (1, 2048, 28, 28)
    with pytest.raises(ValueError, match="large_maps needs a ResNet"):
        create("convnext_atto", 7, large_maps=True)


@pytest.mark.parametrize(
    ("name", "stages"),
    [
        ("resnet18", ["act1", "layer1", "layer2", "layer3", "layer4"]),
        ("convnext_atto", ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]),
        ("efficientnet_b0", ["bn1", "blocks.1", "blocks.2", "blocks.4", "bn2"]),
        ("vit_tiny_patch16_224", ["blocks.1", "blocks.4", "blocks.6", "blocks.9", "blocks.11"]),
        ("deit_tiny_distilled_patch16_224", [f"blocks.{i}" for i in (1, 4, 6, 9, 11)]),
    ],
)
def test_paper_stage_numbering_per_family(name, stages):
    model = create(name, 7, img_size=64)
    assert stage_names(model) == stages
    assert [resolve_layer(model, f"stage:{k}") for k in range(1, 6)] == stages
    assert resolve_layer(model, "stage5") == stages[-1]


def test_layer_specs_by_name_feature_index_and_stage():
    model = create("resnet18", 7)
    assert resolve_layer(model, "layer4.1.conv2") == "layer4.1.conv2"
    assert resolve_layer(model, "feature:0") == "act1"
    assert resolve_layer(model, "feature:-1") == "layer4"
    # "layer5" is no module of a ResNet, so it is the paper's stage 5 (= layer4).
    assert resolve_layer(model, "layer5") == "layer4"
    assert resolve_layers(model, "layer5, layer3,stage:4") == ["layer4", "layer3"]


def test_bad_layer_specs_name_the_spec():
    model = create("resnet18", 7)
    with pytest.raises(ValueError, match=r"unknown layer 'layer_4'.*layer4"):
        resolve_layer(model, "layer_4")
    with pytest.raises(ValueError, match="input image"):
        resolve_layer(model, "stage:0")
    with pytest.raises(ValueError, match=r"stages are numbered 1 … 5"):
        resolve_layer(model, "stage:6")
    with pytest.raises(
        ValueError, match=r"'layer44': stages are numbered 1 … 5; did you mean layer4"
    ):
        resolve_layer(model, "layer44")
    with pytest.raises(ValueError, match="has 5 timm feature levels"):
        resolve_layer(model, "feature:5")
    with pytest.raises(ValueError, match="no layer given"):
        resolve_layers(model, " , ")


class TinyNet(nn.Module):
    """conv(1→2 channels, 1×1, weights 1 and −2) → GAP → linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.conv.weight.data = torch.tensor([1.0, -2.0]).view(2, 1, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_capture_records_outputs_in_the_graph_and_removes_its_hooks():
    model = TinyNet()
    x = torch.arange(4.0).view(1, 1, 2, 2)
    with FeatureCapture(model, ["conv", "pool"]) as capture:
        logits = model(x)
        assert _hook_count(model) == 3
    assert _hook_count(model) == 0
    expected = torch.stack([x[0, 0], -2 * x[0, 0]])[None]
    assert torch.equal(capture.spatial("conv"), expected)
    (grad,) = torch.autograd.grad(logits[0, 0], capture.raw["conv"])
    # d logit_0 / d F_c(i,j) = w_0c / 4 for the GAP over 4 pixels.
    assert torch.allclose(grad[0, :, 0, 0], model.fc.weight[0] / 4)


def test_capture_rejects_non_spatial_layers_and_unknown_names():
    model = TinyNet()
    with FeatureCapture(model, ["fc"]) as capture:
        model(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"layer 'fc' output of shape \(1, 3\) is not spatial"):
        capture.spatial("fc")
    with pytest.raises(ValueError, match="no module named 'nope'"):
        FeatureCapture(model, ["nope"])


def test_capture_releases_hooks_when_the_forward_fails():
    model = TinyNet()
    with pytest.raises(RuntimeError), FeatureCapture(model, ["conv"]):
        model(torch.zeros(1, 3, 2, 2))  # wrong channel count
    assert _hook_count(model) == 0


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_vit_tokens_are_reshaped_row_major_without_prefix_tokens(name):
    model = create(name, 7, img_size=(48, 64)).eval()
    prefix = model.num_prefix_tokens
    with FeatureCapture(model, ["blocks.11"]) as capture:
        model(torch.randn(2, 3, 48, 64))  # 3×4 patch grid: rows ≠ columns
    tokens = capture.raw["blocks.11"]
    maps = capture.spatial("blocks.11")
    assert maps.shape == (2, 192, 3, 4)
    for row in range(3):
        for col in range(4):
            assert torch.equal(maps[:, :, row, col], tokens[:, prefix + row * 4 + col])


def test_vit_gradients_reshape_like_the_activations():
    model = create("vit_tiny_patch16_224", 7, img_size=32).eval()
    with FeatureCapture(model, ["blocks.5"]) as capture:
        logits = model(torch.randn(1, 3, 32, 32))
    (grad,) = torch.autograd.grad(logits[0, 2], capture.raw["blocks.5"])
    assert capture.spatial("blocks.5", grad).shape == (1, 192, 2, 2)
    assert torch.equal(capture.spatial("blocks.5", grad)[0, :, 1, 0], grad[0, 1 + 2])


def test_layer_attention_kinds_golden():
    features = torch.tensor([[[[1.0, -3.0]], [[3.0, 1.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(layer_attention(features), torch.tensor([[[2.0, -1.0]]]))
    assert torch.equal(layer_attention(features, "abs-mean"), torch.tensor([[[2.0, 2.0]]]))
    assert torch.equal(layer_attention(features, "max"), torch.tensor([[[3.0, 1.0]]]))
    with pytest.raises(ValueError, match="unknown attention kind 'min'"):
        layer_attention(features, "min")
    with pytest.raises(ValueError, match=r"needs \(B, C, H, W\) features, got \(2, 1, 2\)"):
        layer_attention(features[0])


def test_list_layers_shapes_stages_and_restores_the_mode():
    model = create("resnet18", 7).train()
    infos = {info.name: info for info in list_layers(model, 64, depth=1)}
    assert model.training
    assert infos["layer4"].shape == (1, 512, 2, 2) and infos["layer4"].stage == 5
    assert infos["act1"].stage == 1 and infos["maxpool"].stage is None
    assert infos["fc"].spatial is None and infos["fc"].shape == (1, 7)


def test_cli_lists_layers(capsys):
    assert main(["list", "layers", "resnet18", "--size", "64", "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["layer4", "5", "Sequential"] for line in lines)
    assert main(["list", "layers"]) == 2
    assert "needs a model name" in capsys.readouterr().err


def test_hub_weights_load_from_the_local_cache_without_network(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = create("resnet18", 1000)
    snapshot = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(source.state_dict(), snapshot / "model.safetensors")
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    model = create("resnet18", 7, pretrained="hub")
    assert torch.equal(model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert model.fc.weight.shape == (7, 512)


def test_capture_refuses_outputs_modified_in_place_later():
    model = create("resnet18", 7).eval()
    with FeatureCapture(model, ["layer4.1.bn2", "layer4.1"]) as capture:
        model(torch.zeros(1, 3, 32, 32))
    assert capture.spatial("layer4.1").shape == (1, 512, 1, 1)
    with pytest.raises(ValueError, match=r"'layer4\.1\.bn2'.s output was modified in place"):
        capture.spatial("layer4.1.bn2")
