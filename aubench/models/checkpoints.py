"""Reading weights files into a model, with a report of what matched and what did not.

Accepted files (recognised by content, not by suffix):

- a ``.safetensors`` file;
- a ``torch.save`` state dict, read with ``weights_only=True`` (no code runs);
- an aubench training checkpoint (``aubench train``'s ``best.pt``/``last.pt``: the state dict is
  under ``model`` and the training config under ``config``);
- common wrappers: the state dict under ``state_dict``, ``model`` or ``model_state_dict``, and
  the ``module.`` (DDP) or ``_orig_mod.`` (``torch.compile``) prefix on every key.

:func:`load_state` names missing and unexpected keys and refuses a shape mismatch (the key, both
shapes, the file); with ``strict=False`` it loads what matches and reports what it skipped.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Keys under which checkpoints commonly keep the state dict, tried in this order.
STATE_KEYS = ("model", "state_dict", "model_state_dict")
#: The ``format`` tag of an aubench training checkpoint (as ``aubench.train.checkpoint`` writes).
AUBENCH_CHECKPOINT_FORMAT = "aubench-train-checkpoint"
#: Prefixes stripped when every key carries one (DDP, torch.compile).
PREFIXES = ("module.", "_orig_mod.")
_LISTED = 8  # names shown per kind of problem in a message


@dataclass(frozen=True)
class WeightsFile:
    """The tensors of a weights file (unwrapped, prefix stripped), and the training config when
    it is an aubench checkpoint (``{}`` otherwise)."""

    path: Path
    state: Mapping[str, torch.Tensor]
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_state` did: the keys loaded, the model's keys the file lacks (missing),
    the file's keys the model lacks (unexpected), and (key, file shape, model shape) for the
    keys present in both with different shapes (mismatched). Only ``loaded`` was loaded."""

    path: Path
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]

    @property
    def complete(self) -> bool:
        """Whether every tensor of the model and of the file was loaded."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        text = f"loaded {len(self.loaded)} of the model's {total} tensors from {self.path}"
        return text if self.complete else f"{text}; skipped: {'; '.join(self.problems)}"

    @property
    def problems(self) -> list[str]:
        """One line per kind of problem (missing, unexpected, mismatched), naming the keys."""
        problems = []
        if self.missing:
            problems.append(f"missing from the file: {_names(self.missing)}")
        if self.unexpected:
            problems.append(f"not in the model: {_names(self.unexpected)}")
        if self.mismatched:
            shapes = [
                f"{k} {list(a)} in the file, {list(b)} in the model" for k, a, b in self.mismatched
            ]
            problems.append(f"shape mismatch: {_names(shapes)}")
        return problems


def read_weights(path: str | os.PathLike) -> WeightsFile:
    """The tensors of weights file ``path`` (the kinds in the module doc).

    Raises ``FileNotFoundError`` for a missing file and one ``ValueError`` naming the file when it
    is corrupt, is not a weights file, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        if is_safetensors(path):
            from safetensors.torch import load_file

            raw: Any = load_file(path)
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {path} is corrupt or not a weights file ({type(err).__name__}: "
            f"{str(err)[:200]})"
        ) from None
    aubench = isinstance(raw, dict) and raw.get("format") == AUBENCH_CHECKPOINT_FORMAT
    config = raw.get("config") if aubench else None
    for key in STATE_KEYS:
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not isinstance(raw, dict) or not any(torch.is_tensor(v) for v in raw.values()):
        raise ValueError(
            f"checkpoint {path} holds no state dict (a {type(raw).__name__}"
            + (f" with keys {_names([str(k) for k in raw])}" if isinstance(raw, dict) else "")
            + f"; expected tensors, or a dict with one under {', '.join(STATE_KEYS)})"
        )
    state = {str(k): v for k, v in raw.items() if torch.is_tensor(v)}
    for prefix in PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): v for key, v in state.items()}
    return WeightsFile(path, state, config if isinstance(config, dict) else {})


def load_state(
    model: nn.Module, weights: str | os.PathLike | WeightsFile, *, strict: bool = True
) -> LoadReport:
    """Load a weights file (or one read by :func:`read_weights`) into ``model`` in place.

    ``strict=True``: every tensor of the model and of the file must match by name and shape,
    else ``ValueError`` naming the file and the missing, unexpected or mismatched keys (shapes
    included) and nothing is loaded. ``strict=False``: the tensors that match are loaded and the
    report lists the rest; a file of which nothing matches is still an error.
    """
    weights = weights if isinstance(weights, WeightsFile) else read_weights(weights)
    own = model.state_dict()
    state = weights.state
    mismatched = tuple(
        (key, tuple(value.shape), tuple(own[key].shape))
        for key, value in state.items()
        if key in own and own[key].shape != value.shape
    )
    bad = {key for key, _, _ in mismatched}
    report = LoadReport(
        path=weights.path,
        loaded=tuple(key for key in state if key in own and key not in bad),
        missing=tuple(key for key in own if key not in state),
        unexpected=tuple(key for key in state if key not in own),
        mismatched=mismatched,
    )
    if strict and not report.complete:
        raise ValueError(
            f"checkpoint {weights.path} does not fit {type(model).__name__}: "
            f"{'; '.join(report.problems)} (strict=False / --strict false loads what matches)"
        )
    if not report.loaded:
        raise ValueError(
            f"checkpoint {weights.path}: none of its {len(state)} tensors fit "
            f"{type(model).__name__} ({'; '.join(report.problems)})"
        )
    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    return report


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header (``{``); torch
    files are zip archives or pickles."""
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def _names(names: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"
