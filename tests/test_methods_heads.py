"""Golden tests of the interpretable-by-design methods' parts on hand-built tensors: WILDCAT and
PRM pooling, ACoL's erasing and fused CAM, ADL's maps and insertion, CutMix's box on image,
heatmap, validity and label weights, TS-CAM's attention product, APViT's token pooling, the
explainers that read each map, and the method registry's checks."""

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from aubench.explain import explain
from aubench.models import FeatureCapture, create
from aubench.models.methods import (
    ADL,
    AcolHead,
    PRMHead,
    WildcatHead,
    adl_maps,
    adl_positions,
    attach_tscam,
    attention_with_scores,
    erase_mask,
    insert_adl,
    tap_names,
    top_tokens,
    topk_pool,
    tscam_maps,
)
from aubench.models.methods.apvit import gather_tokens, pooling_block
from aubench.train import TrainConfig
from aubench.train.config import METHOD_NAMES, ConfigError, add_config_arguments
from aubench.train.cutmix import Box, cutmix, cutmix_box, mixed_valid, paste
from aubench.train.model import METHODS, build_model, get_method

X = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # (1, 1, 2, 2), non-negative: ReLU is identity


class Net(nn.Module):
    """images (B, 3, H, W) → features = channel 0 (B, 1, H, W) → ``head``."""

    def __init__(self, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.head, self.num_classes = head, num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images[:, :1])


def as_images(features: torch.Tensor) -> torch.Tensor:
    return torch.cat([features, torch.zeros_like(features), torch.zeros_like(features)], 1)


# --- WILDCAT and PRM -----------------------------------------------------------------------


def test_topk_pool_keeps_the_top_and_optionally_the_bottom_positions():
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert topk_pool(maps, 0.5).item() == 3.5  # mean of {4, 3}
    assert topk_pool(maps, 0.1).item() == 4.0  # k⁺ = max(round(0.4), 1) = 1
    assert topk_pool(maps, 1.0).item() == 2.5
    assert topk_pool(maps, 0.5, kmin=0.25, alpha=0.6).item() == pytest.approx((3.5 + 0.6) / 2)
    assert topk_pool(maps, 0.5, kmin=0.25, alpha=0.0).item() == 3.5  # the branch is off
    assert topk_pool(maps, 0.5, kmin=0.0, alpha=0.6).item() == 3.5  # the reference's


def wildcat_head() -> WildcatHead:
    head = WildcatHead(1, 2, modalities=2, kmax=0.5)
    with torch.no_grad():
        head.conv.weight.copy_(torch.tensor([1.0, 3.0, -1.0, -1.0]).view(4, 1, 1, 1))
        head.bias.copy_(torch.tensor([0.5, -1.0]))
    return head


def test_wildcat_head_averages_modalities_per_class_then_pools():
    head = wildcat_head()
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    with FeatureCapture(head, ["cams"]) as capture:
        logits = head(x)
    maps = capture.spatial("cams")
    expected = torch.tensor([[[[0.5, 2.5], [4.5, 6.5]], [[-1.0, -2.0], [-3.0, -4.0]]]])
    torch.testing.assert_close(maps, expected)  # (x + 3x)/2 + 0.5 and (−x − x)/2 − 1
    torch.testing.assert_close(logits, torch.tensor([[5.5, -1.5]]))
    assert head.bias.shape == (2,)  # one bias per class: a checkpoint's last bias is K wide


def test_prm_head_max_pools_class_maps_then_averages():
    head = PRMHead(1, 1, kernel=3)
    with torch.no_grad():
        head.conv.weight.fill_(1.0)
        head.conv.bias.fill_(0.25)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    with FeatureCapture(head, ["cams"]) as capture:
        logits = head(x)
    assert logits.item() == pytest.approx((10 + 11 + 14 + 15) / 4 + 0.25)
    torch.testing.assert_close(capture.spatial("cams"), x + 0.25)
    with pytest.raises(ValueError, match="smaller than its 3×3 peak pooling"):
        head(torch.zeros(1, 1, 2, 2))


# --- ACoL ----------------------------------------------------------------------------------


def test_acol_erase_mask_zeroes_where_the_normalised_map_reaches_the_threshold():
    maps = torch.cat([X, torch.full_like(X, 3.0)], 1)  # class 1: a constant map
    torch.testing.assert_close(erase_mask(maps, torch.tensor([0]), 0.3), torch.tensor(
        [[[[1.0, 1.0], [0.0, 0.0]]]]))  # fmt: skip
    torch.testing.assert_close(erase_mask(maps, torch.tensor([0]), 0.25), torch.tensor(
        [[[[1.0, 0.0], [0.0, 0.0]]]]))  # fmt: skip
    assert erase_mask(maps, torch.tensor([1]), 0.3).eq(1).all()  # constant: never erased


def acol_head() -> AcolHead:
    """Branches that pass x through (centre-only 3×3 kernels) to class maps (x, −x)."""
    head = AcolHead(1, 2, threshold=0.3, width=1)
    with torch.no_grad():
        for branch in (head.branch_a, head.branch_b):
            for conv in (branch[0], branch[2]):
                conv.weight.zero_()
                conv.weight[0, 0, 1, 1] = 1.0
                conv.bias.zero_()
            branch[4].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            branch[4].bias.zero_()
    return head


def test_acol_head_erases_for_the_label_and_fuses_both_branches():
    head = acol_head()
    with FeatureCapture(head, ["cams"]) as capture, head.erasing(torch.tensor([0])):
        logits = head(X)
    torch.testing.assert_close(logits, torch.tensor([[1.75, -1.75]]))  # A's: mean(x), −mean(x)
    # minmax(x) = [[0, .25], [.5, 1]] ≥ 0.3 erased → B sees [[0, 1], [0, 0]]
    torch.testing.assert_close(head.logits_b, torch.tensor([[0.25, -0.25]]))
    expected = torch.tensor([[[[0.0, 1.0], [0.5, 1.0]], [[1.0, 0.75], [1.0, 1.0]]]])
    torch.testing.assert_close(capture.spatial("cams"), expected)
    assert head.labels is None  # the context restored it
    head(X)  # no labels: A's prediction (class 0), the same erasing
    torch.testing.assert_close(head.logits_b, torch.tensor([[0.25, -0.25]]))
    with head.erasing(torch.tensor([1])):
        head(X)  # minmax(−x) = [[1, .75], [.5, 0]]: only the 4 survives
    torch.testing.assert_close(head.logits_b, torch.tensor([[1.0, -1.0]]))


def test_acol_loss_adds_both_branches_cross_entropies():
    model = Net(acol_head(), 2)
    method = get_method(TrainConfig(method="acol"))
    batch = {"image": as_images(X), "label": torch.tensor([1])}
    logits = method.forward(model, model, batch)
    loss = method.loss(model, logits, batch)
    expected = F.cross_entropy(torch.tensor([[1.75, -1.75]]), batch["label"])
    expected += F.cross_entropy(torch.tensor([[1.0, -1.0]]), batch["label"])  # erased for y = 1
    torch.testing.assert_close(loss, expected)
    assert model.head.logits_b is None  # read once, then released


def test_acol_norm_puts_a_batchnorm_after_each_3x3_conv_and_keeps_the_reference_layout_without():
    plain = AcolHead(4, 3, width=5).branch_a
    assert [type(m) for m in plain] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
    normed = AcolHead(4, 3, width=5, norm=True).branch_b
    kinds = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert [type(m) for m in normed] == kinds
    assert [normed[i].num_features for i in (1, 4)] == [5, 5]
    # in training mode each channel of the normalised first layer has mean 0 and variance 1 over
    # the batch and positions, whatever the input's scale (the plain layer's units can all be < 0)
    features = 100 * torch.rand(8, 4, 3, 3) + 50
    normalised = normed[1](normed[0](features))
    torch.testing.assert_close(normalised.mean((0, 2, 3)), torch.zeros(5), atol=1e-4, rtol=0)
    variance = normalised.var((0, 2, 3), unbiased=False)
    torch.testing.assert_close(variance, torch.ones(5), atol=1e-3, rtol=0)
    model = get_method(TrainConfig(method="acol", acol_width=8, acol_norm=True)).build(7)
    (head,) = [m for m in model.modules() if isinstance(m, AcolHead)]
    assert isinstance(head.branch_a[1], nn.BatchNorm2d)


# --- ADL -----------------------------------------------------------------------------------

FEATURES = torch.cat([2 * X, torch.zeros_like(X)], 1)  # channel mean a = X = [[0, 1], [2, 4]]


def test_adl_maps_are_the_sigmoid_importance_and_the_thresholded_drop_mask():
    importance, drop = adl_maps(FEATURES, 0.3)
    torch.testing.assert_close(importance, torch.sigmoid(X))
    torch.testing.assert_close(drop, torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]))  # a < 1.2


def test_adl_layer_applies_one_map_at_train_time_and_nothing_at_eval():
    always_drop, never_drop = ADL(1.0, 0.3).train(), ADL(0.0, 0.3).train()
    torch.testing.assert_close(always_drop(FEATURES), FEATURES * torch.tensor([[1.0, 1.0], [0, 0]]))
    torch.testing.assert_close(never_drop(FEATURES), FEATURES * torch.sigmoid(X))
    assert ADL(1.0, 0.3).eval()(FEATURES) is FEATURES
    layer = ADL(0.5, 0.3).train()
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append([bool(layer(FEATURES)[0, 0, 1, 1] == 0) for _ in range(40)])
    assert draws[0] == draws[1] and 5 < sum(draws[0]) < 35  # the seeded global generator


def test_adl_is_inserted_after_the_given_blocks_shifting_later_names():
    model = nn.Module()
    model.layer4 = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2), nn.Linear(1, 3))
    blocks = list(model.layer4)
    positions = adl_positions(model, ["layer4.0", "layer4.-1", "layer4.2"])
    assert positions == {"layer4": [0, 2]}
    for spec, message in [("layer5.0", "STAGE.INDEX"), ("layer4.3", "has 3 blocks"),
                          ("layer4", "STAGE.INDEX")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            adl_positions(model, [spec])
    insert_adl(model, positions, 0.4, 0.1)
    kinds = [type(m).__name__ for m in model.layer4]
    assert kinds == ["Linear", "ADL", "Linear", "Linear", "ADL"]
    assert model.get_submodule("layer4.2") is blocks[1]  # the reference's layer4.2 quirk


def test_adl_quirk_loads_pretrained_weights_by_shifted_name(tmp_path):
    source = create("resnet50", 7)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    common = {"method": "adl", "model": "resnet50", "pretrained": str(path), "large_maps": False}
    fixed = build_model(TrainConfig(**common), 7)
    quirk = build_model(TrainConfig(**common, adl_quirk=True), 7)
    weight = "layer4.{}.conv1.weight"
    state, ours, theirs = source.state_dict(), fixed.state_dict(), quirk.state_dict()
    kinds = [type(m).__name__ for m in fixed.layer4]
    assert kinds == ["Bottleneck", "ADL", "Bottleneck", "Bottleneck", "ADL"]
    assert torch.equal(ours[weight.format(2)], state[weight.format(1)])  # b1 keeps its weights
    assert torch.equal(theirs[weight.format(2)], state[weight.format(2)])  # b1 gets b2's
    assert not torch.equal(theirs[weight.format(3)], state[weight.format(2)])  # b2: random
    assert torch.equal(theirs["layer3.0.conv1.weight"], state["layer3.0.conv1.weight"])
    config = TrainConfig(**common, adl_quirk=True)
    assert get_method(config).explained_by(quirk) == ("adl-quirk", "layer4.2")
    assert get_method(config.replace(adl_quirk=False)).explained_by(fixed) == ("cam", "stage:5")


def test_adl_quirk_cam_reads_a_block_that_does_not_feed_the_pool():
    config = TrainConfig(method="adl", model="resnet18", size=64, large_maps=False)
    model = build_model(config, 7).eval()
    nn.init.ones_(model.layer4[2].bn2.weight)  # timm zero-inits it: block 1 would be identity
    images = torch.randn(2, 3, 64, 64)
    quirk = explain(model, images, [1, 2], ["layer4.1", "layer4"], ["adl-quirk"])["adl-quirk"]
    plain = explain(model, images, [1, 2], ["layer4"], ["cam"])["cam"]
    torch.testing.assert_close(quirk["layer4"], plain["layer4"])  # the same formula
    assert quirk["layer4.1"].shape == (2, 2, 2)  # layer4.1 is the ADL after block 0
    with pytest.raises(ValueError, match=r"GAP \+ linear head fed by layer 'layer4\.1'"):
        explain(model, images, [1, 2], ["layer4.1"], ["cam"])


# --- CutMix --------------------------------------------------------------------------------


def test_cutmix_box_is_the_references_clipped_square():
    assert cutmix_box((8, 8), 0.75, (4, 4)) == Box(2, 6, 2, 6)  # side 8·√0.25 = 4
    assert cutmix_box((8, 8), 0.75, (0, 7)) == Box(0, 2, 5, 8)  # clipped at the corner
    assert cutmix_box((8, 6), 0.0, (3, 2)) == Box(0, 7, 0, 5)
    assert cutmix_box((8, 8), 1.0, (3, 3)).area() == 0


def test_paste_cuts_image_and_heatmap_with_the_same_box():
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    heatmaps = torch.stack([torch.full((4, 4), 0.1), torch.full((4, 4), 0.2)])
    order, box = torch.tensor([1, 0]), Box(1, 3, 0, 2)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 0:2] = True
    mixed_images, mixed_maps = paste(images, order, box), paste(heatmaps, order, box)
    assert torch.equal(mixed_images[0, 0], inside.float())
    assert torch.equal(mixed_images[1, 0], (~inside).float())
    torch.testing.assert_close(mixed_maps[0], torch.where(inside, 0.2, 0.1))
    torch.testing.assert_close(mixed_maps[1], torch.where(inside, 0.1, 0.2))
    assert images[0].eq(0).all()  # the input is not modified


def test_a_mixed_heatmap_is_valid_only_when_every_contributing_face_is():
    valid, order = torch.tensor([True, False]), torch.tensor([1, 0])
    partial, empty, full = Box(0, 2, 0, 2), Box(2, 2, 0, 4), Box(0, 4, 0, 4)
    assert mixed_valid(valid, order, partial, (4, 4)).tolist() == [False, False]
    assert mixed_valid(valid, order, empty, (4, 4)).tolist() == [True, False]
    assert mixed_valid(valid, order, full, (4, 4)).tolist() == [False, True]
    both = torch.tensor([True, True])
    assert mixed_valid(both, order, partial, (4, 4)).tolist() == [True, True]


def test_cutmix_mixes_images_heatmaps_and_label_weights_consistently():
    b, size = 4, 8
    index = torch.arange(b, dtype=torch.float32)
    batch = {
        "image": index.view(b, 1, 1, 1).expand(b, 3, size, size).clone(),
        "heatmap": (index / 10).view(b, 1, 1).expand(b, size, size).clone(),
        "valid": torch.tensor([True, True, False, True]),
        "label": torch.arange(b),
        "landmarks": torch.zeros(b, 68, 2),
    }
    torch.manual_seed(1)
    mixed = cutmix(batch, beta=1.0)
    moved = mixed["image"][:, 0] != batch["image"][:, 0]
    assert torch.equal(moved, mixed["heatmap"] != batch["heatmap"])  # the same box
    rows, cols = moved.any(0).nonzero(as_tuple=True)
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0 < area < size * size and mixed["lam"] == pytest.approx(1 - area / size**2)
    r, c = rows.min(), cols.min()
    assert torch.equal(mixed["label_b"], mixed["image"][:, 0, r, c].long())  # y_π follows π
    torch.testing.assert_close(mixed["heatmap"][:, r, c], mixed["label_b"] / 10)
    assert torch.equal(mixed["valid"], batch["valid"] & batch["valid"][mixed["label_b"]])
    assert "landmarks" not in mixed and torch.equal(mixed["label"], batch["label"])
    torch.manual_seed(1)
    assert torch.equal(cutmix(batch, beta=1.0)["image"], mixed["image"])  # seeded
    assert cutmix(batch, beta=1.0, prob=0.0) is batch


def test_cutmix_loss_weights_both_labels_by_the_kept_area():
    method = get_method(TrainConfig(method="cutmix"))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    batch = {"label": torch.tensor([0, 1]), "label_b": torch.tensor([1, 2]), "lam": 0.75}
    expected = 0.75 * F.cross_entropy(logits, batch["label"])
    expected += 0.25 * F.cross_entropy(logits, batch["label_b"])
    torch.testing.assert_close(method.loss(None, logits, batch), expected)
    plain = {"label": torch.tensor([0, 1])}
    torch.testing.assert_close(
        method.loss(None, logits, plain), F.cross_entropy(logits, plain["label"])
    )


# --- TS-CAM and APViT ----------------------------------------------------------------------


def test_tscam_map_is_the_attention_times_the_class_map():
    attention = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    maps = torch.stack([torch.ones(2, 2), torch.tensor([[0.0, 1.0], [2.0, 3.0]])])[None]
    expected = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.0], [6.0, 12.0]]]])
    torch.testing.assert_close(tscam_maps(attention, maps), expected)


@pytest.fixture(scope="module")
def tiny_tscam() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2, num_classes=3)
    return attach_tscam(model, 3).eval()


def test_tscam_records_the_class_token_attention_summed_over_blocks(tiny_tscam):
    model, images = tiny_tscam, torch.randn(2, 3, 32, 32)
    with torch.no_grad(), FeatureCapture(model, ["head.cams", "norm"]) as capture:
        logits = model(images)
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        expected = torch.zeros(2, 4)
        for block in model.blocks:
            _, scores = attention_with_scores(block.attn, block.norm1(x))
            expected += scores.softmax(-1)[:, :, 0, 1:].mean(1)
            x = block(x)
        maps = model.head.conv(capture.spatial("norm"))
    torch.testing.assert_close(model.blocks.cls_attention, expected)
    torch.testing.assert_close(logits, maps.mean((2, 3)))  # logits: the class maps' GAP
    product = expected.view(2, 1, 2, 2) * maps
    torch.testing.assert_close(capture.spatial("head.cams"), product)
    cams = explain(model, images, [2, 0], ["head.cams"], ["tscam"])["tscam"]["head.cams"]
    torch.testing.assert_close(cams, product[[0, 1], [2, 0]])
    model.train()
    model(images)
    assert model.blocks.cls_attention is None  # recorded in evaluation only
    model.eval()


def test_apvit_keeps_the_top_tokens_in_spatial_order():
    assert top_tokens(torch.tensor([[3.0, 1.0, 4.0, 1.0, 5.0]]), 3).tolist() == [[0, 2, 4]]
    tokens = torch.tensor([[[10.0], [20.0], [30.0], [40.0]]])
    assert gather_tokens(tokens, torch.tensor([[0, 3]])).flatten().tolist() == [10.0, 40.0]


def test_explicit_attention_equals_timm_and_pooling_blocks_keep_the_rate():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1).eval()
    block, x = vit.blocks[0], torch.randn(2, 9, vit.embed_dim)
    out, scores = attention_with_scores(block.attn, block.norm1(x))
    torch.testing.assert_close(out, block.attn(block.norm1(x)), atol=1e-5, rtol=1e-5)
    assert scores.shape == (2, 3, 9, 9)
    assert pooling_block(block, x, 0.5).shape == (2, 1 + 4, vit.embed_dim)  # ⌊8·0.5⌋ kept
    torch.testing.assert_close(pooling_block(block, x, 1.0), block(x), atol=1e-5, rtol=1e-5)


def test_apvit_map_is_the_class_agnostic_attention_of_the_projected_stem():
    config = TrainConfig(method="apvit", apvit_vit="vit_tiny_patch16_224", apvit_depth=2,
                         apvit_k=40, large_maps=False)  # fmt: skip
    model = build_model(config, 7).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), FeatureCapture(model, ["attention"]) as capture:
        assert model(images).shape == (2, 7)
        expected = model.proj(model.stem(images)).abs().sum(1)
    torch.testing.assert_close(capture.spatial("attention")[:, 0], expected)
    maps = explain(model, images, [0, 5], ["attention"], ["apvit"])["apvit"]["attention"]
    torch.testing.assert_close(maps, expected)  # the same map whatever the target
    assert get_method(config).explained_by(model) == ("apvit", "attention")


# --- explainers ----------------------------------------------------------------------------


def test_wildcat_and_prm_explainers_read_the_targets_class_map():
    model = Net(wildcat_head(), 2)
    features = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]).repeat(2, 1, 1, 1)
    maps = explain(model, as_images(features), [0, 1], ["head.cams"], ["wildcat"])
    maps = maps["wildcat"]["head.cams"]
    torch.testing.assert_close(maps[0], torch.tensor([[0.5, 2.5], [4.5, 6.5]]))
    torch.testing.assert_close(maps[1], torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]))
    with pytest.raises(ValueError, match=r"is not its map tap .*head\.cams"):
        explain(model, as_images(features), [0, 1], ["head.conv"], ["prm"])


def test_acol_explainer_erases_for_the_explained_class():
    model = Net(acol_head(), 2)
    images = as_images(X)
    target_1 = explain(model, images, [1], ["head.cams"], ["acol"])["acol"]["head.cams"]
    # erased for 1: B sees [[0, 0], [0, 4]] → minmax(−B) = [[1, 1], [1, 0]]; A: [[1, .75], [.5, 0]]
    torch.testing.assert_close(target_1[0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    predicted = explain(model, images, "pred", ["head.cams"], ["acol"])["acol"]["head.cams"]
    torch.testing.assert_close(predicted[0], torch.tensor([[0.0, 1.0], [0.5, 1.0]]))
    assert model.head.labels is None


# --- registry and configuration ------------------------------------------------------------


def test_every_config_method_is_registered_and_unsuitable_models_are_named():
    assert set(METHODS) == set(METHOD_NAMES)
    with pytest.raises(ValueError, match="method 'tscam' cannot use model 'resnet10t'"):
        build_model(TrainConfig(method="tscam"), 7)
    vit = {"model": "vit_tiny_patch16_224", "large_maps": False}
    for method in ("wildcat", "prm", "acol", "adl"):
        with pytest.raises(ValueError, match=f"method '{method}' cannot use model 'vit_tiny"):
            build_model(TrainConfig(method=method, **vit), 7)
    with pytest.raises(ValueError, match="adl_layers"):
        build_model(TrainConfig(method="adl", adl_layers=("layer5.0",)), 7)
    with pytest.raises(ValueError, match="apvit_stride must be one of its strides"):
        build_model(TrainConfig(method="apvit", apvit_stride=3), 7)


@pytest.mark.parametrize("model", ["convnext_atto", "efficientnet_b0"])
def test_class_map_heads_fit_other_cnn_families(model):
    config = TrainConfig(method="wildcat", model=model, large_maps=False)
    net = build_model(config, 7).eval()
    tap = {"convnext_atto": "head.fc.cams", "efficientnet_b0": "classifier.cams"}[model]
    assert tap_names(net) == [tap] and net.num_classes == 7
    with torch.no_grad(), FeatureCapture(net, [tap]) as capture:
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert capture.spatial(tap).shape == (1, 7, 2, 2)


def test_method_fields_keep_earlier_hashes_and_belong_to_their_method():
    # the hashes of configs written before the method fields existed
    assert TrainConfig().hash() == "df438199fd51"
    assert TrainConfig(guided=True).hash() == "0d738a1c0fb8"
    assert TrainConfig.preset("paper").hash() == "6904f856f6d4"
    assert TrainConfig(method="cam").hash() == TrainConfig().hash()
    wildcat = TrainConfig(method="wildcat")
    assert wildcat.hash() != TrainConfig().hash()
    assert wildcat.replace(wildcat_kmin=0.1).hash() != wildcat.hash()
    assert wildcat.run_name() == f"resnet10t-wildcat-baseline-{wildcat.hash()}"
    with pytest.raises(ConfigError, match="wildcat_kmax is an option of method 'wildcat'"):
        TrainConfig.from_dict({"wildcat_kmax": 0.3})
    with pytest.raises(ConfigError, match="method"):
        TrainConfig.from_dict({"method": "gradcam"})


def test_method_options_have_command_line_flags():
    import argparse

    from aubench.train.config import config_from_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--method", "adl", "--adl-layers", "layer4.0,layer4.-1",
                              "--adl-quirk", "--adl-drop-rate", "0.25"])  # fmt: skip
    config = config_from_arguments(args)
    assert (config.method, config.adl_layers, config.adl_quirk) == (
        "adl", ("layer4.0", "layer4.-1"), True)  # fmt: skip
    assert config.adl_drop_rate == 0.25
