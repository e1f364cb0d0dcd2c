"""The paper's augmentations (shared/reference/paper-protocol.md §1.4), on image + landmarks.

Train (:class:`TrainTransform`), in the paper's order, on a Sample whose ``image`` is RGB in [0, 1]
(open the dataset with ``normalize=False``):

1. resize to R×R, R = round(size · 256/224) (bilinear, antialiased);
2. rotation by θ ~ U(−6°, 6°) about the image centre with probability 0.5 (fill 0);
3. random resized crop: a square of area s·R², s ~ U(0.8, 1), at a uniform position, resized to
   size×size;
4. horizontal flip with probability 0.5 (landmarks mirrored and permuted by
   :data:`~aubench.faces.landmarks.FLIP_PERMUTATION`);
5. grayscale with probability 0.2, then colour jitter (brightness, contrast, saturation 0.4,
   hue 0.1, in a random order) with probability 0.8 — image only;
6. random erasing with probability 0.5 (area 2–33 %, aspect 0.3–3.3, N(0, 1) noise) — image only;
7. ImageNet normalisation.

Eval (:class:`EvalTransform`): resize to size×size, then normalise (no centre crop, as the paper).

Steps 2–3 are composed into one affine map of pixel-centre coordinates (x, y) (integer
coordinates are pixel centres, DESIGN.md) and the image is sampled once through its inverse
(bilinear, ``grid_sample`` with ``align_corners=False``); the landmarks go through the same map,
so a landmark drawn as a dot on the image stays on the dot. Heatmaps are never transformed: the
batch rebuilds them from the transformed landmarks (:mod:`aubench.data.batch`), so image, landmarks
and heatmap agree by construction.

Randomness comes only from the ``generator`` passed in. :class:`TransformedDataset` seeds one per
sample from (seed, epoch, index), so an item's augmentation does not depend on the number of
DataLoader workers, on the process (DDP rank) that loads it, or on where a resumed run restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD, Sample
from aubench.faces.landmarks import flip_landmarks, rescale_landmarks

#: The paper's Resize(256) before RandomResizedCrop(224), as a ratio of the output size.
RESIZE_RATIO = 256 / 224


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _chance(generator: torch.Generator | None, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=generator)) < p


def _randint(generator: torch.Generator | None, high: int) -> int:
    """Uniform int in [0, high)."""
    return int(torch.randint(high, (), generator=generator))


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation ``(x − mean) / std`` of an RGB (3, H, W) image in [0, 1]."""
    mean = image.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = image.new_tensor(IMAGENET_STD)[:, None, None]
    return (image - mean) / std


def resize_sample(sample: Sample, size: int) -> Sample:
    """Resize the image to size×size (bilinear, antialiased) and move the landmarks with it."""
    image = sample["image"]
    height, width = image.shape[-2:]
    if (height, width) == (size, size):
        return sample
    resized = F.interpolate(
        image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0]
    landmarks = torch.as_tensor(sample["landmarks"], dtype=torch.float32)
    moved = rescale_landmarks(landmarks[None], size / width, size / height)[0]
    return {**sample, "image": resized, "landmarks": moved}


def _check_unit_range(image: torch.Tensor) -> None:
    low, high = float(image.min()), float(image.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"augmentations need RGB images in [0, 1], got values in [{low:.3g}, {high:.3g}]; "
            "open the dataset with normalize=False (the transform normalises last)"
        )


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric steps: ``matrix`` (3, 3) maps pixel-centre coordinates of the
    R×R resized image to those of the size×size output (before the flip); ``flip`` mirrors."""

    matrix: torch.Tensor
    flip: bool


def warp_image(image: torch.Tensor, matrix: torch.Tensor, size: int) -> torch.Tensor:
    """Sample (C, H, W) ``image`` through the inverse of the pixel-centre affine ``matrix``.

    Output pixel (x', y') takes the bilinear value at ``matrix⁻¹ (x', y', 1)`` (zeros outside).
    """
    height, width = image.shape[-2:]
    inverse = torch.linalg.inv(matrix.double()).float()
    axis = torch.arange(size, dtype=torch.float32)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ inverse.T
    # pixel centres → grid_sample's normalised coordinates (align_corners=False)
    grid = torch.stack(
        [(2 * points[..., 0] + 1) / width - 1, (2 * points[..., 1] + 1) / height - 1], dim=-1
    )
    return F.grid_sample(
        image[None].float(), grid[None], mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]


def apply_affine(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Points (..., 2) mapped by the 3×3 affine ``matrix``."""
    return points @ matrix[:2, :2].T.to(points.dtype) + matrix[:2, 2].to(points.dtype)


class TrainTransform:
    """The paper's train augmentations (module doc), joint on ``image`` and ``landmarks``.

    ``transform(sample, generator)`` returns a new Sample with the image (3, size, size)
    normalised (unless ``normalize=False``) and the landmarks in its pixels. Set a probability to
    0 (or ``crop_scale=(1, 1)``) to switch a step off.
    """

    def __init__(
        self,
        size: int,
        *,
        resize_ratio: float = RESIZE_RATIO,
        rotation: float = 6.0,
        rotation_p: float = 0.5,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        flip_p: float = 0.5,
        grayscale_p: float = 0.2,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        erasing_p: float = 0.5,
        erasing_scale: tuple[float, float] = (0.02, 0.33),
        erasing_ratio: tuple[float, float] = (0.3, 3.3),
        normalize: bool = True,
    ) -> None:
        if size < 1 or resize_ratio < 1:
            raise ValueError(f"need size ≥ 1 and resize_ratio ≥ 1, got {size}, {resize_ratio}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low ≤ high ≤ 1, got {crop_scale}")
        self.size = size
        self.resized = round(size * resize_ratio)
        self.rotation, self.rotation_p = rotation, rotation_p
        self.crop_scale = crop_scale
        self.flip_p = flip_p
        self.grayscale_p = grayscale_p
        self.jitter, self.jitter_p = jitter, jitter_p
        self.erasing_p, self.erasing_scale, self.erasing_ratio = (
            erasing_p,
            erasing_scale,
            erasing_ratio,
        )
        self.normalize = normalize

    def sample_geometry(self, generator: torch.Generator | None = None) -> Geometry:
        """Draw rotation, crop and flip; see :class:`Geometry`."""
        side = self.resized
        matrix = torch.eye(3, dtype=torch.float64)
        if _chance(generator, self.rotation_p):
            theta = math.radians(_uniform(generator, -self.rotation, self.rotation))
            centre = (side - 1) / 2
            cos, sin = math.cos(theta), math.sin(theta)
            matrix = torch.tensor(
                [
                    [cos, -sin, centre - cos * centre + sin * centre],
                    [sin, cos, centre - sin * centre - cos * centre],
                    [0.0, 0.0, 1.0],
                ],
                dtype=torch.float64,
            )
        area = _uniform(generator, *self.crop_scale)
        crop = min(max(round(math.sqrt(area) * side), 1), side)
        top, left = _randint(generator, side - crop + 1), _randint(generator, side - crop + 1)
        scale = self.size / crop
        # pixel p of the crop starting at (left, top) → (p − left + ½)·scale − ½
        crop_matrix = torch.tensor(
            [
                [scale, 0.0, (0.5 - left) * scale - 0.5],
                [0.0, scale, (0.5 - top) * scale - 0.5],
                [0.0, 0.0, 1.0],
            ],
            dtype=torch.float64,
        )
        return Geometry(crop_matrix @ matrix, _chance(generator, self.flip_p))

    def apply_geometry(self, sample: Sample, geometry: Geometry) -> Sample:
        """Resize to R×R, warp by ``geometry`` and flip: image and landmarks together."""
        sample = resize_sample(sample, self.resized)
        image = warp_image(sample["image"], geometry.matrix, self.size)
        landmarks = apply_affine(torch.as_tensor(sample["landmarks"]).float(), geometry.matrix)
        if geometry.flip:
            image = image.flip(-1)
            landmarks = flip_landmarks(landmarks[None], self.size)[0]
        return {**sample, "image": image, "landmarks": landmarks}

    def photometric(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Grayscale, colour jitter and random erasing (steps 5–6), on an image in [0, 1]."""
        if _chance(generator, self.grayscale_p):
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if _chance(generator, self.jitter_p):
            image = self._jitter(image, generator)
        if _chance(generator, self.erasing_p):
            image = self._erase(image, generator)
        return image

    def _jitter(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.jitter
        order = torch.randperm(4, generator=generator).tolist()
        factors = [
            _uniform(generator, max(0.0, 1 - brightness), 1 + brightness),
            _uniform(generator, max(0.0, 1 - contrast), 1 + contrast),
            _uniform(generator, max(0.0, 1 - saturation), 1 + saturation),
            _uniform(generator, -hue, hue),
        ]
        steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for k in order:
            image = steps[k](image, factors[k])
        return image

    def _erase(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """torchvision's RandomErasing (value='random'): up to 10 tries to fit a rectangle."""
        channels, height, width = image.shape
        log_ratio = (math.log(self.erasing_ratio[0]), math.log(self.erasing_ratio[1]))
        for _ in range(10):
            area = height * width * _uniform(generator, *self.erasing_scale)
            aspect = math.exp(_uniform(generator, *log_ratio))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if h < height and w < width:
                top, left = _randint(generator, height - h + 1), _randint(generator, width - w + 1)
                image = image.clone()
                noise = torch.randn((channels, h, w), generator=generator)
                image[:, top : top + h, left : left + w] = noise
                return image
        return image

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        _check_unit_range(sample["image"])
        out = self.apply_geometry(sample, self.sample_geometry(generator))
        image = self.photometric(out["image"], generator)
        return {**out, "image": normalize_image(image) if self.normalize else image}


class EvalTransform:
    """Eval preprocessing: resize to size×size (landmarks follow), then ImageNet normalisation."""

    def __init__(self, size: int, normalize: bool = True) -> None:
        self.size = size
        self.normalize = normalize

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        _check_unit_range(sample["image"])
        out = resize_sample(sample, self.size)
        return {**out, "image": normalize_image(out["image"]) if self.normalize else out["image"]}


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for item ``index`` in ``epoch`` of a run seeded ``seed`` (splitmix-style)."""
    value = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index) & (2**64 - 1)
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (value ^ (value >> 31)) >> 1


class TransformedDataset(Dataset):
    """``dataset`` with ``transform(sample, generator)`` applied to every item.

    Item i of epoch e is transformed with a generator seeded by :func:`sample_seed` (seed, e, i):
    augmentations are reproducible per item, whatever the workers, rank or restart point. Call
    :meth:`set_epoch` before iterating each epoch. Attributes of ``dataset`` (``labels``,
    ``num_classes``, …) are forwarded.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Sample, torch.Generator | None], Sample],
        seed: int = 0,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, int(index)))
        return self.transform(self.dataset[index], generator)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.dataset, name)
