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
