"""The paper's augmentations move image and landmarks together; heatmaps follow by construction."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from aubench.data.synthetic import SyntheticFaces
from aubench.data.transforms import (
    EvalTransform,
    TrainTransform,
    TransformedDataset,
    normalize_image,
    warp_image,
)
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.landmarks import FLIP_PERMUTATION

SIZE = 64
GEOMETRY_ONLY = {"grayscale_p": 0, "jitter_p": 0, "erasing_p": 0, "normalize": False}
STEPS = {
    "resize": {"rotation_p": 0, "crop_scale": (1.0, 1.0), "flip_p": 0},
    "rotation": {"rotation_p": 1, "crop_scale": (1.0, 1.0), "flip_p": 0},
    "crop": {"rotation_p": 0, "flip_p": 0},
    "flip": {"rotation_p": 0, "crop_scale": (1.0, 1.0), "flip_p": 1},
    "all": {"rotation_p": 1, "flip_p": 1},
}


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.arange(size, dtype=torch.float32)
    return torch.meshgrid(axis, axis, indexing="ij")


def dot_image(size: int, x: float, y: float, sigma: float = 1.5) -> torch.Tensor:
    ys, xs = grid(size)
    blob = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return blob.expand(3, size, size).clone()


def centroid(channel: torch.Tensor) -> torch.Tensor:
    ys, xs = grid(channel.shape[-1])
    weights = channel / channel.sum()
    return torch.stack([(weights * xs).sum(), (weights * ys).sum()])


def face_points(size: int) -> torch.Tensor:
    """Plausible landmarks: a synthetic face's, rescaled to ``size``."""
    face = SyntheticFaces(1, 64, seed=3, normalize=False)[0]
    return face["landmarks"] * size / 64


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("landmark", [36, 48, 30])
def test_a_landmark_drawn_as_a_dot_stays_on_the_dot(step, landmark):
    points = face_points(SIZE)
    x, y = points[landmark].tolist()
    transform = TrainTransform(SIZE, **STEPS[step], **GEOMETRY_ONLY)
    for seed in range(4):
        out = transform(
            {"image": dot_image(SIZE, x, y), "landmarks": points, "label": 1},
            torch.Generator().manual_seed(seed),
        )
        assert out["image"].shape == (3, SIZE, SIZE)
        # after a flip, the dot drawn at point k is where the mirrored point now sits
        index = FLIP_PERMUTATION[landmark] if step in ("flip", "all") else landmark
        found = centroid(out["image"][0])
        assert torch.linalg.vector_norm(found - out["landmarks"][index]) < 0.15, (step, seed)


def test_resize_from_a_larger_image_moves_landmarks_with_it():
    points = face_points(96)
    x, y = points[48].tolist()
    out = EvalTransform(SIZE, normalize=False)(
        {"image": dot_image(96, x, y, sigma=2.0), "landmarks": points, "label": 1}
    )
    assert out["image"].shape == (3, SIZE, SIZE)
    assert torch.linalg.vector_norm(centroid(out["image"][0]) - out["landmarks"][48]) < 0.1


def test_flip_swaps_left_and_right_points():
    points = face_points(SIZE)
    transform = TrainTransform(SIZE, **STEPS["flip"], **GEOMETRY_ONLY)
    out = transform({"image": torch.rand(3, SIZE, SIZE), "landmarks": points, "label": 1})
    # (resize to R then crop (1, 1) back to SIZE: the input frame.) Image-left eye corner 36
    # after the flip is the mirror of image-right corner 45 before.
    mirrored_x = SIZE - 1 - points[45, 0]
    assert out["landmarks"][36, 0].item() == pytest.approx(mirrored_x.item(), abs=1e-3)
    assert out["landmarks"][36, 1].item() == pytest.approx(points[45, 1].item(), abs=1e-3)


def test_heatmap_from_transformed_landmarks_matches_the_warped_heatmap():
    """Rebuilding the AU map from the moved landmarks ≈ moving the map itself (default model,
    whose blobs are sized in face units, so it is equivariant to rotation, scale and crop)."""
    faces = SyntheticFaces(8, SIZE, seed=1, normalize=False)
    transform = TrainTransform(SIZE, rotation_p=1, flip_p=0, **GEOMETRY_ONLY)
    for index in range(8):
        sample = faces[index]
        if sample["label"] == 0:
            continue
        generator = torch.Generator().manual_seed(index)
        geometry = transform.sample_geometry(generator)
        out = transform.apply_geometry(sample, geometry)
        rebuilt, valid = au_heatmaps(out["landmarks"][None], [sample["label"]], SIZE)
        side = transform.resized
        before, _ = au_heatmaps(sample["landmarks"][None] * side / SIZE, [sample["label"]], side)
        warped = warp_image(before, geometry.matrix, SIZE)
        assert valid.all()
        cos = F.cosine_similarity(rebuilt.flatten(), warped.flatten(), dim=0)
        assert cos > 0.97, (index, float(cos))


def test_photometric_steps_leave_landmarks_alone_and_stay_reproducible():
    points = face_points(SIZE)
    transform = TrainTransform(
        SIZE, rotation_p=0, crop_scale=(1, 1), flip_p=0, grayscale_p=1, jitter_p=1, erasing_p=1
    )
    image = SyntheticFaces(1, SIZE, normalize=False)[0]["image"]
    sample = {"image": image, "landmarks": points, "label": 2}
    a = transform(sample, torch.Generator().manual_seed(5))
    b = transform(sample, torch.Generator().manual_seed(5))
    c = transform(sample, torch.Generator().manual_seed(6))
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    torch.testing.assert_close(a["landmarks"], points, atol=2e-4, rtol=0)


def test_eval_transform_normalises_only():
    sample = SyntheticFaces(1, SIZE, normalize=False)[0]
    reference = SyntheticFaces(1, SIZE, normalize=True)[0]["image"]
    out = EvalTransform(SIZE)(sample)
    torch.testing.assert_close(out["image"], reference)
    torch.testing.assert_close(normalize_image(sample["image"]), reference)
    assert torch.equal(out["landmarks"], sample["landmarks"])


def test_transformed_dataset_is_a_function_of_seed_epoch_and_index():
    base = SyntheticFaces(6, SIZE, normalize=False)
    data = TransformedDataset(base, TrainTransform(SIZE), seed=0)
    first = [data[i]["image"] for i in (4, 1)]
    again = [data[i]["image"] for i in (1, 4)]  # other order: same items
    assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])
    data.set_epoch(1)
    assert not torch.equal(data[4]["image"], first[0])
    assert data.labels == base.labels and len(data) == 6


def test_normalised_input_is_refused():
    sample = SyntheticFaces(1, SIZE, normalize=True)[0]
    with pytest.raises(ValueError, match=r"need RGB images in \[0, 1\].*normalize=False"):
        TrainTransform(SIZE)(sample)


def test_worker_processes_draw_the_same_augmentations():
    data = TransformedDataset(SyntheticFaces(8, SIZE, normalize=False), TrainTransform(SIZE), 1)
    data.set_epoch(3)
    batches = [
        next(iter(DataLoader(data, batch_size=8, num_workers=workers))) for workers in (0, 2)
    ]
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["landmarks"], batches[1]["landmarks"])
