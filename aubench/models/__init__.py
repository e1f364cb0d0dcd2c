"""Models: timm factory, layer naming and resolution, feature capture, layer attention."""

from aubench.models.attention import ATTENTION_KINDS, layer_attention
from aubench.models.capture import FeatureCapture
from aubench.models.factory import create, load_weights, set_large_maps
from aubench.models.layers import LayerInfo, list_layers, resolve_layer, resolve_layers, stage_names

__all__ = [
    "ATTENTION_KINDS",
    "FeatureCapture",
    "LayerInfo",
    "create",
    "layer_attention",
    "list_layers",
    "load_weights",
    "resolve_layer",
    "resolve_layers",
    "set_large_maps",
    "stage_names",
]
