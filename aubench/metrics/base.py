"""Metric metadata, the registry, and :class:`MapBatch`, the checked input all map metrics share.

Every map metric is a plain function ``metric(maps, heatmaps, valid=None, **options) -> (B,)``:
``maps`` (B, H, W) are explanation maps already normalised and resized by the caller (explain/
owns those steps; a metric re-normalises only where its definition says so, and its docstring
states it), ``heatmaps`` (B, H, W) are the soft AU maps in [0, 1], ``valid`` (B,) bool marks the
samples to score. Scores are NaN where a sample is invalid, where its map or heatmap holds a
non-finite value, or where the metric is undefined for it (each docstring says when).

Mask-based metrics binarise the heatmap as ``heatmap >= mask_threshold`` (default 0.5, half the
AU peak; the paper scores only the soft map, so it fixes no threshold) and take that as the AU
region.

``maps`` may also be (P, B, H, W), the maps of P producers of the same batch (scores (P, B)),
or a :class:`MapBatch`, built once and shared by several metrics so that the flattening, the
validity checks, the binarised masks, the per-row sort and the ranks are computed once — and,
for stacked maps, everything that depends on the heatmaps alone once for all producers
(:func:`score_maps` does this for a whole family).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch

from aubench.metrics._ranking import twice_mean_ranks

__all__ = [
    "CATEGORIES",
    "KINDS",
    "METRICS",
    "SCOPES",
    "MapBatch",
    "Metric",
    "Ranked",
    "Sorted",
    "get_metric",
    "register",
    "score_maps",
]

#: Table groups, in the order tables show them.
CATEGORIES = (
    "correlation",
    "overlap",
    "point",
    "mass",
    "rank",
    "saliency",
    "faithfulness",
    "sanity",
)
#: How a metric is called: ``map`` — ``(maps, heatmaps, valid) -> (B,)``; ``per_au`` —
#: ``(maps, regions (B, K, H, W), valid) -> (B, K)``; ``model`` — needs a model and images;
#: ``sanity`` — needs a model and a map function; ``dataset`` — a streaming accumulator class;
#: ``cue`` — ``(maps, cue_masks (B, H, W) bool, valid) -> (B,)``, the synthetic faces' shortcut cue;
#: ``causal`` — ``(energy (B, A), effects (B, A), present (B, A)) -> (B,)``, per-AU energies
#: against AU counterfactuals' effects; ``dose`` — ``(energies, logits (S, B, D)) -> (B, D)``.
KINDS = (
    "map", "per_au", "model", "sanity", "dataset", "cue", "causal", "dose", "mirror", "lateral"
)  # fmt: skip
#: What a metric's scores depend on: ``map`` — each (producer, layer)'s maps, scored once per
#: map; ``model`` — the model and the AU regions only (AU occlusion), scored once per batch.
SCOPES = ("map", "model")
#: Elements per chunk of rows for the sorts and ranks: bounds their temporaries (a few int64
#: copies, ~100 MB) while keeping the number of parallel regions small.
CHUNK_ELEMENTS = 1 << 21
#: Map values scored together by :func:`score_maps` when it is given several producers' maps:
#: bounds a :class:`MapBatch`'s cached tensors (sort, order, ranks, ~25 bytes a value) to
#: ~400 MB; 13 producers × 64 maps of 112² fit in one.
STACK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Metric:
    """A metric with the metadata tables read: direction, range, category, calling convention.

    ``range`` is the attainable range for non-negative maps (what the house normalisation
    produces). Calling a :class:`Metric` calls ``fn`` with ``options`` as default keywords, so a
    variant such as IoU at Otsu is the IoU function with ``threshold="otsu"`` bound.
    ``scope`` is one of :data:`SCOPES`; ``column_prefix`` names the columns of a metric that
    gives several (per AU, per randomised depth): ``<column_prefix>:<label>``, default its name
    (see :mod:`aubench.metrics.kinds`).
    """

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    range: tuple[float, float]
    category: str
    kind: str = "map"
    options: Mapping[str, Any] = field(default_factory=dict)
    scope: str = "map"
    column_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**self.options, **kwargs})

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, else ``↓`` (table headers)."""
        return "↑" if self.higher_is_better else "↓"

    def accepts(self, option: str) -> bool:
        """Whether ``fn`` takes the keyword ``option``."""
        return option in inspect.signature(self.fn).parameters


#: name → :class:`Metric`, filled by :func:`register` as the family modules are imported.
METRICS: dict[str, Metric] = {}


def register(
    name: str,
    *,
    higher_is_better: bool,
    range: tuple[float, float],
    category: str,
    kind: str = "map",
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    scope: str = "map",
    column_prefix: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: record ``fn`` in :data:`METRICS` under ``name`` and return it unchanged.

    ``variants`` maps further names to bound options (``{"iou_otsu": {"threshold": "otsu"}}``);
    ``scope`` and ``column_prefix`` as :class:`Metric`.
    """

    def record(fn: Callable[..., Any]) -> Callable[..., Any]:
        base = Metric(name, fn, higher_is_better, range, category, kind, {}, scope, column_prefix)
        for metric in [base] + [
            replace(base, name=n, options=dict(o)) for n, o in (variants or {}).items()
        ]:
            if metric.name in METRICS:
                raise ValueError(f"metric {metric.name!r} is already registered")
            METRICS[metric.name] = metric
        return fn

    return record


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name raises ``KeyError`` with near matches."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, METRICS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown metric {name!r}{hint} (known: {', '.join(METRICS)})") from None


# ---------------------------------------------------------------------------------------------
# the shared, validated input


class Sorted(NamedTuple):
    """Each map's values sorted ascending: ``values`` (P, B, N) and ``order`` (P, B, N) int64
    their pixel indices. The order within a tie group is unspecified: users resolve ties by
    value."""

    values: torch.Tensor
    order: torch.Tensor


class Ranked(NamedTuple):
    """Each map sorted ascending with its AU mask (one row per map).

    ``values`` (P, B, N) the sorted map values; ``bits`` (P, B, N) bool the mask in that order;
    ``inside`` (P, B, N) int32 the inclusive running count of mask pixels along it.
    """

    values: torch.Tensor
    bits: torch.Tensor
    inside: torch.Tensor


class MapBatch:
    """``maps`` (B, H, W) or (P, B, H, W) and ``heatmaps`` (B, H, W) checked once and flattened.

    P > 1 stacks the maps of P producers of the same batch: everything that depends on the
    heatmaps alone (masks, region sizes, the heatmaps' ranks) is computed once for the B
    samples and broadcast, and the maps of all producers are sorted in one call. Internally
    ``maps`` is (P, B, N) (P = 1 for (B, H, W) input) and ``heatmaps`` (1, B, N); per-map
    tensors are (P, B) and per-sample ones (1, B); :meth:`finish` returns scores (B,) for
    (B, H, W) input, (P, B) for (P, B, H, W).

    Floating inputs keep float32/float64 (the promotion of the two); half precision, integer and
    bool inputs are computed in float32. ``usable`` (P, B) is ``valid`` and every value of the
    map and of the sample's heatmap finite; a map or heatmap with a non-finite value is zeroed,
    so the shared computations never see NaN, and :meth:`finish` returns NaN for it.
    ``map_low``, ``map_high`` (P, B) are each map's extremes. Derived tensors (masks, the sort,
    the ranks) are cached, per mask threshold where they depend on it. Nothing here waits for
    the device (no host round trip).
    """

    def __init__(
        self,
        maps: torch.Tensor,
        heatmaps: torch.Tensor,
        valid: torch.Tensor | Iterable[bool] | None = None,
    ):
        check_tensor("maps", maps, (3, 4), "(B, H, W) or (P, B, H, W)")
        check_tensor("heatmaps", heatmaps, (3,), "(B, H, W)")
        if heatmaps.shape != maps.shape[-3:]:
            raise ValueError(
                f"heatmaps must have the shape of maps {tuple(maps.shape[-3:])}, "
                f"got {tuple(heatmaps.shape)}"
            )
        if heatmaps.device != maps.device:
            raise ValueError(f"heatmaps are on {heatmaps.device} but maps on {maps.device}")
        rows, height, width = heatmaps.shape
        if height * width == 0:
            raise ValueError(f"maps must have at least one pixel, got shape {tuple(maps.shape)}")
        self.dtype = _compute_dtype(maps.dtype, heatmaps.dtype)
        self.score_shape = tuple(maps.shape[:-2])
        producers = maps.shape[0] if maps.ndim == 4 else 1
        # scores are not differentiated
        flat_maps = maps.detach().reshape(producers, rows, height * width).to(self.dtype)
        flat_heat = heatmaps.detach().reshape(1, rows, height * width).to(self.dtype)
        self.valid = check_valid(valid, rows, maps.device)
        # per-row extremes: NaN and ±inf propagate to them, so they flag non-finite rows too
        # (amin and amax: on CPU, two passes beat one aminmax several times over)
        map_extremes = torch.stack([flat_maps.amin(-1), flat_maps.amax(-1)])
        heat_extremes = torch.stack([flat_heat.amin(-1), flat_heat.amax(-1)])
        map_finite = map_extremes.isfinite().all(0)
        heat_finite = heat_extremes.isfinite().all(0)
        self.usable = self.valid & map_finite & heat_finite
        self.maps = torch.where(map_finite[..., None], flat_maps, 0)
        self.heatmaps = torch.where(heat_finite[..., None], flat_heat, 0)
        self.map_low, self.map_high = torch.where(map_finite, map_extremes, 0)
        heat_low, heat_high = torch.where(heat_finite, heat_extremes, 0)
        self._constant = (self.map_low == self.map_high, heat_low == heat_high)
        self._cache: dict[tuple, Any] = {}

    @classmethod
    def of(
        cls,
        maps: torch.Tensor | MapBatch,
        heatmaps: torch.Tensor | None,
        valid: torch.Tensor | Iterable[bool] | None,
    ) -> MapBatch:
        """``maps`` itself when it is already a :class:`MapBatch`, else a new one."""
        if isinstance(maps, MapBatch):
            if heatmaps is not None or valid is not None:
                raise ValueError("pass heatmaps and valid to MapBatch, not with a MapBatch")
            return maps
        if heatmaps is None:
            raise ValueError("heatmaps (B, H, W) are required unless maps is a MapBatch")
        return cls(maps, heatmaps, valid)

    @property
    def pixels(self) -> int:
        """N, the pixels per map."""
        return self.maps.shape[-1]

    def finish(self, scores: torch.Tensor, defined: torch.Tensor | None = None) -> torch.Tensor:
        """``scores`` (P, B) in the batch dtype, NaN where not usable or not ``defined``;
        shaped (B,) or (P, B) as the maps were given."""
        keep = self.usable if defined is None else self.usable & defined
        return torch.where(keep, scores.to(self.dtype), math.nan).reshape(self.score_shape)

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` for this batch."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def mask(self, threshold: float) -> torch.Tensor:
        """(1, B, N) bool AU region: ``heatmap >= threshold``."""
        threshold = check_threshold("mask_threshold", threshold)
        return self.cached(("mask", threshold), lambda: self.heatmaps >= threshold)

    def mask_weights(self, threshold: float) -> torch.Tensor:
        """(1, B, N) the AU region as 0/1 in the batch dtype (for sums and dot products, which
        run faster in floating point than on bool tensors)."""
        return self.cached(("weights", threshold), lambda: self.mask(threshold).to(self.dtype))

    def mask_size(self, threshold: float) -> torch.Tensor:
        """(1, B) int64 pixels in the AU region (exact: float sums of 0/1 below 2^24)."""
        return self.cached(("size", threshold), lambda: self.mask_weights(threshold).sum(-1).long())

    def inside_sum(self, values: torch.Tensor, threshold: float) -> torch.Tensor:
        """(P, B) sum of ``values`` (P, B, N) over the AU region."""
        return torch.linalg.vecdot(values, self.mask_weights(threshold))

    def positive_maps(self) -> torch.Tensor:
        """(P, B, N) ``max(map, 0)`` (the maps' values where none is negative)."""
        return self.cached(("relu",), lambda: self.maps.clamp(min=0))

    def constant_maps(self) -> torch.Tensor:
        """(P, B) bool: the map takes a single value."""
        return self._constant[0]

    def constant_heatmaps(self) -> torch.Tensor:
        """(1, B) bool: the heatmap takes a single value."""
        return self._constant[1]

    def sorted_maps(self) -> Sorted:
        """Each map sorted ascending (:class:`Sorted`), in row chunks, computed once."""
        return self.cached(("sorted",), self._sort)

    def ranked(self, threshold: float) -> Ranked:
        """Each map sorted with its mask (:class:`Ranked`), computed once per threshold."""

        def make() -> Ranked:
            values, order = self.sorted_maps()
            bits = self.mask(threshold).expand_as(order).gather(-1, order)
            return Ranked(values, bits, bits.cumsum(-1, dtype=torch.int32))

        return self.cached(("ranked", threshold), make)

    def twice_ranks(self) -> torch.Tensor:
        """(P, B, N) int32 twice the 1-based mean rank of each sorted value of
        :meth:`sorted_maps` (ties share their mean rank), computed once."""

        def make() -> torch.Tensor:
            values = self.sorted_rows()
            twice = torch.empty(values.shape, dtype=torch.int32, device=values.device)
            for rows in row_chunks(*values.shape):
                twice[rows] = twice_mean_ranks(values[rows])
            return twice.view(self.maps.shape)

        return self.cached(("twice_ranks",), make)

    def sorted_rows(self) -> torch.Tensor:
        """(P·B, N) the sorted values of :meth:`sorted_maps`, one row per map."""
        return self.sorted_maps().values.view(-1, self.pixels)

    def count_from(
        self, threshold: float, keys: torch.Tensor, bounds: torch.Tensor, strict: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (P, B, K) of each map whose key is ≥ each of K bounds (> if ``strict``), and
        how many of them lie in the AU region at ``threshold``: exact counts from the shared
        sort. ``keys`` (P·B, N) is a non-decreasing function of :meth:`sorted_rows`, computed
        as the threshold test computes it; ``bounds`` (P·B, K) or (1, K)."""
        _, _, inside = self.ranked(threshold)
        bounds = bounds.to(keys.dtype).expand(len(keys), -1).contiguous()
        first = torch.searchsorted(keys, bounds, right=strict)
        first = first.view(*self.maps.shape[:-1], bounds.shape[-1])
        before = torch.where(first > 0, inside.gather(-1, (first - 1).clamp(min=0)), 0)
        return self.pixels - first, inside[..., -1:].long() - before.long()

    def _sort(self) -> Sorted:
        flat = self.maps.view(-1, self.pixels)
        values = torch.empty_like(flat)
        order = torch.empty(flat.shape, dtype=torch.int64, device=flat.device)
        for rows in row_chunks(*flat.shape):
            values[rows], order[rows] = flat[rows].sort(dim=1, stable=True)
        return Sorted(values.view(self.maps.shape), order.view(self.maps.shape))


def score_maps(
    maps: torch.Tensor,
    heatmaps: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    names: Iterable[str] | None = None,
    *,
    mask_threshold: float = 0.5,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """Several map metrics on one batch, sharing the checks, masks, the sort and the ranks.

    ``maps`` (B, H, W), or (P, B, H, W): the maps of P producers of the same batch, scored
    together in one :class:`MapBatch` per group of about :data:`STACK_ELEMENTS` map values (the
    heatmap side is computed once a group). ``names`` defaults to every registered metric of
    kind ``map``; ``mask_threshold`` goes to each metric that binarises the heatmap; ``options``
    maps a metric name to extra keywords. Returns name → (B,) scores, or (P, B): exactly what
    each metric function returns on each producer's (B, H, W) maps alone.
    """
    chosen = [n for n, m in METRICS.items() if m.kind == "map"] if names is None else list(names)
    calls = []
    for name in chosen:
        metric = get_metric(name)
        if metric.kind != "map":
            raise ValueError(f"metric {name!r} is of kind {metric.kind!r}, not a map metric")
        extra = dict((options or {}).get(name, {}))
        if metric.accepts("mask_threshold"):
            extra.setdefault("mask_threshold", mask_threshold)
        calls.append((name, metric, extra))
    groups: list[slice | None] = [None]
    if isinstance(maps, torch.Tensor) and maps.ndim == 4:
        per_producer = math.prod(maps.shape[1:])
        groups = list(row_chunks(len(maps), per_producer, STACK_ELEMENTS)) or [slice(0, 0)]
    parts = []
    for group in groups:
        batch = MapBatch(maps if group is None else maps[group], heatmaps, valid)
        parts.append({name: metric(batch, **extra) for name, metric, extra in calls})
    if len(parts) == 1:
        return parts[0]
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


# ---------------------------------------------------------------------------------------------
# shared helpers


def row_chunks(rows: int, width: int, budget: int | None = None) -> Iterator[slice]:
    """Slices of whole rows holding about ``budget`` (default :data:`CHUNK_ELEMENTS`) elements
    each, at least one row."""
    budget = CHUNK_ELEMENTS if budget is None else budget
    step = max(1, budget // max(width, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def check_valid(
    valid: torch.Tensor | Iterable[bool] | None, rows: int, device: torch.device
) -> torch.Tensor:
    """(B,) bool on ``device``; None means every sample is valid."""
    if valid is None:
        return torch.ones(rows, dtype=torch.bool, device=device)
    if not isinstance(valid, torch.Tensor):
        valid = list(valid)
        valid = torch.as_tensor(valid) if valid else torch.zeros(0, dtype=torch.bool)
    flags = valid
    if flags.dtype != torch.bool:
        raise TypeError(f"valid must be a bool tensor of shape ({rows},), got dtype {flags.dtype}")
    if flags.shape != (rows,):
        raise ValueError(f"valid must have shape ({rows},), got {tuple(flags.shape)}")
    return flags.to(device)


def check_threshold(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float in (low, high], else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise ValueError(f"{name} must be a number in ({low}, {high}], got {value!r}")
    return float(value)


def check_tensor(name: str, value: Any, ndim: int | tuple[int, ...], layout: str) -> None:
    """A ``TypeError``/``ValueError`` naming ``name`` unless ``value`` is a real tensor of
    ``ndim`` dimensions (or one of those given; ``layout`` spells them out)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(value)}")
    if value.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must have shape {layout}, got {tuple(value.shape)}")
    if value.is_complex():
        raise TypeError(f"{name} must be real, got dtype {value.dtype}")


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any input is float64, else float32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(num / den, den != 0)``: the quotient with 0 where the denominator is 0, and where it
    is defined (callers pass the flag to :meth:`MapBatch.finish`)."""
    defined = den != 0
    return num / torch.where(defined, den, 1), defined
