"""Training: alignment losses, config, checkpoints, the (distributed, resumable) trainer."""

from aubench.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aubench.train.config import (
    CONFIG_VERSION,
    ConfigError,
    TrainConfig,
    add_config_arguments,
    config_from_arguments,
)
from aubench.train.evaluation import EvalAccumulator, attention_cosine
from aubench.train.losses import (
    ALIGN_LOSSES,
    AlignmentLoss,
    alignment_loss,
    per_sample_alignment,
    resize_clamped,
)
from aubench.train.trainer import Trainer, TrainingInterrupted, fit, learning_rate

__all__ = [
    "ALIGN_LOSSES",
    "CONFIG_VERSION",
    "AlignmentLoss",
    "CheckpointError",
    "ConfigError",
    "EvalAccumulator",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "add_config_arguments",
    "alignment_loss",
    "attention_cosine",
    "config_from_arguments",
    "fit",
    "learning_rate",
    "load_checkpoint",
    "per_sample_alignment",
    "resize_clamped",
    "save_checkpoint",
]
