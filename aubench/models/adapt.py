"""Feeding aubench's batches to a model as its card says, and reading its outputs in the
canonical class order.

aubench's datasets yield RGB images normalised with their own statistics (ImageNet's), at the
card's ``input_size``; labels are in the canonical order. While :func:`adapt_inputs_outputs` is
active, the model it yields takes those batches and returns scores in the dataset's canonical
class order:

- input (a forward pre-hook): ``pixels = images · source_std + source_mean`` (RGB on [0, 1]);
  grey models get the ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``; then
  ``(pixels − card.mean) / card.std`` (the dataset's statistics when the card gives none);
- output (a forward hook): the columns are reordered by :meth:`ModelCard.output_map` (model
  classes the dataset lacks are dropped); for ``output: probabilities`` the scores become
  ``log(max(p, 1e-12))``, so gradient explanations then explain log p (argmax is unchanged).

Hooks keep the model's own module names, so the card's layer specs resolve on the model as it
is. A TorchScript module takes no hooks: it is wrapped in a
:class:`~aubench.models.support.ScriptedForward` that carries them (its layers cannot be
captured; :mod:`aubench.models.support`). Always call the yielded module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from aubench.models.card import ModelCard
from aubench.models.support import ScriptedForward

#: ITU-R BT.601 luma weights of R, G, B.
LUMA = (0.299, 0.587, 0.114)
#: Probabilities are clamped to this before the log.
MIN_PROBABILITY = 1e-12


@contextlib.contextmanager
def adapt_inputs_outputs(
    model: nn.Module,
    card: ModelCard,
    *,
    source_mean: Sequence[float],
    source_std: Sequence[float],
    dataset_classes: int,
) -> Iterator[nn.Module]:
    """Within the ``with`` block, the yielded module (``model`` itself, hooked, or a TorchScript
    model's wrapper) takes the dataset's batches and returns canonical-order scores (module doc).

    ``source_mean``/``source_std``: the dataset's per-channel normalisation on [0, 1] pixels;
    ``dataset_classes``: 7 or 8. Raises ``ValueError`` at entry when a dataset class has no
    model output, when the card's channels differ from the model's first convolution's, or when
    the card's mean/std do not fit its channels; and during a forward pass when the images are
    not the dataset's channels at the card's input size or the model's output width is not the
    card's number of classes (each message names both values).
    """
    index = card.output_map(dataset_classes)
    mean = card.mean or tuple(source_mean)
    std = card.std or tuple(source_std)
    if card.channels not in (1, len(source_mean)) or len(mean) != card.channels:
        raise ValueError(
            f"the card's channels: {card.channels} does not fit the dataset's "
            f"{len(source_mean)}-channel images with mean {list(mean)}; a grey model's card "
            "needs its own mean and std (one value each)"
        )
    _check_input_channels(model, card.channels)
    width = len(card.classes) if card.classes is not None else dataset_classes
    names = ", ".join(card.classes) if card.classes is not None else "the canonical order"

    def convert(module: nn.Module, args: tuple) -> tuple:
        images = args[0]
        if images.dim() != 4 or images.shape[1] != len(source_mean):
            raise ValueError(
                f"the adapted model takes the dataset's (B, {len(source_mean)}, H, W) images, "
                f"got shape {tuple(images.shape)}"
            )
        if tuple(images.shape[-2:]) != card.input_size:
            raise ValueError(
                f"images are {images.shape[-2]}×{images.shape[-1]} px but the model card's "
                f"input_size is {card.input_size[0]}×{card.input_size[1]}; load the data at "
                "the card's size"
            )
        pixels = images * _column(images, source_std) + _column(images, source_mean)
        if card.channels == 1 and images.shape[1] == 3:
            pixels = (pixels * _column(images, LUMA)).sum(1, keepdim=True)
        return ((pixels - _column(images, mean)) / _column(images, std), *args[1:])

    def reorder(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(output) or output.dim() != 2:
            shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise ValueError(f"the model returned {shape}, expected (B, classes) scores")
        if output.shape[1] != width:
            raise ValueError(
                f"the model outputs {output.shape[1]} scores per image but its card lists "
                f"{width} classes ({names})"
            )
        scores = output[:, torch.tensor(index, device=output.device)]
        return scores.clamp_min(MIN_PROBABILITY).log() if card.output == "probabilities" else scores

    target = ScriptedForward(model) if isinstance(model, torch.jit.ScriptModule) else model
    handles = [target.register_forward_pre_hook(convert), target.register_forward_hook(reorder)]
    try:
        yield target
    finally:
        for handle in handles:
            handle.remove()


def _check_input_channels(model: nn.Module, channels: int) -> None:
    """The first 4-D weight (the first convolution, (out, in, kh, kw)) must take ``channels``."""
    for name, parameter in model.named_parameters():
        if parameter.dim() == 4:
            if parameter.shape[1] != channels:
                raise ValueError(
                    f"the model's first convolution ({name}, weight {list(parameter.shape)}) "
                    f"takes {parameter.shape[1]} input channel(s) but its card says channels: "
                    f"{channels} (1 = grey, 3 = RGB)"
                )
            return


def _column(images: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    return images.new_tensor(values).view(1, -1, 1, 1)
