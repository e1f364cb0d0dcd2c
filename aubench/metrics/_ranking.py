"""Row-wise ranks with exact tie groups, and searches in sorted rows: the engine of the rank- and
threshold-based metrics.

Ties are resolved by value, never by position: every pixel of a tie group shares the group's
mean rank, so no result depends on the order a sort leaves equal values in. Rows are sorted with
``torch.sort(dim=1)``, which parallelises over rows (a packed 1-D radix sort of int64 keys was
twice as fast on an idle 2-core CPU but an order of magnitude slower when other processes
compete for the cores, as its threads synchronise at every pass; sorting int32 keys of the
float bits was no faster than sorting the floats).

Counts at a threshold come from the sorted rows too: a pixel count ``#{p : f(m_p) ≥ t}`` for a
non-decreasing ``f`` is ``N`` minus ``torch.searchsorted(f(sorted row), t)`` — ``f`` evaluated
exactly as the threshold test would evaluate it, so the count is the same — and a histogram of
B maps into K bins costs one elementwise ``f`` and B·K·log N comparisons, in a handful of tensor
operations (many small ones stall when other processes hold the cores).
"""

from __future__ import annotations

import torch


def twice_mean_ranks(ordered: torch.Tensor) -> torch.Tensor:
    """Twice the 1-based mean rank (R, N) int32 of each element of rows ``ordered`` (R, N)
    sorted ascending: ``start + end + 2`` with ``start``, ``end`` the first and last 0-based
    position of the element's tie group (exact integers)."""
    rows, width = ordered.shape
    new = torch.ones(rows, width, dtype=torch.bool, device=ordered.device)
    torch.ne(ordered[:, 1:], ordered[:, :-1], out=new[:, 1:])
    index = torch.arange(width, dtype=torch.int32, device=ordered.device)
    start = torch.where(new, index, 0).cummax(1).values
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]
    end = torch.where(last.flip(1), index.flip(0), width - 1).cummin(1).values.flip(1)
    return start + end + 2


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks (R, N) of each row's values in ascending order, ties sharing their mean rank,
    in ``values``' dtype (exact: half-integers below 2^23)."""
    ordered, perm = values.sort(dim=1, stable=True)
    mean_rank = twice_mean_ranks(ordered).to(values.dtype) / 2
    return torch.empty_like(mean_rank).scatter_(1, perm, mean_rank)
