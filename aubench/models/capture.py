"""Feature capture by forward hooks, with ViT tokens reshaped to their patch grid.

No architectural change: hooks record each named module's output during the forward pass, in
the autograd graph (nothing is detached), and are removed when the ``with`` block ends. An
output that the model later modifies in place (timm's ResNet blocks add the shortcut into
``bn2``'s output) is detected and refused rather than silently reporting the modified values.

Layouts handled by :meth:`FeatureCapture.spatial`:
- CNN maps (B, C, H, W) as they are; channels-last models (timm ``output_fmt == "NHWC"``, e.g.
  Swin) are permuted to (B, C, H, W);
- transformer tokens (B, N, C): the model's ``num_prefix_tokens`` leading tokens (class,
  distillation and register tokens), when present, are dropped and the patch tokens are
  reshaped to the (H/p, W/p) patch grid of the input, giving (B, C, H/p, W/p).
Any other output (pooled vectors, tuples) is not spatial and is an error when asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from aubench.models.support import check_layer_access


class FeatureCapture:
    """Context manager recording the outputs of ``layers`` (module names) of ``model``.

    ``raw[name]`` is the module's last output exactly as produced; ``spatial(name)`` is it as
    (B, C, H, W); ``features()`` gives every layer's spatial map. With ``strict=False`` unknown
    names are ignored (used to list layers); with ``strict=True`` they raise ``ValueError``.
    A TorchScript model raises :class:`~aubench.models.support.LayerAccessError`.

    Example::

        with FeatureCapture(model, ["layer4"]) as capture:
            logits = model(images)
        attention = capture.spatial("layer4").mean(1)        # (B, H, W)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], strict: bool = True):
        check_layer_access(model)
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing and strict:
            raise ValueError(f"{type(model).__name__} has no module named {missing[0]!r}")
        self.model = model
        self.layers = [name for name in layers if name in modules]
        self.raw: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}
        self._input_size: tuple[int, int] | None = None
        self._modules = modules
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureCapture:
        self._handles.append(self.model.register_forward_pre_hook(self._record_input))
        for name in self.layers:
            self._handles.append(self._modules[name].register_forward_hook(self._recorder(name)))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook (idempotent); recorded tensors stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget recorded outputs (frees their memory between batches)."""
        self.raw.clear()

    def _record_input(self, module: nn.Module, args: tuple) -> None:
        if args and torch.is_tensor(args[0]) and args[0].dim() == 4:
            self._input_size = tuple(args[0].shape[-2:])

    def _recorder(self, name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            if torch.is_tensor(output):
                self.raw[name] = output
                self._versions[name] = output._version

        return hook

    def grid(self, name: str) -> tuple[int, int] | None:
        """The (H, W) grid of layer ``name``'s output, or None when it is not spatial."""
        raw = self.raw[name]
        if raw.dim() == 4:
            return tuple(raw.shape[1:3]) if _channels_last(self.model) else tuple(raw.shape[2:])
        if raw.dim() == 3:
            return self._token_grid(raw.shape[1])
        return None

    def spatial(self, name: str, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """Layer ``name``'s output (or ``tensor`` of the same layout, e.g. its gradient) as
        (B, C, H, W). Raises ``ValueError`` when the layer's output is not spatial."""
        if name not in self.raw:
            raise ValueError(f"layer {name!r} produced no tensor output in the last forward pass")
        if self.raw[name]._version != self._versions[name]:
            raise ValueError(
                f"layer {name!r}'s output was modified in place after the layer returned it (e.g. "
                "a residual `x += shortcut` or an in-place activation), so its recorded value is "
                "not the layer's output; capture the enclosing block instead"
            )
        raw = self.raw[name] if tensor is None else tensor
        grid = self.grid(name)
        if grid is None:
            raise ValueError(
                f"layer {name!r} output of shape {tuple(self.raw[name].shape)} is not spatial; "
                "choose a convolutional stage or a transformer block"
            )
        if raw.dim() == 4:
            return raw.permute(0, 3, 1, 2) if _channels_last(self.model) else raw
        prefix = raw.shape[1] - grid[0] * grid[1]
        tokens = raw[:, prefix:]
        return tokens.transpose(1, 2).reshape(raw.shape[0], raw.shape[2], *grid)

    def features(self) -> dict[str, torch.Tensor]:
        """Every captured layer as a (B, C, H, W) map, in the order the layers were given."""
        return {name: self.spatial(name) for name in self.layers}

    def _token_grid(self, tokens: int) -> tuple[int, int] | None:
        """The patch grid of ``tokens`` tokens: with or without the model's prefix tokens."""
        prefix = getattr(self.model, "num_prefix_tokens", None)
        if prefix is None:
            return None
        patch_embed = getattr(self.model, "patch_embed", None)
        if self._input_size is not None and patch_embed is not None:
            ph, pw = _pair(getattr(patch_embed, "patch_size", 1))
            grid = (self._input_size[0] // ph, self._input_size[1] // pw)
            if grid[0] * grid[1] in (tokens - prefix, tokens):
                return grid
        side = math.isqrt(tokens - prefix)
        return (side, side) if side * side == tokens - prefix and side > 0 else None


def _channels_last(model: nn.Module) -> bool:
    return str(getattr(model, "output_fmt", "NCHW")) == "NHWC"


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)
