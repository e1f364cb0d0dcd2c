"""The causal metrics in the evaluation loop: each batch's AU counterfactuals on the synthetic
faces (kinds ``causal`` and ``dose`` of :mod:`aubench.metrics.kinds`).

:func:`counterfactual_source` gives :func:`aubench.bench.evaluate.evaluate_model` a function
building one :class:`BatchCounterfactuals` per batch (its
:attr:`~aubench.metrics.kinds.BatchContext.counterfactuals`), which computes, once per batch and
only when a metric asks:

- :meth:`~BatchCounterfactuals.effects`: :func:`~aubench.bench.counterfactual.causal_effects` of
  the batch's faces for the explained classes: one forward of the factual faces and one per AU
  over the faces showing it;
- :meth:`~BatchCounterfactuals.energy`: every producer's maps' energy share in each AU's region
  (:func:`~aubench.bench.counterfactual.au_energy`, one call for all producers);
- :meth:`~BatchCounterfactuals.dose`: :func:`dose_energies`: every (face, AU it shows) pair of
  the batch drawn at each of :data:`~aubench.bench.counterfactual.DEFAULT_SCALES` — per scale
  one rendering of all pairs, one forward and one call of every producer (``explain_batch`` per
  layer group, as the loop's maps), in chunks of the batch size.

Faces are rendered by the split's :class:`~aubench.data.synthetic.SyntheticFaces` with the
evaluation transform, so the factual faces are the loop's images bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property

import torch
from torch import nn
from torch.utils.data import Dataset

from aubench.bench.counterfactual import (
    DEFAULT_SCALES,
    _logits,
    _target_scores,
    au_energy,
    causal_effects,
)
from aubench.data.synthetic import SyntheticFaces
from aubench.data.transforms import EvalTransform
from aubench.explain import Explainer, explain_batch, get_explainer
from aubench.faces.codebook import ALL_AUS
from aubench.faces.synth import Intervention
from aubench.metrics import COUNTERFACTUAL_KINDS, get_metric
from aubench.train.config import TrainConfig

__all__ = [
    "BatchCounterfactuals",
    "ProducerMaps",
    "counterfactual_metrics",
    "counterfactual_source",
    "dose_energies",
    "require_synthetic",
    "shown_aus",
]

#: ``(images (N, 3, H, W), targets (N,), landmarks (N, 68, 2)) -> [maps (N, H, W)] * P``: every
#: producer's post-processed maps, in the order the scorers of a batch are updated.
ProducerMaps = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]


def counterfactual_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics among ``metrics`` scored on AU counterfactuals (kinds
    :data:`COUNTERFACTUAL_KINDS`)."""
    return [name for name in metrics if get_metric(name).kind in COUNTERFACTUAL_KINDS]


def require_synthetic(metrics: Sequence[str], data: str, faces: object | None = None) -> None:
    """``ValueError`` naming the dataset when ``metrics`` hold a counterfactual metric and the
    data (spec ``data``; the opened ``faces`` when given) is not the built-in synthetic faces."""
    asked = counterfactual_metrics(metrics)
    if not asked:
        return
    synthetic = str(data).split(":", 1)[0].split("?", 1)[0] == "synthetic"
    if synthetic and (faces is None or isinstance(faces, SyntheticFaces)):
        return
    what = data if faces is None or not synthetic else f"{data} ({type(faces).__name__})"
    raise ValueError(
        f"metric(s) {', '.join(asked)} need AU counterfactuals, which only the built-in "
        f"synthetic faces can render (data synthetic:…); the data is {what}"
    )


def shown_aus(faces: SyntheticFaces) -> tuple[int, ...]:
    """The AUs some class of ``faces`` shows (its codebook's), in :data:`ALL_AUS` order: the
    ``dose`` columns."""
    shown = {au for aus in faces.config.class_aus for au in aus}
    return tuple(au for au in ALL_AUS if au in shown)


def counterfactual_source(
    metrics: Sequence[str],
    faces: Dataset,
    config: TrainConfig,
    model: nn.Module,
    groups: Mapping[tuple[str, ...], Sequence[Explainer]],
    methods: Sequence[Explainer],
    steps: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> Callable[[Sequence[int], torch.Tensor], BatchCounterfactuals] | None:
    """``(indices, targets) -> BatchCounterfactuals`` of the evaluation loop's batches, or None
    when ``metrics`` hold no counterfactual metric.

    Args:
        metrics: the suite's metrics.
        faces: the evaluated split (``ValueError`` naming ``config.data`` unless synthetic
            faces).
        config: the model's training config: its ``data`` and ``size`` (the faces are
            rendered through ``EvalTransform(size)``, as the loop's).
        model: in eval mode, on ``device``.
        groups: resolved layers → the explainers scored there (the loop's); each call uses
            fresh instances of them (a control's random state is the loop's own).
        methods: every producer, in the loop's order.
        steps: explainer name → its post-processing (the loop's).
        device, batch_size: as the loop's.
    """
    if not counterfactual_metrics(metrics):
        return None
    require_synthetic(metrics, config.data, faces)
    rendered = copy.copy(faces)
    resize = EvalTransform(config.size)
    inner = faces.transform
    rendered.transform = resize if inner is None else (lambda sample: resize(inner(sample)))

    def maps_of(images: torch.Tensor, targets: torch.Tensor, landmarks: torch.Tensor):
        explained = {}
        for names, group in groups.items():
            fresh = [get_explainer(m.name) for m in group]
            produced = explain_batch(
                model, images, targets, list(names), fresh, landmarks=landmarks
            )
            explained |= produced.maps
        return [steps[m.name](raw.float()) for m in methods for raw in explained[m.name].values()]

    def build(indices: Sequence[int], targets: torch.Tensor) -> BatchCounterfactuals:
        return BatchCounterfactuals(
            model, rendered, list(indices), targets, maps_of, device=device, batch_size=batch_size
        )

    return build


class BatchCounterfactuals:
    """One batch's AU counterfactuals (the :class:`~aubench.metrics.kinds.Counterfactuals` of
    kinds ``causal`` and ``dose``), each part computed on first use.

    Args:
        model: in eval mode, on ``device``.
        faces: the synthetic faces, rendered as the model's inputs.
        indices: the batch's B item indices.
        targets: (B,) the explained classes.
        maps_of: every producer's maps (:data:`ProducerMaps`).
        scales: the dose steps.
        device, batch_size: where and how many images per forward and map call.
    """

    def __init__(
        self,
        model: nn.Module,
        faces: SyntheticFaces,
        indices: Sequence[int],
        targets: torch.Tensor,
        maps_of: ProducerMaps,
        scales: Sequence[float] = DEFAULT_SCALES,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.model, self.faces, self.indices = model, faces, list(indices)
        self.targets, self.maps_of, self.scales = targets, maps_of, tuple(scales)
        self.device, self.batch_size = device, batch_size
        self.aus = shown_aus(faces)

    @cached_property
    def _effects(self):
        return causal_effects(
            self.model,
            self.faces,
            self.indices,
            self.targets,
            device=self.device,
            batch_size=self.batch_size,
        )

    def effects(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) logit drops and (B, A) present, columns :data:`ALL_AUS`."""
        return self._effects.logit, self._effects.present

    def energy(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """(P, B, A): :func:`au_energy` of each producer's (B, H, W) maps in the regions drawn
        from the factual faces' landmarks, one call for all."""
        stacked = torch.stack(list(maps))
        count = stacked.shape[0]
        landmarks = self._effects.batch["landmarks"].to(stacked.device)
        image_size = tuple(self._effects.batch["image"].shape[-2:])
        shares = au_energy(
            stacked.flatten(0, 1), landmarks.repeat(count, 1, 1), image_size=image_size
        )
        return shares.unflatten(0, (count, -1))

    @cached_property
    def _dose(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dose_energies(
            self.model,
            self.faces,
            self.indices,
            self.aus,
            self.maps_of,
            self.targets,
            self.scales,
            device=self.device,
            batch_size=self.batch_size,
        )

    def dose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`dose_energies` of the batch: (P, S, B, D) energies, (S, B, D) logits."""
        return self._dose


def dose_energies(
    model: nn.Module,
    faces: SyntheticFaces,
    indices: Sequence[int],
    aus: Sequence[int],
    maps_of: ProducerMaps,
    targets: torch.Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dose curves of every AU of ``aus`` on every face of ``indices`` showing it, for every
    producer at once: :func:`~aubench.bench.counterfactual.dose_curve` batched over the (face,
    AU) pairs.

    Per scale s: the N pairs rendered with their AU at s × its intensity
    (:meth:`Intervention.scale`) in one ``counterfactuals`` call, the target logit from
    forwards of ``batch_size`` images, every producer's maps from ``maps_of`` on the same
    chunks, and each map's energy share in its pair's AU region drawn from that rendering's
    landmarks (:func:`au_energy`, one call per AU).

    Args:
        model: in eval mode, on ``device``.
        faces: the synthetic faces, rendered as the model's inputs.
        indices: B item indices.
        aus: the D AUs scored, each of :data:`ALL_AUS`.
        maps_of: every producer's maps (:data:`ProducerMaps`).
        targets: (B,) the classes scored.
        scales: S ≥ 2 factors in [0, 1].

    Returns:
        (P, S, B, D) map energy and (S, B, D) target logit, NaN where face b lacks AU d.
    """
    intensity = torch.stack([torch.from_numpy(faces.au_intensity(i)) for i in indices])
    columns = torch.tensor([ALL_AUS.index(au) for au in aus], dtype=torch.long)
    rows, dims = (intensity[:, columns] > 0).nonzero(as_tuple=True)
    pairs_au = [aus[d] for d in dims.tolist()]
    pairs_index = [indices[r] for r in rows.tolist()]
    targets = torch.as_tensor(targets).to(device)
    pair_targets = targets[rows.to(targets.device)]
    shape = (len(scales), len(indices), len(aus))
    logits = torch.full(shape, torch.nan, device=device)
    energies: torch.Tensor | None = None
    for step, scale in enumerate(scales):
        if not pairs_index:
            break
        batch = faces.counterfactuals(
            pairs_index, [Intervention.scale(au, scale) for au in pairs_au]
        )
        z, _ = _target_scores(_logits(model, batch["image"], device, batch_size), pair_targets)
        logits[step, rows, dims] = z.to(logits.dtype)
        parts = []
        for start in range(0, len(pairs_index), batch_size):
            chunk = slice(start, start + batch_size)
            images = batch["image"][chunk].to(device)
            landmarks = batch["landmarks"][chunk].to(device)
            parts.append(torch.stack(maps_of(images, pair_targets[chunk], landmarks)))
        maps = torch.cat(parts, 1).detach()  # (P, N, H, W)
        if energies is None:
            energies = torch.full((len(maps), *shape), torch.nan, device=maps.device)
        landmarks = batch["landmarks"].to(maps.device)
        image_size = tuple(batch["image"].shape[-2:])
        for d, au in enumerate(aus):
            mine = (dims == d).nonzero().squeeze(1)
            if len(mine) == 0:
                continue
            picked = maps[:, mine.to(maps.device)]  # (P, n, H, W)
            share = au_energy(
                picked.flatten(0, 1),
                landmarks[mine].repeat(len(maps), 1, 1),
                (au,),
                image_size=image_size,
            )
            energies[:, step, rows[mine], d] = share[:, 0].unflatten(0, (len(maps), -1))
    if energies is None:  # no face shows any of the AUs: the producers' count from one call
        energies = torch.full((0, *shape), torch.nan, device=device)
    return energies, logits
