"""Training: alignment losses, config, checkpoints, the model and its data, the training step and
the (distributed, resumable) loop.

The names below are imported on first use (module ``__getattr__``), so that the command line can
build its ``train`` options from :mod:`aubench.train.config` without loading torch.
"""

from __future__ import annotations

import importlib

#: public name → the module of aubench.train that defines it
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CONFIG_VERSION": "config",
    "ConfigError": "config",
    "TrainConfig": "config",
    "add_config_arguments": "config",
    "config_from_arguments": "config",
    "EvalAccumulator": "evaluation",
    "attention_cosine": "evaluation",
    "TrainingInterrupted": "loop",
    "fit": "loop",
    "AlignmentLoss": "losses",
    "alignment_loss": "losses",
    "per_sample_alignment": "losses",
    "resize_clamped": "losses",
    "ALIGN_LOSSES": "options",
    "learning_rate": "schedule",
    "Trainer": "step",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
