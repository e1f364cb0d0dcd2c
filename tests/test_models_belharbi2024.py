"""``belharbi2024:<method>``: the seed paper's published checkpoints load into aubench's models.

No download: each checkpoint is built here with the reference's exact state-dict names and shapes,
written below from its code (sbelharbi/interpretable-fer-aus): ``dlib/encoders/resnet.py``
(torchvision ResNet-50 layout, ADL layers inserted at ``_ADL_POSITION = [[], [], [], [0], [0, 2]]``,
which shift the block indices), the heads of ``dlib/poolings/{core,wildcat}.py`` and
``dlib/div_classifiers/parts/acol.py``, and TS-CAM's ``dlib/div_classifiers/{deit,
vision_transformer}.py``; saved as ``learning/train_wsol.py:_save_model`` saves them
(``{"encoder": …, "classification_head": …}``, TS-CAM's whole ``state_dict()``). Every tensor must
land where the key map says, bit for bit, and the model's logits must equal a plain functional
forward of the reference's architecture on those tensors (float64, small inputs: large-maps
ResNet-50 at 32 px, DeiT-S at its 224 px).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from aubench.bench.results import read_manifest, read_results
from aubench.cli import main
from aubench.models import load_card, load_model, source_of, spec_card
from aubench.models.belharbi2024 import REFERENCE_MODELS, reference_card, reference_model
from tests.explain_models import one_thread  # noqa: F401 (autouse)

K = 7
#: Bottleneck blocks per stage and the first block's stride with ``large_maps=True``.
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 1), (512, 3, 1))
WGAP_ROWS = ("cam", "gradcam", "gradcam++", "layercam", "cutmix")


def block_index(stage: int, block: int, adl: bool) -> int:
    """The reference's index of Bottleneck ``block`` of ``layer{stage}``: with ADL, layer3 is
    ``[b0, ADL, b1, …]`` and layer4 ``[b0, ADL, b1, b2, ADL]``."""
    return block + 1 if adl and stage >= 3 and block >= 1 else block


def bn_shapes(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{name}.{key}": (channels,) for key in ("weight", "bias", "running_mean", "running_var")
    } | {f"{name}.num_batches_tracked": ()}


def encoder_shapes(adl: bool = False) -> dict[str, tuple[int, ...]]:
    """``ResNetEncoder('resnet50').state_dict()`` names and shapes (``fc``/``avgpool`` deleted)."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **bn_shapes("bn1", 64)}
    inplanes = 64
    for stage, (planes, blocks, _) in enumerate(STAGES, 1):
        for block in range(blocks):
            p = f"layer{stage}.{block_index(stage, block, adl)}"
            out = planes * 4
            shapes |= {
                f"{p}.conv1.weight": (planes, inplanes, 1, 1),
                **bn_shapes(f"{p}.bn1", planes),
            }
            shapes |= {f"{p}.conv2.weight": (planes, planes, 3, 3), **bn_shapes(f"{p}.bn2", planes)}
            shapes |= {f"{p}.conv3.weight": (out, planes, 1, 1), **bn_shapes(f"{p}.bn3", out)}
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (out, inplanes, 1, 1)
                shapes |= bn_shapes(f"{p}.downsample.1", out)
            inplanes = out
    return shapes


def acol_branch(name: str) -> dict[str, tuple[int, ...]]:
    p = f"acol_pooler.classifier_{name}"
    return {
        f"{p}.0.weight": (1024, 2048, 3, 3),
        f"{p}.0.bias": (1024,),
        f"{p}.2.weight": (1024, 1024, 3, 3),
        f"{p}.2.bias": (1024,),
        f"{p}.4.weight": (K, 1024, 1, 1),
        f"{p}.4.bias": (K,),
    }


#: ``classification_head.state_dict()`` names and shapes per pooling head.
HEADS = {
    "WGAP": {"fc.weight": (K, 2048), "fc.bias": (K,)},
    "WildCatCLHead": {"to_modalities.weight": (K * 5, 2048, 1, 1), "to_modalities.bias": (K * 5,)},
    "PRM": {"conv.weight": (K, 2048, 1, 1), "conv.bias": (K,)},
    "ACOL": acol_branch("A") | acol_branch("B"),
}
HEAD_OF = {"wildcat": "WildCatCLHead", "prm": "PRM", "acol": "ACOL"}


def tscam_shapes() -> dict[str, tuple[int, ...]]:
    """``deit_tscam_small_patch16_224(num_classes=7).state_dict()``: DeiT-S/16, conv head."""
    d = 384
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 197, d),
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(12):
        p = f"blocks.{i}"
        shapes |= {f"{p}.norm1.weight": (d,), f"{p}.norm1.bias": (d,)}
        shapes |= {f"{p}.attn.qkv.weight": (3 * d, d), f"{p}.attn.qkv.bias": (3 * d,)}
        shapes |= {f"{p}.attn.proj.weight": (d, d), f"{p}.attn.proj.bias": (d,)}
        shapes |= {f"{p}.norm2.weight": (d,), f"{p}.norm2.bias": (d,)}
        shapes |= {f"{p}.mlp.fc1.weight": (4 * d, d), f"{p}.mlp.fc1.bias": (4 * d,)}
        shapes |= {f"{p}.mlp.fc2.weight": (d, 4 * d), f"{p}.mlp.fc2.bias": (d,)}
    return (
        shapes
        | {"norm.weight": (d,), "norm.bias": (d,), "head.weight": (K, d, 3, 3)}
        | {"head.bias": (K,)}
    )


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> OrderedDict:
    """Distinct random tensors of a stable network: weights ~ N(0, 1/fan-in), norm scales near
    1, running variances in [0.5, 1.5], ``num_batches_tracked`` an int64 scalar."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for name, shape in shapes.items():
        leaf = name.rpartition(".")[2]
        if leaf == "num_batches_tracked":
            state[name] = torch.tensor(123)
        elif leaf == "running_var":
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif "norm" in name or "bn" in name or "downsample.1" in name:
            offset = 1.0 if leaf == "weight" else 0.0
            state[name] = offset + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            state[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return state


def save_reference(method: str, folder: Path, seed: int = 0) -> tuple[Path, dict]:
    """``folder/model.pt`` as the reference saves ``method``'s model; returns it and the flat
    state (the full model's names)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.pt"
    if method == "tscam":
        state = random_state(tscam_shapes(), seed)
        torch.save(state, path)
        return path, dict(state)
    encoder = random_state(encoder_shapes(adl=method == "adl"), seed)
    head = random_state(HEADS[HEAD_OF.get(method, "WGAP")], seed + 1)
    torch.save({"encoder": encoder, "classification_head": head}, path)
    flat = {f"encoder.{k}": v for k, v in encoder.items()}
    return path, flat | {f"classification_head.{k}": v for k, v in head.items()}


def aubench_name(method: str, key: str) -> str:
    """Where reference tensor ``key`` belongs in aubench's model (the issue's key map)."""
    if method == "tscam":
        return "head.conv." + key.removeprefix("head.") if key.startswith("head.") else key
    if key.startswith("encoder."):
        return key.removeprefix("encoder.")
    head = key.removeprefix("classification_head.")
    renames = {
        "to_modalities.weight": "fc.conv.weight",
        "to_modalities.bias": "fc.bias",
        "conv.": "fc.conv.",
        "fc.": "fc.",
        "acol_pooler.classifier_A.": "fc.branch_a.",
        "acol_pooler.classifier_B.": "fc.branch_b.",
    }
    source = next(s for s in renames if head.startswith(s))
    return renames[source] + head.removeprefix(source)


# ---------------------------------------------------------------- the reference's forward passes


class AsDouble(dict):
    """A state dict whose floating tensors are read as float64 (converted as they are used)."""

    def __getitem__(self, key: str) -> torch.Tensor:
        value = super().__getitem__(key)
        return value.double() if value.is_floating_point() else value


def encoder_forward(state: dict, x: torch.Tensor, adl: bool) -> torch.Tensor:
    """``ResNetEncoder.forward`` (eval, ``large_maps``) from its state (``encoder.`` names)."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            state[f"encoder.{p}.running_mean"],
            state[f"encoder.{p}.running_var"],
            state[f"encoder.{p}.weight"],
            state[f"encoder.{p}.bias"],
            eps=1e-5,
        )

    x = F.relu(bn(F.conv2d(x, state["encoder.conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, (_, blocks, stride) in enumerate(STAGES, 1):
        for block in range(blocks):
            p = f"layer{stage}.{block_index(stage, block, adl)}"
            s = stride if block == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"encoder.{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.conv2d(out, state[f"encoder.{p}.conv2.weight"], stride=s, padding=1)
            out = bn(
                F.conv2d(F.relu(bn(out, f"{p}.bn2")), state[f"encoder.{p}.conv3.weight"]),
                f"{p}.bn3",
            )
            if block == 0:
                down = F.conv2d(x, state[f"encoder.{p}.downsample.0.weight"], stride=s)
                x = bn(down, f"{p}.downsample.1")
            x = F.relu(out + x)
    return x


def head_forward(method: str, state: AsDouble, f: torch.Tensor) -> torch.Tensor:
    """The reference head's logits on features ``f`` (B, 2048, h, w)."""

    def h(name: str) -> torch.Tensor:
        return state[f"classification_head.{name}"]

    if method == "wildcat":  # _ClassWisePooling then _WildCatPoolDecision (kmin branch dropped)
        maps = F.conv2d(f, h("to_modalities.weight"), h("to_modalities.bias"))
        maps = maps.view(f.shape[0], K, 5, -1).mean(2)
        kmax = round(0.5 * maps.shape[-1])
        return maps.sort(-1, descending=True).values[..., :kmax].sum(-1) / kmax
    if method == "prm":
        maps = F.conv2d(f, h("conv.weight"), h("conv.bias"))
        return F.max_pool2d(maps, 3, stride=1).mean((2, 3))
    if method == "acol":  # branch A's logits
        p = "acol_pooler.classifier_A"
        a = F.relu(F.conv2d(f, h(f"{p}.0.weight"), h(f"{p}.0.bias"), padding=1))
        a = F.relu(F.conv2d(a, h(f"{p}.2.weight"), h(f"{p}.2.bias"), padding=1))
        return F.conv2d(a, h(f"{p}.4.weight"), h(f"{p}.4.bias")).mean((2, 3))
    return F.linear(f.mean((2, 3)), h("fc.weight"), h("fc.bias"))


def tscam_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
    """``TSCAM.forward``'s logits: DeiT-S blocks, final norm, 3×3 conv on the 14×14 patches, GAP."""
    b, d, heads = x.shape[0], 384, 6
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    t = torch.cat([state["cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], 1)
    t = t + state["pos_embed"]
    n = t.shape[1]

    def norm(u: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(u, (d,), state[f"{p}.weight"], state[f"{p}.bias"], eps=1e-6)

    def linear(u: torch.Tensor, p: str) -> torch.Tensor:
        return F.linear(u, state[f"{p}.weight"], state[f"{p}.bias"])

    for i in range(12):
        p = f"blocks.{i}"
        qkv = linear(norm(t, f"{p}.norm1"), f"{p}.attn.qkv").reshape(b, n, 3, heads, d // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(-1)
        t = t + linear((attn @ v).transpose(1, 2).reshape(b, n, d), f"{p}.attn.proj")
        hidden = F.gelu(linear(norm(t, f"{p}.norm2"), f"{p}.mlp.fc1"))
        t = t + linear(hidden, f"{p}.mlp.fc2")
    patches = norm(t, "norm")[:, 1:].reshape(b, 14, 14, d).permute(0, 3, 1, 2)
    return F.conv2d(patches, state["head.weight"], state["head.bias"], padding=1).mean((2, 3))


def reference_logits(method: str, state: dict, x: torch.Tensor) -> torch.Tensor:
    """The reference model's logits on ``x`` (float64)."""
    state = AsDouble(state)
    if method == "tscam":
        return tscam_forward(state, x)
    return head_forward(method, state, encoder_forward(state, x, adl=method == "adl"))


# ----------------------------------------------------------------------------------------- tests


def check_loaded(method: str, path: Path, state: dict, size: int) -> torch.nn.Module:
    """Load ``path`` as ``belharbi2024:method``: every tensor where the map puts it, nothing
    left over, logits equal to the reference's forward (float64)."""
    model = load_model(f"belharbi2024:{method}", path)
    report = source_of(model).report
    assert report.complete, str(report)
    own = model.state_dict()
    placed = {aubench_name(method, key) for key in state}
    assert placed == set(own), "the model's tensors are the checkpoint's, one to one"
    for key, value in state.items():
        name = aubench_name(method, key)
        if key.endswith("to_modalities.bias"):  # one bias per class: the mean of its 5
            value = value.view(K, 5).mean(1)
        assert torch.equal(own[name], value), f"{key} → {name}"
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2 if method != "tscam" else 1, 3, size, size, dtype=torch.float64, generator=g)
    with torch.no_grad():
        got = model.double()(x)
    # WILDCAT's class biases are the float32 mean of the saved ones: equal to ~1 float32 ulp
    tolerance = 1e-6 if method == "wildcat" else 1e-9
    expected = reference_logits(method, state, x)
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    return model


@pytest.fixture(scope="module")
def cam_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    return save_reference("cam", tmp_path_factory.mktemp("cam"))


@pytest.mark.parametrize("method", ["cam", "adl", "wildcat", "prm", "acol"])
def test_cnn_checkpoints_land_exactly_and_give_the_reference_logits(
    method, tmp_path, cam_checkpoint
):
    path, state = cam_checkpoint if method == "cam" else save_reference(method, tmp_path)
    model = check_loaded(method, path, state, size=32)
    assert model.layer3[0].conv2.stride == model.layer4[0].conv2.stride == (1, 1)  # large maps


def test_tscam_checkpoint_lands_exactly_and_gives_the_reference_logits(tmp_path):
    path, state = save_reference("tscam", tmp_path)
    check_loaded("tscam", path, state, size=224)


@pytest.mark.parametrize("method", [m for m in WGAP_ROWS if m != "cam"])
def test_the_post_hoc_and_cutmix_rows_are_cam_models(method, cam_checkpoint):
    """GradCAM, GradCAM++, LayerCAM and CutMix rows are WGAP ResNet-50s trained apart: the CAM
    architecture and key map, another explainer."""
    path, state = cam_checkpoint
    model = load_model(f"belharbi2024:{method}", path)
    own = model.state_dict()
    assert all(torch.equal(own[aubench_name(method, k)], v) for k, v in state.items())
    explainer = REFERENCE_MODELS[method].explainer
    assert explainer == {"cutmix": "cam", "gradcam++": "gradcam++-belharbi2024"}.get(method, method)


def test_cards_are_the_reference_preprocessing_and_cam_layers():
    card = load_card(spec_card("belharbi2024:cam"))
    assert card.input_size == (224, 224) and card.channels == 3 and card.crop == "as-is"
    assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
    assert card.classes == (
        "neutral", "happiness", "surprise", "fear", "anger", "disgust", "sadness"
    )  # fmt: skip
    assert card.output_map(7) == tuple(range(7))  # the reference's order is the canonical one
    with pytest.raises(ValueError, match="lack contempt"):
        card.output_map(8)
    layers = {m: reference_card(m)["layers"] for m in REFERENCE_MODELS if m != "apvit"}
    assert layers == {
        **{row: ["layer4"] for row in WGAP_ROWS},
        "adl": ["layer4.2"],  # the reference's hook encoder.layer4.2.relu3: block 1 after ADL
        "wildcat": ["fc.cams"],
        "prm": ["fc.cams"],
        "acol": ["fc.cams"],
        "tscam": ["head.cams"],
    }
    assert spec_card("timm:resnet18") is None and spec_card("net.py:build") is None


def test_reference_names_and_any_case_are_accepted(cam_checkpoint):
    path, _ = cam_checkpoint
    assert source_of(load_model("belharbi2024:CAM", path)).spec == "belharbi2024:CAM"
    assert reference_model("GradCAMpp") is reference_model("gradcam++")
    assert spec_card("belharbi2024:GradCAMpp") == spec_card("belharbi2024:gradcam++")


def test_unknown_method_apvit_and_missing_checkpoint_are_clear_errors(cam_checkpoint):
    path, _ = cam_checkpoint
    with pytest.raises(
        ValueError, match=r"unknown belharbi2024 method 'gradcm'.*gradcam.*known: cam"
    ):
        load_model("belharbi2024:gradcm", path)
    with pytest.raises(ValueError, match=r"IR-50.*768-wide.*--maps"):
        load_model("belharbi2024:apvit", path)
    with pytest.raises(ValueError, match=r"needs the reference's weights: --checkpoint .*/CAM/"):
        load_model("belharbi2024:cam")
    with pytest.raises(ValueError, match="num_classes sets the head of timm"):
        load_model("belharbi2024:cam", path, num_classes=7)


def test_a_checkpoint_of_another_head_is_the_named_keys_error(cam_checkpoint):
    path, _ = cam_checkpoint
    with pytest.raises(ValueError) as err:
        load_model("belharbi2024:prm", path)
    message = str(err.value)
    assert "missing from the file: fc.conv.weight, fc.conv.bias" in message
    # no rule maps the CAM head's names: they are named as the reference names them
    assert "not in the model: classification_head.fc.weight, classification_head.fc.bias" in message
    assert "key map: encoder.* → *, classification_head.conv.* → fc.conv.*" in message


def test_a_checkpoint_missing_tensors_or_of_another_shape_is_named(tmp_path):
    encoder = random_state(encoder_shapes(), 0)
    del encoder["layer4.2.bn3.running_var"]
    head = {"fc.weight": torch.zeros(8, 2048), "fc.bias": torch.zeros(8)}  # with contempt
    torch.save({"encoder": encoder, "classification_head": head}, tmp_path / "model.pt")
    with pytest.raises(ValueError) as err:
        load_model("belharbi2024:cam", tmp_path / "model.pt")
    message = str(err.value)
    assert "missing from the file: layer4.2.bn3.running_var" in message
    assert "fc.weight [8, 2048] in the file, [7, 2048] in the model" in message
    model = load_model("belharbi2024:cam", tmp_path / "model.pt", strict=False)
    assert "skipped" in str(source_of(model).report)
    (tmp_path / "empty.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"empty\.pt is corrupt"):
        load_model("belharbi2024:cam", tmp_path / "empty.pt")


def test_config_model_yaml_settings_the_tensors_cannot_reveal_are_checked(cam_checkpoint):
    path, _ = cam_checkpoint
    config = path.with_name("config_model.yaml")
    published = {"method": "CAM", "spatial_pooling": "WGAP", "model": {"large_maps": True}}
    config.write_text(yaml.safe_dump(published))
    try:
        load_model("belharbi2024:cam", path)  # as published: loads
        config.write_text(yaml.safe_dump({**published, "model": {"large_maps": False}}))
        with pytest.raises(
            ValueError, match=r"says model\.large_maps: False \(the published runs: True\)"
        ):
            load_model("belharbi2024:cam", path)
        config.write_text(yaml.safe_dump({**published, "method": "GradCam"}))
        with pytest.raises(ValueError, match="a GradCam checkpoint loads as belharbi2024:gradcam"):
            load_model("belharbi2024:cam", path)
    finally:
        config.unlink()


def test_evaluate_scores_a_reference_checkpoint_end_to_end(cam_checkpoint, tmp_path, capsys):
    """``aubench evaluate --model belharbi2024:cam --checkpoint model.pt`` on synthetic faces:
    the SPEC brings the reference's card (its crop, classes, CAM layer; 64 px here to keep it
    fast) and its row's explainer, and names the model ``belharbi2024-cam``."""
    path, _ = cam_checkpoint
    argv = ["evaluate", "--model", "belharbi2024:cam", "--checkpoint", path]
    argv += ["--input-size", "64", "--data", "synthetic:n=40", "--max-images", "8"]
    argv += ["--metrics", "cosine", "--controls", "none", "--out", tmp_path / "run"]
    assert main([*map(str, argv), "--quiet", "--bootstrap", "20", "--samples-per-class", "1"]) == 0
    capsys.readouterr()
    results = read_results(tmp_path / "run")
    cosine = results[results.metric == "cosine"]
    assert set(cosine.method) == {"cam"} and set(cosine.model) == {"belharbi2024-cam"}
    assert set(cosine.layer) == {"layer4"}
    manifest = read_manifest(tmp_path / "run")
    (card,) = [model["card"] for model in manifest["models"].values()]
    assert card["crop"] == "as-is" and card["input_size"] == [64, 64]
    assert cosine.value.notna().any()
