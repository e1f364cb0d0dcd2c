"""Control maps: what a metric must tell a real explanation apart from.

Each control is a map at the requested layer's grid (so it is as coarse as that layer's CAM and
goes through the same resizing), computed without gradients in the shared single pass; it reads
only the layer's grid, so controls explained on their own cost no model pass on the batch (one
single-image forward per model and input shape learns the grids):

- ``random``: i.i.d. uniform [0, 1) values, from a seeded generator (reproducible; successive
  calls continue the stream).
- ``centre``: the centre prior ``exp(−((u − ½)² + (v − ½)²) / (2σ²))`` at pixel centres
  u = (j + ½)/W', v = (i + ½)/H' (σ in units of the map side; default 0.25). Faces are centred in
  their crops, so a metric that rewards this map rewards "looks at the middle".
- ``generic-face``: the label-agnostic AU prior — every AU of the FACS table drawn on the
  sample's own landmarks (:func:`aubench.faces.heatmaps.au_heatmaps` with
  ``regions="generic"``) at input resolution, then area-averaged to the layer grid. It knows
  where the face's AU regions are but not which the expression uses; a metric that scores it
  like a class-specific map cannot measure class evidence. Needs ``landmarks``.

None uses the target; all are non-negative (no ReLU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aubench.explain.base import register
from aubench.explain.engine import LayerMethod, LayerPass
from aubench.faces.heatmaps import au_heatmaps


class Control(LayerMethod):
    """A baseline map that ignores the model's evidence."""

    is_control = True
    needs_gradients = False
    needs_activations = False


@register("random")
class RandomMap(Control):
    """Uniform [0, 1) noise (B, H', W'), drawn on the CPU from ``torch.Generator(seed)``."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        h, w = p.grid
        return torch.rand(len(p.images), h, w, generator=self.generator).to(p.images.device)


@register("centre")
class CentrePrior(Control):
    """Isotropic Gaussian at the map centre, σ = ``sigma`` × side (same for every sample)."""

    name = "centre"

    def __init__(self, sigma: float = 0.25):
        if sigma <= 0:
            raise ValueError(f"centre prior sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        (h, w), b, device = p.grid, len(p.images), p.images.device
        v = (torch.arange(h, device=device) + 0.5) / h - 0.5
        u = (torch.arange(w, device=device) + 0.5) / w - 0.5
        square = v[:, None] ** 2 + u[None, :] ** 2
        return torch.exp(-square / (2 * self.sigma**2)).expand(b, h, w).clone()


@register("generic-face")
class GenericFace(Control):
    """All-AU map on each sample's landmarks, area-averaged from input size to the layer grid.

    Samples whose heatmap is invalid (failed landmarks, face outside) get an all-zero map.
    """

    name = "generic-face"

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        if p.landmarks is None:
            raise ValueError("the generic-face control needs the batch's landmarks (B, 68, 2)")
        size = tuple(p.images.shape[-2:])
        landmarks = torch.as_tensor(p.landmarks, device=p.images.device)
        maps = au_heatmaps(landmarks, torch.zeros_like(p.targets), size, regions="generic")
        return F.adaptive_avg_pool2d(maps.heatmaps[:, None].float(), p.grid)[:, 0]
