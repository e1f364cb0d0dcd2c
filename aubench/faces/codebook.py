"""Expressions, the FACS action-unit table, and expression → AU codebooks.

Canonical expression order (every dataset loader maps its own ids to this):

====  ==========
 id   expression
====  ==========
 0    neutral
 1    happiness
 2    surprise
 3    fear
 4    anger
 5    disgust
 6    sadness
 7    contempt (only where a dataset has it)
====  ==========

Built-in codebooks (select by name with :func:`get_codebook`):

- ``belharbi2024``: exactly the reference code's ``EXP2AU`` (Belharbi et al., FG 2024), including
  its disgust → AU5 (upper *lid* raiser) quirk, kept for comparability with the paper's numbers.
- ``belharbi2024-fixed``: the same with disgust → AU10 (upper *lip* raiser), as the paper's text
  says.
- ``emfacs``: Ekman/Friesen EMFACS-style prototypes, with contempt (AU12 + AU14).
- ``generic``: every AU of the FACS table for every expression, neutral included (label-agnostic).

Users may pass their own mapping as a dict ``{expression: [AU numbers]}`` or as a YAML file with the
same structure; unknown expressions or AU numbers are a :class:`ValueError` naming them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class Expression(IntEnum):
    """The canonical label order shared by every dataset in aubench."""

    NEUTRAL = 0
    HAPPINESS = 1
    SURPRISE = 2
    FEAR = 3
    ANGER = 4
    DISGUST = 5
    SADNESS = 6
    CONTEMPT = 7


#: Expression names in canonical order (index = label id).
EXPRESSIONS: tuple[str, ...] = tuple(e.name.lower() for e in Expression)
#: Number of classes of the 7-class protocol (no contempt) and of the 8-class one.
NUM_CLASSES_7 = 7
NUM_CLASSES_8 = 8

#: The FACS action units aubench can draw: number → name.
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    12: "lip corner puller",
    14: "dimpler",
    15: "lip corner depressor",
    16: "lower lip depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
    27: "mouth stretch",
    43: "eyes closed",
}
#: AU numbers in table order; per-AU tensors index AUs by position in this tuple.
ALL_AUS: tuple[int, ...] = tuple(AU_NAMES)

E = Expression
_BELHARBI2024 = {
    E.HAPPINESS: (6, 12, 25),
    E.SURPRISE: (1, 2, 5, 26, 27),
    E.FEAR: (1, 2, 4, 5, 20, 25, 26, 27),
    E.ANGER: (4, 5, 7, 10, 17, 23, 24, 25, 26),
    E.DISGUST: (9, 5, 16, 17, 25, 26),  # the code's key 3 = AU5, where the paper says AU10
    E.SADNESS: (1, 4, 6, 15, 17),
}
_BUILTIN: dict[str, dict[Expression, tuple[int, ...]]] = {
    "belharbi2024": _BELHARBI2024,
    "belharbi2024-fixed": {**_BELHARBI2024, E.DISGUST: (9, 10, 16, 17, 25, 26)},
    "emfacs": {
        E.HAPPINESS: (6, 12),
        E.SURPRISE: (1, 2, 5, 26),
        E.FEAR: (1, 2, 4, 5, 7, 20, 26),
        E.ANGER: (4, 5, 7, 23),
        E.DISGUST: (9, 15, 16),
        E.SADNESS: (1, 4, 15),
        E.CONTEMPT: (12, 14),  # unilateral in FACS; drawn on both sides (laterality is unknown)
    },
    "generic": {e: ALL_AUS for e in Expression},
}
del E


@dataclass(frozen=True)
class Codebook:
    """An expression → AU mapping.

    ``mapping`` holds AU numbers per expression; expressions absent from it have no AUs (their
    heatmap is invalid, as neutral's is in every built-in codebook except ``generic``).
    """

    name: str
    mapping: Mapping[Expression, tuple[int, ...]]

    @property
    def aus(self) -> tuple[int, ...]:
        """The AUs this codebook uses, in :data:`ALL_AUS` order."""
        used = {au for aus in self.mapping.values() for au in aus}
        return tuple(au for au in ALL_AUS if au in used)

    def aus_of(self, expression: Expression | int | str) -> tuple[int, ...]:
        """The AU numbers of one expression (empty when it has none)."""
        return self.mapping.get(parse_expression(expression), ())

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Bool (8, len(ALL_AUS)) table: ``m[label, k]`` ⇔ AU ``ALL_AUS[k]`` is in ``label``'s set.

        Indexing it with a label tensor gives the per-sample AU mask without a Python loop.
        """
        import torch  # here, not at the top: `aubench list codebooks` stays free of torch

        table = np.zeros((len(Expression), len(ALL_AUS)), dtype=bool)
        for expression, aus in self.mapping.items():
            table[int(expression), [ALL_AUS.index(au) for au in aus]] = True
        return torch.from_numpy(table).to(device)


def parse_expression(value: Expression | int | str) -> Expression:
    """An :class:`Expression` from its id, its name (case-insensitive) or itself."""
    if isinstance(value, Expression):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in EXPRESSIONS:
            return Expression(EXPRESSIONS.index(key))
        raise ValueError(
            f"unknown expression {value!r}; expected one of {', '.join(EXPRESSIONS)}"
            + _suggest(key, EXPRESSIONS)
        )
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(Expression):
        return Expression(value)
    raise ValueError(f"unknown expression id {value!r}; expected 0..{len(Expression) - 1}")


def list_codebooks() -> tuple[str, ...]:
    """Names of the built-in codebooks."""
    return tuple(_BUILTIN)


def get_codebook(spec: str | Path | Mapping | Codebook = "belharbi2024") -> Codebook:
    """Resolve a codebook from a built-in name, a YAML file path, a mapping, or a Codebook.

    A mapping (or YAML file) has expression names or ids as keys and lists of FACS AU numbers as
    values, e.g. ``{"happiness": [6, 12], "sadness": [1, 4, 15]}``.
    """
    if isinstance(spec, Codebook):
        return spec
    if isinstance(spec, Mapping):
        return Codebook("custom", _validate_mapping(spec, source="codebook mapping"))
    path = Path(spec)
    if isinstance(spec, Path) or path.suffix.lower() in {".yaml", ".yml"}:
        return _load_yaml(path)
    if spec in _BUILTIN:
        return Codebook(spec, dict(_BUILTIN[spec]))
    raise ValueError(
        f"unknown codebook {spec!r}; built-in codebooks are {', '.join(_BUILTIN)}, or pass a "
        "mapping / a YAML file path" + _suggest(str(spec), tuple(_BUILTIN))
    )


def _load_yaml(path: Path) -> Codebook:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"codebook file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"codebook file {path} is not valid YAML: {err}") from err
    if not isinstance(data, Mapping):
        raise ValueError(
            f"codebook file {path} must hold a mapping of expression → list of AU numbers, "
            f"got {type(data).__name__}"
        )
    return Codebook(path.stem, _validate_mapping(data, source=str(path)))


def _validate_mapping(data: Mapping, source: str) -> dict[Expression, tuple[int, ...]]:
    mapping: dict[Expression, tuple[int, ...]] = {}
    for key, aus in data.items():
        try:
            expression = parse_expression(key)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        if isinstance(aus, int | str) or not isinstance(aus, Sequence):
            raise ValueError(
                f"{source}: AUs of {expression.name.lower()} must be a list of numbers"
            )
        parsed = []
        for au in aus:
            number = _parse_au(au)
            if number not in AU_NAMES:
                known = ", ".join(f"AU{a}" for a in ALL_AUS)
                raise ValueError(
                    f"{source}: unknown AU {au!r} for {expression.name.lower()}; known AUs: {known}"
                )
            parsed.append(number)
        mapping[expression] = tuple(dict.fromkeys(parsed))
    return mapping


def _parse_au(au: object) -> int | None:
    if isinstance(au, bool):
        return None
    if isinstance(au, int):
        return au
    if isinstance(au, str):
        text = au.strip().upper().removeprefix("AU")
        return int(text) if text.isdigit() else None
    return None


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
