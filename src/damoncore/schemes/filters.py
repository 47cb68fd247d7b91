"""DAMOS filter evaluation: first match decides; unmatched memory gets the opposite of the
last filter's ``allow`` (damos_filter_match() / damos_core_filter_out() semantics).

Both the core (addr, target filters over whole regions) and ops backends (anon, young, ...
over pages) use :func:`filters_pass` with their own ``match`` function.
"""

from __future__ import annotations

import numpy as np

from ..vocab import FilterType


def filters_decide(filters, match, n: int):
    """``(passed, decided, allowed)`` bool masks of ``n`` items under ``filters``.

    ``match(filter) -> bool array`` tells for each item whether it has the filter's
    property (before ``matching`` is applied).  The first filter that matches an item
    decides it (``decided``; ``allowed`` where that filter allows); undecided items get the
    opposite of the last filter's ``allow``.
    """
    passed = np.full(n, not filters[-1].allow if filters else True, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    allowed = np.zeros(n, dtype=bool)
    for f in filters:
        hit = (np.asarray(match(f), dtype=bool) == f.matching) & ~decided
        passed[hit] = f.allow
        if f.allow:
            allowed |= hit
        decided |= hit
    return passed, decided, allowed


def filters_pass(filters, match, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` items the filters let through."""
    if not filters:
        return np.ones(n, dtype=bool)
    return filters_decide(filters, match, n)[0]


def core_filters_pass(filters, target_idx: int, start: np.ndarray, end: np.ndarray,
                      has_ops_filters: bool, min_region: int):
    """``(passed, allowed)`` masks of regions under the core filters (addr, target).

    damos_core_filter_out() for every region: the first filter that matches decides;
    ``allowed`` marks regions decided by a matching *allow* filter (the kernel's
    ``core_filters_allowed``: the ops filters are skipped for them).  An addr filter
    matches a region lying inside its range with both edges aligned down to
    ``min_region``; the apply step first cuts regions at those aligned edges so that
    holds exactly.  Regions no filter matched get the opposite of the last filter's
    ``allow``, but pass when ops filters follow (``core_filters_default_reject`` is false
    then).
    """
    n = len(start)
    if not filters:
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)

    def match(f):
        if f.filter_type == FilterType.ADDR:
            a, b = f.aligned_range(min_region)
            return (start >= np.uint64(a)) & (end <= np.uint64(b))
        return np.full(n, f.target_idx == target_idx, dtype=bool)

    passed, decided, allowed = filters_decide(filters, match, n)
    if has_ops_filters:
        passed[~decided] = True
    return passed, allowed
