"""How a context's regions adapt to the access pattern: the pluggable part of the region
algorithm.

The kernel's DAMON has one algorithm (``kdamond_merge_regions`` at each aggregation end,
before schemes apply; ``kdamond_split_regions`` after the aggregation is handed out).
damoncore keeps the sampling, the access-rate moving sum and the snapshots in the core and
lets a :class:`Adaptation` decide region boundaries, so a region-sampling algorithm can be
compared with the kernel's on the same ops backend, simulated workload and ground truth
(see ``benchmarks/eval_sampling.py``):

- :class:`KernelAdaptation` (default): the kernel's merge (threshold = 10% of the largest
  ``nr_accesses``, doubled while over ``max_nr_regions``; size limit = total size /
  ``min_nr_regions``) and split (2 pieces, or 3 when the count did not change, skipped
  above ``max_nr_regions / 2``), in Cython (``damoncore._regions``).
- :class:`FixedRegions`: no merge, no split; the initial ``min_nr_regions`` even regions
  stay (the fixed-granularity baseline).

A subclass overrides :meth:`Adaptation.merge` and/or :meth:`Adaptation.split` and edits
``target.regions`` of ``ctx.active_targets`` in place (``Regions.replace``, ``truncate``,
``split_at``); columns other than start/end are per-region state it must carry along (the
kernel's rules: size-weighted averages on merge, copies on split).  After a custom
adaptation the core checks that every target's regions are still sorted, non-empty,
non-overlapping and cover the same bytes, and raises :class:`~damoncore.errors.
AdaptationError` naming the adaptation otherwise.  An adaptation keeps per-context state:
give each context its own instance.
"""

from __future__ import annotations

import numpy as np

from .. import _regions


class Adaptation:
    """Region boundaries between aggregations: override :meth:`merge` and/or :meth:`split`.

    The base class changes nothing (every call is a no-op)."""

    name = "none"

    def merge(self, ctx, threshold: int) -> None:
        """At each aggregation end, before schemes apply: ``threshold`` is the kernel's
        (10% of this aggregation's largest ``nr_accesses``)."""

    def split(self, ctx) -> None:
        """After the aggregation's snapshot went to the callbacks and counts were reset."""

    def sampled(self, ctx, accessed) -> None:
        """Optional: after every sample's access checks, before they are counted.
        ``accessed[i]`` (uint8 per region) belongs to ``ctx.targets[i]``; the sampling
        addresses are ``ctx.targets[i].regions.sampling_addr``.  Read only: regions must
        not change here.  The core calls it only when a subclass overrides it."""

    def sample_rows(self, ctx):
        """Optional, with :meth:`sampled`: where a native sample path (``Operations.
        native_sampler``, which calls no Python per sample) writes what :meth:`sampled` would
        have seen.  Return, per target of ``ctx.targets``, a :class:`SampleRows` for its
        current regions (None for an obsolete target); a native run appends one row per
        sample it ends (bounded by the buffer) and advances ``k``; the generic path keeps
        calling :meth:`sampled`.  An adaptation that overrides :meth:`sampled` but not this
        keeps the generic per-sample path.  The core calls it once per native run."""
        return None


class SampleRows:
    """One target's samples of an aggregation: row k = sample k, column i = region i of the
    regions whose ``start`` column is ``key`` (a change of that array means new regions).
    ``addrs[k]``: the sampling addresses, ``accessed[k]``: the accessed flags (uint8);
    ``k``: rows filled.  Rows past ``len(addrs)`` are dropped."""

    __slots__ = ("key", "addrs", "accessed", "k")

    def __init__(self, key, nr: int, cap: int):
        self.key = key
        self.addrs = np.empty((cap, nr), np.uint64)
        self.accessed = np.empty((cap, nr), np.uint8)
        self.k = 0

    def record(self, addrs, accessed) -> None:
        """Append one sample (the generic path's :meth:`Adaptation.sampled`)."""
        k = self.k
        if k < len(self.addrs):
            self.addrs[k] = addrs
            self.accessed[k] = accessed
            self.k = k + 1


class KernelAdaptation(Adaptation):
    """The kernel's merge and split (``kdamond_merge_regions``, ``kdamond_split_regions``)."""

    name = "kernel"

    def __init__(self):
        self._last_nr_regions = 0

    def merge(self, ctx, threshold: int) -> None:
        max_thres = ctx.attrs.aggr_samples
        while True:
            for t in ctx.active_targets:
                r = t.regions
                n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                           r.last_nr_accesses, r.age, threshold,
                                           ctx.sz_limit)
                r.truncate(n)
            threshold = max(1, threshold * 2)
            if not (ctx.nr_regions() > ctx.attrs.max_nr_regions
                    and threshold // 2 < max_thres):
                break

    def split(self, ctx) -> None:
        nr = ctx.nr_regions()
        mx = ctx.attrs.max_nr_regions
        if nr > mx // 2:
            return
        nr_subs = 3 if (self._last_nr_regions == nr and nr < mx // 3) else 2
        for t in ctx.active_targets:
            r = t.regions
            r.replace(*_regions.split_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                              r.last_nr_accesses, r.age, nr_subs,
                                              ctx.min_region, ctx.rng))
        self._last_nr_regions = nr


class FixedRegions(Adaptation):
    """No merge and no split: the initial even regions (``min_nr_regions`` of them over
    all targets) stay for the whole run, the fixed-granularity baseline."""

    name = "fixed"
