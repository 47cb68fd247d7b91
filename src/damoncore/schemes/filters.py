"""DAMOS filter evaluation: first match decides; unmatched memory gets the opposite of the
last filter's ``allow`` (damos_filter_match() / damos_core_filter_out() semantics).

Both the core (addr, target filters over whole regions) and ops backends (anon, young, ...
over pages) use :func:`filters_pass` with their own ``match`` function.
"""

from __future__ import annotations

import numpy as np


def filters_pass(filters, match, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` items the filters let through.

    ``match(filter) -> bool array`` tells for each item whether it has the filter's
    property (before ``matching`` is applied).
    """
    if not filters:
        return np.ones(n, dtype=bool)
    out = np.full(n, not filters[-1].allow, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    for f in filters:
        hit = np.asarray(match(f), dtype=bool)
        hit = (hit == f.matching) & ~decided
        out[hit] = f.allow
        decided |= hit
    return out


def core_filters_pass(filters, target_idx: int, start: np.ndarray, end: np.ndarray,
                      has_ops_filters: bool) -> np.ndarray:
    """Mask of regions the core filters (addr, target) let through.

    A region matches an addr filter only when it lies entirely inside the range; the
    apply step splits regions at addr filter boundaries first so that holds exactly.  When
    ops filters follow, memory no core filter matched is passed on to them (the kernel's
    ``core_filters_default_reject`` is false then).
    """
    n = len(start)
    if not filters:
        return np.ones(n, dtype=bool)

    def match(f):
        if f.filter_type == "addr":
            a, b = f.address_range
            return (start >= np.uint64(a)) & (end <= np.uint64(b))
        return np.full(n, f.target_idx == target_idx, dtype=bool)

    out = filters_pass(filters, match, n)
    if has_ops_filters:
        decided = np.zeros(n, dtype=bool)
        for f in filters:
            decided |= (np.asarray(match(f), dtype=bool) == f.matching)
        out[~decided] = True
    return out
