"""The learning-rate schedules of :class:`~aubench.train.config.TrainConfig` (``schedule``)."""

from __future__ import annotations

import math

from aubench.train.config import TrainConfig


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
