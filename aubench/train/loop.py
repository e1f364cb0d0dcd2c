"""The resumable, distributed training loop: :func:`fit` trains (or resumes) one run.

Each epoch: the learning rate of :func:`~aubench.train.schedule.learning_rate` at every step,
:meth:`~aubench.train.step.Trainer.train_step` over this rank's shard, then evaluation of every
split (:mod:`aubench.train.data`), ``best.pt`` when the selection accuracy improves and
``last.pt`` (files: :mod:`aubench.train.run_folder`). Every input (model, layers, λ, data,
checkpoint) is checked before anything is written. Running the same command again resumes from
``last.pt`` — mid-epoch when it was saved mid-epoch — and reproduces an uninterrupted run bit for
bit on CPU with ``deterministic: true``.

Distributed (torchrun): every rank trains on its shard (:class:`ShardSampler`, same number of
steps per rank), DDP averages gradients, buffers are synchronised from rank 0 before each
evaluation, evaluation shards the split without duplicates and sums counts over ranks, and only
rank 0 writes files and shows progress.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from aubench.data.transforms import sample_seed
from aubench.io import FolderLock, write_atomic
from aubench.train import distributed
from aubench.train.checkpoint import CheckpointError, rng_state, save_checkpoint, set_rng_state
from aubench.train.config import TrainConfig
from aubench.train.data import load_data, make_loader, training_data_fingerprint
from aubench.train.distributed import DistInfo, ShardSampler
from aubench.train.run_folder import (
    DATA_FILE,
    TensorBoardLog,
    check_run_dir,
    prepare_run_dir,
    write_metrics,
)
from aubench.train.schedule import learning_rate
from aubench.train.step import Trainer


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_steps`` test hook: the run stops as if killed (no save)."""


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
        try:
            return run.run(save_every, stop_after_steps)
        finally:
            run.release()
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
        # the model folder is locked (rank 0) only once every input, the folder included, has been
        # checked; then checked again under the lock, and its last.pt read
        self.data_fingerprint = training_data_fingerprint(config)
        check_run_dir(config, self.out, self.data_fingerprint)
        self.lock = FolderLock(self.out, "model folder") if info.main else nullcontext()
        self.lock.__enter__()
        try:
            self.resume = prepare_run_dir(config, self.out, self.data_fingerprint)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release the model folder's lock (see :class:`~aubench.io.FolderLock`)."""
        self.lock.__exit__(None, None, None)

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
        distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
        if info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            config.save(self.out / "config.yaml")
            write_atomic(self.out / DATA_FILE, self.data_fingerprint.encode())
        distributed.barrier()
        board = TensorBoardLog(self.out / "tensorboard", self.tensorboard and info.main)
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
