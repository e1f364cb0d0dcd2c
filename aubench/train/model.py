"""The classifier a training config trains: :func:`build_model` (also used to rebuild one from a
checkpoint for evaluation)."""

from __future__ import annotations

from torch import nn

from aubench.models import create
from aubench.train.config import TrainConfig


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model ``config`` trains (timm model, weights, large maps, output stride), on the CPU.

    ``num_classes`` is the head's width K (logits (B, K)). A model that takes no
    ``output_stride`` while ``config.output_stride`` is set raises ``ValueError``.
    """
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
