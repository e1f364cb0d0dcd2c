"""The baseline or AU-guided training step and the per-epoch evaluation of one model.

Loss (shared/reference/paper-protocol.md §4.6): ``L = L_cls + L_align`` with
``L_align = λ · mean_l mean_valid(ℓ(T_l, A↓))`` (:mod:`aubench.train.losses`) when
``config.guided``; the AU heatmaps A are built per batch on the training device from the
transformed landmarks (:func:`aubench.data.batch.add_target_heatmaps`): the codebook's, or with
per-image ``config.evidence`` the maps of each image's AU evidence. The training method
(:func:`aubench.train.model.get_method`) then prepares the batch (CutMix mixes images and
heatmaps), runs the forward and gives the classification term ``L_cls`` (``CE(logits, y)`` for
``cam``; ``CE(A) + CE(B)`` for ACoL; CutMix's mixed CE).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from aubench.data.au_evidence import EVIDENCE_KEY
from aubench.data.batch import EVIDENCE_MAPS, add_heatmaps, add_target_heatmaps
from aubench.models import FeatureCapture, layer_attention, resolve_layers
from aubench.train.config import TrainConfig
from aubench.train.distributed import DistInfo
from aubench.train.evaluation import EvalAccumulator
from aubench.train.losses import AlignmentLoss
from aubench.train.model import build_model, get_method


@dataclass
class StepOutput:
    """One training step's detached results (tensors on the training device)."""

    loss: torch.Tensor
    ce: torch.Tensor
    align: torch.Tensor
    correct: torch.Tensor
    n: int

    def sums(self) -> torch.Tensor:
        """(loss·n, CE·n, align·n, correct, n) as float64, to add to an epoch's sums."""
        n = self.loss.new_tensor(float(self.n), dtype=torch.float64)
        values = (self.loss * n, self.ce * n, self.align * n, self.correct, n)
        return torch.stack([v.double() for v in values])


class Trainer:
    """A model, its optimiser and the (guided) training step and evaluation for ``config``.

    Builds :func:`~aubench.train.model.build_model` on ``device``, resolves ``config.layers`` to
    module names (unknown names → ``ValueError`` with suggestions) and checks that each produces
    a spatial map for a ``config.size`` input. With ``info.distributed`` the model is wrapped in
    DDP. :func:`aubench.train.loop.fit` runs the whole loop; the benchmark calls
    :meth:`train_step` directly.
    """

    def __init__(
        self,
        config: TrainConfig,
        num_classes: int,
        device: torch.device | str = "cpu",
        info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.info = info or DistInfo()
        torch.manual_seed(config.seed)
        self.method = get_method(config)
        self.model = build_model(config, num_classes).to(self.device)
        self.layers = resolve_layers(self.model, list(config.layers))
        #: each layer's (h, w) map size for a config.size input
        self.grids = self._check_spatial()
        self.net: nn.Module = self.model
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.alignment = AlignmentLoss(config.loss, config.lam, config.attention)
        self.optimizer = self._optimizer()
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)

    def _check_spatial(self) -> dict[str, tuple[int, int]]:
        """Each layer's (h, w) for a config.size input; ``ValueError`` if one is not spatial."""
        was_training = self.model.training
        self.model.eval()
        try:
            probe = torch.zeros(1, 3, self.config.size, self.config.size, device=self.device)
            with torch.no_grad(), FeatureCapture(self.model, self.layers) as capture:
                self.model(probe)
                return {name: tuple(capture.spatial(name).shape[-2:]) for name in self.layers}
        finally:
            self.model.train(was_training)

    def _optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        c = self.config
        if c.optimizer == "sgd":
            nesterov = c.momentum > 0
            return torch.optim.SGD(
                params, c.lr, momentum=c.momentum, nesterov=nesterov, weight_decay=c.weight_decay
            )
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def set_lr(self, lr: float) -> None:
        """Set every parameter group's learning rate to ``lr``."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def to_device(self, batch: dict) -> dict:
        """``image``, ``label``, ``landmarks`` (and the AU evidence, when the batch has it) of
        ``batch`` on the training device."""
        keys = ["image", "label", "landmarks", *([EVIDENCE_KEY] if EVIDENCE_KEY in batch else [])]
        return {k: batch[k].to(self.device, non_blocking=True) for k in keys}

    def with_heatmaps(self, batch: dict) -> dict:
        """``batch`` on the device plus its ``heatmap``, ``valid`` and ``invalid_reason``
        (:func:`~aubench.data.batch.add_heatmaps` with the config's codebook, regions and
        evidence: per-image evidence adds its maps as well)."""
        c = self.config
        return add_heatmaps(self.to_device(batch), c.codebook, c.regions, c.evidence)

    def with_targets(self, batch: dict) -> dict:
        """``batch`` on the device with the heatmaps guided training aligns with as ``heatmap``,
        ``valid`` and ``invalid_reason`` (:func:`~aubench.data.batch.add_target_heatmaps`:
        the codebook's, or the maps of each image's AU evidence)."""
        c = self.config
        return add_target_heatmaps(self.to_device(batch), c.codebook, c.regions, c.evidence)

    def train_step(self, batch: dict) -> StepOutput:
        """One optimisation step on ``batch`` (image, label, landmarks; any device)."""
        # heatmaps are built in float32, outside autocast
        batch = self.with_targets(batch) if self.config.guided else self.to_device(batch)
        batch = self.method.prepare(batch)
        labels = batch["label"]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            if self.config.guided:
                with FeatureCapture(self.model, self.layers) as capture:
                    logits = self.method.forward(self.net, self.model, batch)
                align = self.alignment(capture.features(), batch["heatmap"], batch["valid"])
            else:
                logits = self.method.forward(self.net, self.model, batch)
                align = logits.new_zeros((), dtype=torch.float32)
            ce = self.method.loss(self.model, logits, batch)
            loss = ce + align
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        correct = (logits.detach().argmax(1) == labels).sum()
        return StepOutput(loss.detach(), ce.detach(), align.detach(), correct, labels.numel())

    @torch.no_grad()
    def evaluate(self, loader: Iterable[dict], progress: bool = False, desc: str = "eval") -> dict:
        """Accuracy (%) and ATT-COS at every layer over ``loader`` (this rank's shard), summed over
        ranks, against the codebook's heatmaps and, with per-image evidence, against the
        evidence's too (:class:`~aubench.train.evaluation.EvalAccumulator`). Uses the unwrapped
        model, so ranks may see different numbers of batches."""
        self.model.eval()
        evidence = self.config.evidence != "codebook"
        meter = EvalAccumulator(self.num_classes, self.layers, self.device, evidence)
        for raw in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
            batch = self.with_heatmaps(raw)
            with (
                torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp),
                FeatureCapture(self.model, self.layers) as capture,
            ):
                logits = self.model(batch["image"])
            attentions = {
                name: layer_attention(capture.spatial(name).float(), self.config.attention)
                for name in self.layers
            }
            meter.update(
                logits.float(),
                batch["label"],
                attentions,
                batch["heatmap"],
                batch["valid"],
                batch["invalid_reason"],
                tuple(batch[key] for key in EVIDENCE_MAPS) if evidence else None,
            )
        meter.reduce()
        return meter.compute()
