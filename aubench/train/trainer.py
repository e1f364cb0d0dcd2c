"""Baseline and AU-guided training: the step, the evaluation, and the resumable, distributed loop.

Loss (shared/reference/paper-protocol.md §4.6): ``L = CE(logits, y) + L_align`` with
``L_align = λ · mean_l mean_valid(ℓ(T_l, A↓))`` (:mod:`aubench.train.losses`) when
``config.guided``; the AU heatmaps A are built per batch on the training device from the
transformed landmarks (:func:`aubench.faces.heatmaps.au_heatmaps`).

A run folder (``--out``, default ``runs/<model>-<baseline|guided>-<config hash>``) holds
``config.yaml``, ``last.pt`` (every epoch, and every ``save_every`` steps), ``best.pt`` (the
epoch with the highest selection accuracy; ties keep the earlier epoch), ``metrics.csv`` (one row
per epoch: lr, train loss/CE/alignment/accuracy, and accuracy, ATT-COS and counts of each
evaluated split), ``summary.json`` at the end, and ``tensorboard/`` when TensorBoard is
installed. Running the same command again resumes from ``last.pt`` — mid-epoch when it was saved
mid-epoch — and reproduces an uninterrupted run bit for bit on CPU with ``deterministic: true``;
a folder holding a run of another config is refused (both hashes named) and nothing in it is
overwritten. Every input (model, layers, λ, data, checkpoint) is checked before anything is
written.

Validation: ``validation: holdout`` selects on a split held out of training (``val_fraction`` of
it) and also scores the test split each epoch; ``validation: test`` is the paper's protocol —
train on the whole training split and select on the test split (its accuracies are optimistic).

Distributed (torchrun): every rank trains on its shard (:class:`ShardSampler`, same number of
steps per rank), DDP averages gradients, buffers are synchronised from rank 0 before each
evaluation, evaluation shards the split without duplicates and sums counts over ranks, and only
rank 0 writes files and shows progress.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from aubench.data.transforms import (
    EvalTransform,
    TrainTransform,
    TransformedDataset,
    sample_seed,
)
from aubench.faces.heatmaps import au_heatmaps, invalid_reasons
from aubench.io import write_atomic
from aubench.models import FeatureCapture, create, layer_attention, resolve_layers
from aubench.train import distributed
from aubench.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from aubench.train.config import TrainConfig
from aubench.train.distributed import DistInfo, ShardSampler
from aubench.train.evaluation import EvalAccumulator
from aubench.train.losses import AlignmentLoss


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_steps`` test hook: the run stops as if killed (no save)."""


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


def learning_rate(config: TrainConfig, epoch: float) -> float:
    """The learning rate at fractional epoch ``epoch`` (0 = start of training).

    - ``constant``: ``lr``;
    - ``step`` (the paper's ``MyStepLR``): ``max(lr · γ^⌊e/step_every⌋, min_lr)``, per whole epoch;
    - ``cosine``: linear warm-up over ``warmup_epochs``, then
      ``min_lr + (lr − min_lr)·½(1 + cos(π·(e − w)/(epochs − w)))``, per step.
    """
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        decays = int(epoch) // config.step_every
        return max(config.lr * config.step_gamma**decays, config.min_lr)
    warmup = config.warmup_epochs
    if epoch < warmup:
        return config.lr * epoch / warmup
    span = max(config.epochs - warmup, 1e-12)
    progress = min((epoch - warmup) / span, 1.0)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model ``config`` trains (timm model, weights, large maps, output stride), on the CPU."""
    extra = {} if config.output_stride is None else {"output_stride": config.output_stride}
    try:
        return create(
            config.model,
            num_classes,
            config.pretrained,
            img_size=config.size,
            large_maps=config.large_maps,
            **extra,
        )
    except TypeError as err:
        if not extra:
            raise
        raise ValueError(f"model {config.model!r} takes no output_stride ({err})") from err


class Trainer:
    """A model, its optimiser and the (guided) training step and evaluation for ``config``.

    Builds ``aubench.models.create(config.model, num_classes, ...)`` on ``device``, resolves
    ``config.layers`` to module names (unknown names → ``ValueError`` with suggestions) and checks
    that each produces a spatial map for a ``config.size`` input. With ``info.distributed`` the
    model is wrapped in DDP. :func:`fit` runs the whole loop; the benchmark calls
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
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def heatmaps(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """AU heatmaps (B, H, W) and valid flags (B,) of a batch already on the device."""
        c = self.config
        size = tuple(batch["image"].shape[-2:])
        return au_heatmaps(batch["landmarks"], batch["label"], size, c.codebook, c.regions)

    def invalid_reasons(self, batch: dict, valid: torch.Tensor) -> torch.Tensor:
        """(B,) :class:`~aubench.faces.heatmaps.InvalidReason` codes of a batch's heatmaps."""
        c = self.config
        return invalid_reasons(batch["landmarks"], batch["label"], valid, c.codebook, c.regions)

    def to_device(self, batch: dict) -> dict:
        keys = ("image", "label", "landmarks")
        return {k: batch[k].to(self.device, non_blocking=True) for k in keys}

    def train_step(self, batch: dict) -> StepOutput:
        """One optimisation step on ``batch`` (image, label, landmarks; any device)."""
        batch = self.to_device(batch)
        images, labels = batch["image"], batch["label"]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.guided:  # built in float32, outside autocast
            maps, valid = self.heatmaps(batch)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            if self.config.guided:
                with FeatureCapture(self.model, self.layers) as capture:
                    logits = self.net(images)
                align = self.alignment(capture.features(), maps, valid)
            else:
                logits = self.net(images)
                align = logits.new_zeros((), dtype=torch.float32)
            ce = F.cross_entropy(logits.float(), labels)
            loss = ce + align
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        correct = (logits.detach().argmax(1) == labels).sum()
        return StepOutput(loss.detach(), ce.detach(), align.detach(), correct, labels.numel())

    @torch.no_grad()
    def evaluate(self, loader: Iterable[dict], progress: bool = False, desc: str = "eval") -> dict:
        """Accuracy (%) and ATT-COS at every layer over ``loader`` (this rank's shard), summed over
        ranks. Uses the unwrapped model, so ranks may see different numbers of batches."""
        self.model.eval()
        meter = EvalAccumulator(self.num_classes, self.layers, self.device)
        for raw in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
            batch = self.to_device(raw)
            maps, valid = self.heatmaps(batch)
            with (
                torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp),
                FeatureCapture(self.model, self.layers) as capture,
            ):
                logits = self.model(batch["image"])
            attentions = {
                name: layer_attention(capture.spatial(name).float(), self.config.attention)
                for name in self.layers
            }
            reasons = self.invalid_reasons(batch, valid)
            meter.update(logits.float(), batch["label"], attentions, maps, valid, reasons)
        meter.reduce()
        return meter.compute()


# ---------------------------------------------------------------------------------------------
# data


def open_split(config: TrainConfig, split: str) -> Dataset:
    """Split ``split`` of ``config.data`` with images in [0, 1] (the transforms normalise)."""
    from aubench.data.registry import open_dataset  # every loader: imported only to train

    return open_dataset(
        config.data,
        split,
        size=config.size,
        seed=config.seed,
        val_fraction=config.val_fraction,
        num_classes=config.num_classes,
        normalize=False,
    )


@dataclass
class RunData:
    """The training set and the evaluated splits, with their loaders' samplers."""

    train: TransformedDataset
    evals: dict[str, TransformedDataset]
    num_classes: int
    select: str  # the split whose accuracy selects the best checkpoint


def load_data(config: TrainConfig) -> RunData:
    """Open the training split and the evaluated splits (``validation`` in the module doc).

    Under ``validation: test`` the model trains on the whole training split: where the dataset
    carves its validation split out of train, the carved part is added back.
    """
    train = open_split(config, "train")
    num_classes = int(getattr(train, "num_classes", config.num_classes or 7))
    if config.validation == "test" and _carves_validation(train):
        train = ConcatDataset([train, open_split(config, "val")])
    if not len(train):
        raise ValueError(f"dataset {config.data!r} has an empty training split")
    names = ("val", "test") if config.validation == "holdout" else ("test",)
    evals = {}
    for name in names:
        data = open_split(config, name)
        if len(data):
            evals[name] = TransformedDataset(data, EvalTransform(config.size), config.seed)
    select = "val" if config.validation == "holdout" else "test"
    if select not in evals:
        raise ValueError(f"dataset {config.data!r} has an empty {select} split to select on")
    transform = TrainTransform(config.size) if config.augment else EvalTransform(config.size)
    return RunData(TransformedDataset(train, transform, config.seed), evals, num_classes, select)


def _carves_validation(dataset: Dataset) -> bool:
    """Whether ``dataset``'s ``val`` split is a part of its training split (no shipped val)."""
    table = getattr(dataset, "table", None)
    return table is not None and not getattr(table, "has_val", True)


def make_loader(
    dataset: Dataset, sampler: ShardSampler, batch_size: int, workers: int, train: bool, pin: bool
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=train,
        pin_memory=pin,
    )


# ---------------------------------------------------------------------------------------------
# the run folder


def prepare_run_dir(config: TrainConfig, out: Path) -> dict | None:
    """Check ``out`` for this config; return the ``last.pt`` state to resume from, or None.

    A folder with a ``config.yaml`` of another hash is refused (``FileExistsError`` naming both
    hashes); a non-empty folder that is not a run is refused; a corrupt ``last.pt`` raises
    :class:`CheckpointError`. Nothing is written here.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"run folder {out} exists and is not a directory")
    stored_path = out / "config.yaml"
    if stored_path.is_file():
        stored = TrainConfig.load(stored_path)
        if stored.hash() != config.hash():
            raise FileExistsError(
                f"{out} holds a run of config {stored.hash()}, not this config {config.hash()}; "
                "use another --out (or the default, named after the hash) or delete the folder"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no aubench run (no config.yaml)")
    last = out / "last.pt"
    if not last.is_file():
        return None
    state = load_checkpoint(last)
    if state.get("config_hash") != config.hash():
        raise CheckpointError(
            f"{last} belongs to config {state.get('config_hash')}, not {config.hash()}"
        )
    return state


def write_metrics(path: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.csv`` from the full history, atomically (columns: union, in order)."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomic(path, text.getvalue().encode())


class _TensorBoard:
    """Scalars to ``<run>/tensorboard`` when TensorBoard is installed (else nothing)."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.writer = SummaryWriter(str(folder))

    def log(self, row: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------------
# the loop


def fit(
    config: TrainConfig,
    *,
    out: str | os.PathLike | None = None,
    runs_root: str | os.PathLike = "runs",
    device: str | None = None,
    workers: int = 0,
    progress: bool = True,
    tensorboard: bool = True,
    save_every: int = 0,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run of ``config`` and return its summary (also ``summary.json``).

    Args:
        config: the run's :class:`TrainConfig`.
        out: run folder; default ``<runs_root>/<config.run_name()>``.
        device: ``cpu``, ``cuda``, ``cuda:1``…; default CUDA when available (per local rank).
        workers: DataLoader worker processes per rank (results do not depend on it).
        progress: tqdm bars on rank 0.
        tensorboard: also log to ``<run>/tensorboard`` when TensorBoard is installed.
        save_every: also save ``last.pt`` every this many steps (0: at epoch ends only), so a
            killed run resumes mid-epoch.
        stop_after_steps: test hook simulating a crash: raise :class:`TrainingInterrupted` after
            this many optimisation steps of this invocation, without saving.
    """
    joined = distributed.active()  # a caller (the suite runner) may hold the group already
    info, target = distributed.setup(device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        run = _Run(config, info, target, out, runs_root, workers, progress, tensorboard)
        return run.run(save_every, stop_after_steps)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        if not joined:
            distributed.teardown()


class _Run:
    """State of one :func:`fit` invocation (see there)."""

    def __init__(
        self,
        config: TrainConfig,
        info: DistInfo,
        device: torch.device,
        out: str | os.PathLike | None,
        runs_root: str | os.PathLike,
        workers: int,
        progress: bool,
        tensorboard: bool,
    ) -> None:
        self.config, self.info, self.device = config, info, device
        self.out = Path(out) if out is not None else Path(runs_root) / config.run_name()
        # everything is validated before the run folder is touched
        self.data = load_data(config)
        self.trainer = Trainer(config, self.data.num_classes, device, info)
        self.resume = prepare_run_dir(config, self.out)
        self.workers, self.progress = workers, progress and info.main
        self.tensorboard = tensorboard
        pin = device.type == "cuda"
        self.sampler = ShardSampler(
            len(self.data.train),
            shuffle=True,
            pad=True,
            seed=config.seed,
            rank=info.rank,
            world=info.world,
        )
        self.train_loader = make_loader(
            self.data.train, self.sampler, config.batch_size, workers, True, pin
        )
        self.eval_loaders = {
            name: make_loader(
                data,
                ShardSampler(len(data), shuffle=False, pad=False, rank=info.rank, world=info.world),
                config.eval_batch_size,
                workers,
                False,
                pin,
            )
            for name, data in self.data.evals.items()
        }
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size {config.batch_size} exceeds the {len(self.sampler)} training samples "
                f"per rank; lower --batch-size"
            )

    # --- checkpoint state ------------------------------------------------------------------

    def _state(self, epoch: int, step: int, global_step: int, sums: torch.Tensor) -> dict:
        rngs = distributed.all_gather_objects(rng_state())
        return {
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.hash(),
            "model": self.trainer.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "scaler": self.trainer.scaler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step,
            "global_step": global_step,
            "sums": distributed.all_gather_objects(sums.detach().cpu()),
            "rng": rngs,
            "history": list(self.history),
            "best": dict(self.best),
            "world_size": self.info.world,
        }

    def _save_last(self, epoch: int, step: int, global_step: int, sums: torch.Tensor) -> None:
        state = self._state(epoch, step, global_step, sums)  # collective: every rank
        if self.info.main:
            save_checkpoint(self.out / "last.pt", state)
        distributed.barrier()

    def _restore(self, state: dict) -> tuple[int, int, int, torch.Tensor]:
        if state.get("world_size", 1) != self.info.world and state["step_in_epoch"]:
            raise CheckpointError(
                f"{self.out / 'last.pt'} was saved mid-epoch by {state['world_size']} processes; "
                f"resume it with the same number of processes (now {self.info.world})"
            )
        self.trainer.model.load_state_dict(state["model"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)
        if state["step_in_epoch"]:
            sums += state["sums"][self.info.rank].to(self.device)
            set_rng_state(state["rng"][self.info.rank])
        return state["epoch"], state["step_in_epoch"], state["global_step"], sums

    # --- the loop --------------------------------------------------------------------------

    def run(self, save_every: int, stop_after_steps: int | None) -> dict[str, Any]:
        config, info = self.config, self.info
        self.history: list[dict] = []
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None}
        epoch, step, global_step = 0, 0, 0
        # per-epoch train sums (loss·n, CE·n, align·n, correct, n), see StepOutput.sums
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)
        if self.resume is not None:
            epoch, step, global_step, sums = self._restore(self.resume)
        if info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            config.save(self.out / "config.yaml")
        distributed.barrier()
        board = _TensorBoard(self.out / "tensorboard", self.tensorboard and info.main)
        started, steps_run = time.perf_counter(), 0
        try:
            while epoch < config.epochs:
                if step == 0:
                    torch.manual_seed(sample_seed(config.seed, epoch, info.rank))
                    sums.zero_()
                self.sampler.set_epoch(epoch, start=step * config.batch_size)
                self.data.train.set_epoch(epoch)
                epoch_start = time.perf_counter()
                bar = tqdm(
                    self.train_loader,
                    desc=f"epoch {epoch + 1}/{config.epochs}",
                    initial=step,
                    total=self.steps_per_epoch,
                    disable=not self.progress,
                    unit="step",
                    dynamic_ncols=True,
                )
                for batch in bar:
                    lr = learning_rate(config, epoch + step / self.steps_per_epoch)
                    self.trainer.set_lr(lr)
                    out = self.trainer.train_step(batch)
                    sums += out.sums()
                    step, global_step, steps_run = step + 1, global_step + 1, steps_run + 1
                    if self.progress and (step % 10 == 0 or step == self.steps_per_epoch):
                        n = float(sums[4])
                        bar.set_postfix(
                            loss=f"{float(sums[0]) / n:.4f}", acc=f"{100 * float(sums[3]) / n:.1f}%"
                        )
                    mid_epoch = step < self.steps_per_epoch
                    if save_every and global_step % save_every == 0 and mid_epoch:
                        self._save_last(epoch, step, global_step, sums)
                    if stop_after_steps is not None and steps_run >= stop_after_steps:
                        raise TrainingInterrupted(
                            f"stopped after {steps_run} steps (stop_after_steps test hook)"
                        )
                bar.close()
                row = self._end_epoch(epoch, global_step, sums, time.perf_counter() - epoch_start)
                board.log(row, epoch + 1)
                epoch, step = epoch + 1, 0
                self._save_last(epoch, 0, global_step, sums)
            return self._finish(time.perf_counter() - started)
        finally:
            board.close()

    def _end_epoch(self, epoch: int, global_step: int, sums: torch.Tensor, seconds: float) -> dict:
        distributed.all_reduce_sum(sums)
        n = max(float(sums[4]), 1.0)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": global_step,
            "lr": self.trainer.optimizer.param_groups[0]["lr"],
            "train_loss": float(sums[0]) / n,
            "train_ce": float(sums[1]) / n,
            "train_align": float(sums[2]) / n,
            "train_acc": 100 * float(sums[3]) / n,
        }
        distributed.sync_buffers(self.trainer.model)
        for name, loader in self.eval_loaders.items():
            scores = self.trainer.evaluate(loader, self.progress, desc=f"{name} {epoch + 1}")
            row |= {f"{name}_{key}": value for key, value in scores.items()}
        row["time_s"] = round(seconds, 3)
        self.history.append(row)
        score = row.get(f"{self.data.select}_acc", -math.inf)
        improved = score > self.best["score"]
        if improved:
            self.best = {"score": score, "epoch": epoch + 1}
        if self.info.main:
            if improved:
                best = {
                    "config": self.config.model_dump(mode="json"),
                    "config_hash": self.config.hash(),
                    "model": self.trainer.model.state_dict(),
                    "epoch": epoch + 1,
                    "metrics": row,
                }
                save_checkpoint(self.out / "best.pt", best)
            write_metrics(self.out / "metrics.csv", self.history)
        return row

    def _finish(self, seconds: float) -> dict[str, Any]:
        divergence = distributed.max_divergence(self.trainer.model)
        best_epoch = self.best["epoch"]
        summary = {
            "run": str(self.out),
            "config_hash": self.config.hash(),
            "epochs": self.config.epochs,
            "select": f"{self.data.select}_acc",
            "best_epoch": best_epoch,
            "best": self.history[best_epoch - 1] if best_epoch else None,
            "last": self.history[-1] if self.history else None,
            "world_size": self.info.world,
            "ranks_in_sync": divergence == 0.0,
            "max_rank_divergence": divergence,
            "eval_sizes": {name: len(data) for name, data in self.data.evals.items()},
            "layer_grids": {name: list(grid) for name, grid in self.trainer.grids.items()},
            "wall_s": round(seconds, 3),
        }
        if divergence != 0.0:
            raise RuntimeError(f"DDP ranks diverged: max |Δ| = {divergence:g} between ranks")
        if self.info.main:
            write_atomic(self.out / "summary.json", json.dumps(summary, indent=2).encode())
        distributed.barrier()
        return summary
