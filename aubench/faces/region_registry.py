"""The registry of region models: name → :class:`~aubench.faces.region_model.RegionModel`.

Built-in: ``default``, ``belharbi2024``, ``landmark-gaussians``, ``generic``,
``belharbi2024-reference`` (the reference code's heatmap, exactly: the evaluation protocol
``belharbi2024``). A new model is a
:class:`~aubench.faces.region_model.RegionModel` subclass registered once with
:func:`register_region_model`; :func:`aubench.faces.heatmaps.au_heatmaps` then takes its name as
``regions=`` with no other change.
"""

from __future__ import annotations

import difflib

from aubench.faces.belharbi2024 import Belharbi2024Regions
from aubench.faces.belharbi2024_reference import Belharbi2024Reference
from aubench.faces.gaussian_regions import FaceBlobs, GenericFaceBlobs, LandmarkGaussians
from aubench.faces.region_model import RegionModel

#: Registry, in registration order: name → model (its ``default_codebook``: None = label-agnostic).
REGION_MODELS: dict[str, RegionModel] = {}


def register_region_model(model: RegionModel) -> RegionModel:
    """Register ``model`` under ``model.name`` and return it; a taken or empty name is an error."""
    if not isinstance(model, RegionModel):
        raise TypeError(f"expected a RegionModel instance, got {type(model).__name__}")
    if not model.name:
        raise ValueError(f"{type(model).__name__} has no name; set its `name` attribute")
    if model.name in REGION_MODELS:
        raise ValueError(f"region model {model.name!r} is already registered")
    REGION_MODELS[model.name] = model
    return model


def get_region_model(regions: str | RegionModel) -> RegionModel:
    """The model registered as ``regions`` (a model instance is returned as it is).

    Raises ``ValueError`` naming the closest registered names (or all of them) for an unknown one.
    """
    if isinstance(regions, RegionModel):
        return regions
    model = REGION_MODELS.get(regions)
    if model is None:
        close = difflib.get_close_matches(str(regions), list(REGION_MODELS), n=3, cutoff=0.5)
        known = ", ".join(REGION_MODELS)
        hint = f"did you mean {', '.join(close)}? (known: {known})" if close else f"known: {known}"
        raise ValueError(f"unknown region model {regions!r}; {hint}")
    return model


register_region_model(FaceBlobs())
register_region_model(Belharbi2024Regions())
register_region_model(LandmarkGaussians())
register_region_model(GenericFaceBlobs())
register_region_model(Belharbi2024Reference())
