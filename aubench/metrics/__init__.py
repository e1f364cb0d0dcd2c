"""Metrics that score explanation maps against AU heatmaps, faithfulness and sanity checks,
streaming accumulators and aggregation. Imports only torch and torchmetrics — the latter (about
3 s, it pulls in torchvision) only when a streaming accumulator is first used.

Map metrics share one calling convention, ``metric(maps (B, H, W), heatmaps (B, H, W),
valid (B,) | None, **options) -> (B,)`` with NaN where a score is undefined (see
:mod:`aubench.metrics.base`); :data:`METRICS` holds every metric with its metadata
(``higher_is_better``, ``range``, ``category``, ``kind``), :func:`get_metric` looks one up and
:func:`score_maps` computes a family on one batch, sharing the work. :mod:`aubench.metrics.kinds`
scores every kind through one interface (:func:`scorers`) and describes every score column a
run writes (:func:`describe_column`).
"""

from aubench.metrics.aggregate import Aggregate, aggregate, aggregate_many, bootstrap_ci
from aubench.metrics.base import (
    CATEGORIES,
    KINDS,
    METRICS,
    SCOPES,
    MapBatch,
    Metric,
    get_metric,
    register,
    score_maps,
)
from aubench.metrics.causal import (
    CAUSAL_METRICS,
    DoseResponse,
    au_attribution_agreement,
    au_top1_agreement,
    cue_energy_share,
    dose_response,
    mirror_equivariance,
)
from aubench.metrics.correlation import cosine, pearson, spearman
from aubench.metrics.faithfulness import (
    au_occlusion,
    average_drop,
    deletion_auc,
    increase_in_confidence,
    insertion_auc,
)
from aubench.metrics.kinds import (
    ACCURACY,
    COUNTERFACTUAL_KINDS,
    SCORERS,
    BatchContext,
    Column,
    LayerMaps,
    Scorer,
    derived_column,
    describe_column,
    scorers,
)
from aubench.metrics.laterality import lateral_share
from aubench.metrics.overlap import dice, iou, otsu_thresholds, pixel_ap, pxap_accumulator
from aubench.metrics.per_au import per_au_energy
from aubench.metrics.point import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roc_auc,
    top_k_intersection,
)
from aubench.metrics.saliency import kl, nss, sim
from aubench.metrics.sanity import (
    MapFunction,
    Randomisation,
    cascading_randomisation,
    randomisable_layers,
)

_STREAMING = ("PxAP", "ScoreAggregator")


def __getattr__(name: str) -> type:
    """The torchmetrics accumulators, imported on first access."""
    if name in _STREAMING:
        from aubench.metrics import streaming

        return getattr(streaming, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCURACY",
    "CATEGORIES",
    "CAUSAL_METRICS",
    "COUNTERFACTUAL_KINDS",
    "KINDS",
    "METRICS",
    "SCOPES",
    "SCORERS",
    "Aggregate",
    "BatchContext",
    "Column",
    "DoseResponse",
    "LayerMaps",
    "MapBatch",
    "MapFunction",
    "Metric",
    "PxAP",
    "Randomisation",
    "ScoreAggregator",
    "Scorer",
    "aggregate",
    "aggregate_many",
    "au_attribution_agreement",
    "au_occlusion",
    "au_top1_agreement",
    "average_drop",
    "bootstrap_ci",
    "cascading_randomisation",
    "cosine",
    "cue_energy_share",
    "deletion_auc",
    "derived_column",
    "describe_column",
    "dice",
    "dose_response",
    "energy_pointing_game",
    "get_metric",
    "increase_in_confidence",
    "insertion_auc",
    "iou",
    "kl",
    "lateral_share",
    "mirror_equivariance",
    "nss",
    "otsu_thresholds",
    "pearson",
    "per_au_energy",
    "pixel_ap",
    "pointing_game",
    "pxap_accumulator",
    "randomisable_layers",
    "register",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "roc_auc",
    "score_maps",
    "scorers",
    "sim",
    "spearman",
    "top_k_intersection",
]
