import pytest
import torch
from torch.utils.data import DataLoader

from aubench.data.batch import HeatmapCollate, add_heatmaps
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.heatmaps import InvalidReason, au_heatmaps
from aubench.faces.landmarks import flip_landmarks


def hflip(sample):
    """A geometric transform applied to image and landmarks together (as augmentations do)."""
    width = sample["image"].shape[-1]
    flipped = flip_landmarks(sample["landmarks"][None], width)[0]
    return {**sample, "image": sample["image"].flip(-1), "landmarks": flipped}


def test_collate_adds_heatmaps_that_follow_the_transformed_landmarks():
    plain = SyntheticFaces(n=14, size=64, seed=3)
    flipped = SyntheticFaces(n=14, size=64, seed=3, transform=hflip)
    batch = next(iter(DataLoader(plain, batch_size=14, collate_fn=HeatmapCollate())))
    fbatch = next(iter(DataLoader(flipped, batch_size=14, collate_fn=HeatmapCollate())))

    assert batch["heatmap"].shape == (14, 64, 64) and batch["valid"].dtype == torch.bool
    expected = au_heatmaps(batch["landmarks"], batch["label"], 64).heatmaps
    torch.testing.assert_close(batch["heatmap"], expected)
    neutral = batch["label"] == 0
    assert torch.equal(batch["valid"], ~neutral)
    assert (batch["invalid_reason"][neutral] == InvalidReason.NO_AUS).all()
    # the default maps are flip-equivariant, so the transformed batch's maps are mirrored
    torch.testing.assert_close(fbatch["heatmap"], batch["heatmap"].flip(-1), atol=1e-5, rtol=0)


def test_add_heatmaps_uses_the_image_size_and_the_chosen_model():
    batch = next(iter(DataLoader(SyntheticFaces(n=7, size=80), batch_size=7)))
    out = add_heatmaps(batch, regions="belharbi2024")
    assert out["heatmap"].shape == (7, 80, 80)
    torch.testing.assert_close(
        out["heatmap"],
        au_heatmaps(batch["landmarks"], batch["label"], 80, regions="belharbi2024").heatmaps,
    )
    with pytest.raises(KeyError, match="landmarks"):
        add_heatmaps({"image": batch["image"], "label": batch["label"]})
