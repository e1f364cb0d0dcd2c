"""The landmark backends by name (``aubench landmarks --backend NAME``, ``landmarks="cache:NAME"``).

``dlib`` (the default: offline, :mod:`aubench.landmarks.dlib_backend`), ``face-alignment`` (FAN,
:mod:`aubench.landmarks.face_alignment_backend`) and ``dataset`` (landmarks shipped with a dataset
or read from a ``landmarks.txt``, :mod:`aubench.data.dataset_backend`). Every backend imports its
optional third-party package only when it first needs it, so this module imports without them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from aubench.data.dataset_backend import DatasetBackend
from aubench.landmarks.base import LandmarkBackend
from aubench.landmarks.dlib_backend import DlibBackend
from aubench.landmarks.face_alignment_backend import FaceAlignmentBackend

_FACTORIES: dict[str, Callable[..., LandmarkBackend]] = {
    "dlib": DlibBackend,
    "face-alignment": FaceAlignmentBackend,
    "dataset": DatasetBackend,
}

#: Backend names, the default first (also the order ``landmarks="auto"`` looks for caches in).
BACKENDS: tuple[str, ...] = tuple(_FACTORIES)


def get_backend(name: str, **options: Any) -> LandmarkBackend:
    """The backend ``name`` (``dlib``, ``face-alignment``, ``dataset``) built with ``options``."""
    factory = _FACTORIES.get(name)
    if factory is not None:
        return factory(**options)
    close = difflib.get_close_matches(name, BACKENDS, n=2)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown landmark backend {name!r} (known: {', '.join(BACKENDS)}){hint}")
