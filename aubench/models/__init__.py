"""Models: timm factory, models from anywhere (SPEC + model card; the seed paper's published
checkpoints as ``belharbi2024:METHOD``), layer naming and resolution, feature capture, layer
attention."""

from aubench.models.adapt import adapt_inputs_outputs
from aubench.models.attention import ATTENTION_KINDS, layer_attention
from aubench.models.capture import FeatureCapture
from aubench.models.card import CardError, ModelCard, canonical_class, load_card
from aubench.models.checkpoints import LoadReport, WeightsFile, load_state, read_weights
from aubench.models.factory import create, load_weights, set_large_maps
from aubench.models.layers import LayerInfo, list_layers, resolve_layer, resolve_layers, stage_names
from aubench.models.sources import load_model, spec_card, spec_explainers
from aubench.models.support import (
    LayerAccessError,
    ModelSource,
    ScriptedForward,
    check_layer_access,
    describe_support,
    source_of,
    supports_layers,
)

__all__ = [
    "ATTENTION_KINDS",
    "CardError",
    "FeatureCapture",
    "LayerAccessError",
    "LayerInfo",
    "LoadReport",
    "ModelCard",
    "ModelSource",
    "ScriptedForward",
    "WeightsFile",
    "adapt_inputs_outputs",
    "canonical_class",
    "check_layer_access",
    "create",
    "describe_support",
    "layer_attention",
    "list_layers",
    "load_card",
    "load_model",
    "load_state",
    "load_weights",
    "read_weights",
    "resolve_layer",
    "resolve_layers",
    "set_large_maps",
    "source_of",
    "spec_card",
    "spec_explainers",
    "stage_names",
    "supports_layers",
]
