"""Whole-array helpers every layer uses; numpy only."""

from __future__ import annotations

import numpy as np


def expand_runs(first, counts):
    """Every element of the runs ``first[i], first[i] + 1, ..., first[i] + counts[i] - 1``,
    in run order: ``(run index, value)`` arrays, values in ``first``'s dtype.

    The one range-to-items expansion: pages of byte ranges (``first`` = first page numbers),
    extents overlapping queries (``first`` = first extent indices), chunks of ranges.
    """
    first = np.asarray(first)
    counts = np.asarray(counts, np.int64)
    run = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts,
                                                                       counts)
    return run, first[run] + offset.astype(first.dtype)


def unique(values) -> np.ndarray:
    """The distinct values of ``values`` (flattened), sorted: ``np.unique(values)``.

    Without np.unique's masked-array check, which since numpy 2.3 imports ``numpy.ma`` the
    first time a plain ``np.unique`` runs in a process (~9 ms on the host, ~1 s in the TCG
    test guest, where modules are read over 9p): a paddr ``damoncore start`` paid it inside
    its first scheme apply, in the owner lookup.  The runtime paths (linux, schemes, ops)
    use this one.
    """
    a = np.sort(np.asarray(values).ravel())
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]
