"""The interpretable-by-design methods' model parts: heads, inserted layers, transformer variants.

- :mod:`~aubench.models.methods.heads`: WILDCAT and PRM class-map heads;
- :mod:`~aubench.models.methods.acol`: ACoL's two branches with erasing;
- :mod:`~aubench.models.methods.adl`: attention-based dropout layers inserted into a CNN;
- :mod:`~aubench.models.methods.tscam`: TS-CAM on a ViT/DeiT;
- :mod:`~aubench.models.methods.apvit`: the APViT-style CNN stem + pooling ViT.

Each method's own map leaves the model through a :class:`MapTap` (read by its explainer in
:mod:`aubench.explain.builtin`). Which method a training config uses, and how it is trained, is
:mod:`aubench.train.model`'s business.
"""

from aubench.models.methods.acol import AcolHead, erase_mask
from aubench.models.methods.adl import ADL, adl_maps, adl_positions, insert_adl
from aubench.models.methods.apvit import APViT, StemFeatures, attention_with_scores, top_tokens
from aubench.models.methods.common import (
    MapTap,
    find_module,
    init_head,
    is_token_model,
    minmax_maps,
    replace_classifier,
    tap_names,
)
from aubench.models.methods.heads import PRMHead, WildcatHead, topk_pool
from aubench.models.methods.tscam import (
    AttentionRecordingBlocks,
    TSCAMHead,
    attach_tscam,
    tscam_maps,
)

__all__ = [
    "ADL",
    "APViT",
    "AcolHead",
    "AttentionRecordingBlocks",
    "MapTap",
    "PRMHead",
    "StemFeatures",
    "TSCAMHead",
    "WildcatHead",
    "adl_maps",
    "adl_positions",
    "attach_tscam",
    "attention_with_scores",
    "erase_mask",
    "find_module",
    "init_head",
    "insert_adl",
    "is_token_model",
    "minmax_maps",
    "replace_classifier",
    "tap_names",
    "top_tokens",
    "topk_pool",
    "tscam_maps",
]
