"""edge-split: region splits placed where each region's own samples change between
accessed and idle, within a fixed budget of regions per sample.

The kernel's split cuts every region at a random 10-90% point and lets the next merge undo
the cuts that found nothing.  A region holding a small hot range in a large idle space, or
the fading edge of a Zipf head, shows it in its samples first: a few of its 20 sampling
addresses of an aggregation were accessed, the rest not, and *where* they were is known.
edge-split keeps every sample's address and result for the aggregation (the
:meth:`~damoncore.core.adaptation.Adaptation.sampled` hook, or rows the native sample path
writes: :meth:`~damoncore.core.adaptation.Adaptation.sample_rows`) and, at the aggregation end:

1. finds in each region the run of address-sorted samples where the minority outcome wins
   (``_adapt.sample_edges``: a maximum-sum run, accessed samples in an idle region or idle
   ones in an accessed region, kept when a log-likelihood test says it is not noise) and
   cuts at its ends, a quarter of the way from the idle sample to the accessed one;
2. keeps a long-run access rate map of the target (decayed accessed / taken samples per
   1/4096 of its covered bytes, ``_adapt.rate_learn``);
3. merges as the kernel does (same threshold doubling, ages, size-weighted counters), except
   that a merge touching a *mixed* region (a quarter to seven eighths of the samples
   accessed) stays within total / (``mixed_div`` x budget) (``_regions.merge_regions``);
4. *pools* for the report runs of adjacent regions that the long-run rate map puts on
   one side of half of the samples (``_adapt.region_rates``, ``_adapt.pool_runs``): a
   hot run holds a region confidently over it (a lower bound ``pool_z`` standard errors
   under the map's rate) and the regions beside it that are not confidently under it
   (``pool_join_z``); a cold run, regions confidently under it (``pool_cold_z``) but
   over a quarter of the samples.  Each run is reported as one region with the
   size-weighted count of all its pieces' samples, if that count stays on the run's
   side of the bar; the split puts the pieces back;
5. reports, in the same snapshot, the accessed piece of a region that reads under half of
   the samples as a region of its own, cut at the edge found in step 1, with the count its
   share of the samples gives (``_adapt.report_edges``, within the budget's room; the
   split first puts the region back whole);
6. after the snapshot, spends the budget: regions that read near half of the samples (3/8
   to 5/8, where hot or not is closest to a coin flip) without an edge in their samples go
   into even pieces of at most total / (``edge_div`` x budget), then (``_adapt.plan_split``)
   the edge cuts, a thin *flank* beside every sharp boundary, then even pieces for every
   region, weighted by size and ``boost`` times more where its samples disagreed
   (``_adapt.split_at``).  A flank reaches into the colder region a quarter of the
   hotter side's run of regions, and flanks are also placed from the snapshot itself
   (step 5's pieces with their own counts, ``_adapt.flanks``): a hot range found inside
   an idle region in this aggregation gets a flank on each side at the next split, where
   the rest of the range may hide in a region its samples missed.  When the cuts in
   large regions need more room than the budget has left, small neighbours merge to
   make it (``_adapt.merge_small``).

A cut the next aggregation does not confirm is merged away as the kernel's random cuts
are.  docs/sampling.md has the measurements behind each rule and the parameters.
"""

from __future__ import annotations

import numpy as np

from .. import _adapt, _regions
from .adaptation import KernelAdaptation, SampleRows


#: bins of the long-run rate map over a target's covered bytes (a count, not a page size):
#: 1 MiB bins over 4 GiB, fine enough to place a pooled run's end near a rate step
RATE_MAP_BINS = 1 << 12


class EdgeSplit(KernelAdaptation):
    """Splits spent where each region's samples show an edge, within a budget.

    ``budget``: regions to sample per sample interval after a split (default
    ``explore_factor * min_nr_regions``, at most ``max_nr_regions``); splits stop there.
    ``min_gain`` / ``min_gain_accessed``: log-likelihood gain (nats) for a run of idle
    samples in an accessed region / accessed samples in an idle region to count as an edge.
    ``boost``: weight of regions whose samples disagreed when the budget evens regions out.
    ``mixed_div``: mixed regions merge up to total size / (``mixed_div`` x budget).
    ``edge_div``: regions reading near half the samples are cut into pieces of at most
    total size / (``edge_div`` x budget) (0: off).
    ``pool_rate`` (0: no pooling), ``pool_z``, ``pool_decay``, ``pool_bins``: pool runs of
    regions whose long-run rate (map of ``pool_bins`` bins, decayed by ``pool_decay`` per
    aggregation) is over ``pool_rate`` of the samples by ``pool_z`` standard errors;
    ``pool_keep``: pieces of a pooled run that read every sample and are over
    ``pool_keep`` by that margin stay merged.  ``pool_join_z``: a region beside a pooled
    hot run joins it when its rate is at least ``pool_rate`` + ``pool_join_z`` standard
    errors (the default -1.5: unless it is under ``pool_rate`` by 1.5 standard errors).
    ``pool_cold_z`` (None: off): regions under ``pool_rate`` by that many standard errors
    (and over half of it) pool into cold runs.  ``report_edges``: the snapshot shows the
    accessed piece of a region reading under half of the samples as its own region when
    ``report_min_samples`` or more of this aggregation's samples fall in it (report only).
    ``snapshot_flanks``: flanks from the snapshot's regions (with the report's pieces) join
    the edge cuts of the next split.  ``small_div`` (0: off): when the cuts in large regions
    need more room than the budget has left, adjacent regions whose union is at most total
    size / (``small_div`` x budget) merge to make it.
    """

    name = "edge-split"

    def __init__(self, budget: int | None = None, explore_factor: int = 5,
                 min_gain: float = 6.0, min_gain_accessed: float = 3.0, boost: int = 4,
                 mixed_div: int = 8, edge_div: int = 16, pool_rate: float = 0.5,
                 pool_z: float = 1.5, pool_decay: float = 0.95, pool_keep: float = 0.9,
                 pool_bins: int = RATE_MAP_BINS, pool_join_z: float = -1.5,
                 pool_cold_z: float | None = 1.5, report_edges: bool = True,
                 report_min_samples: int = 3, snapshot_flanks: bool = True,
                 small_div: int = 16):
        super().__init__()
        self.budget = budget
        self.explore_factor = int(explore_factor)
        self.min_gain = float(min_gain)
        self.min_gain_accessed = float(min_gain_accessed)
        self.boost = int(boost)
        self.mixed_div = int(mixed_div)
        self.pool_rate = float(pool_rate)
        self.pool_z = float(pool_z)
        self.pool_decay = float(pool_decay)
        self.pool_bins = int(pool_bins)
        self.pool_keep = float(pool_keep)
        self.pool_join_z = float(pool_join_z)
        self.pool_cold_z = None if pool_cold_z is None else float(pool_cold_z)
        self.report_edges = bool(report_edges)
        self.report_min_samples = int(report_min_samples)
        self.edge_div = int(edge_div)
        self.snapshot_flanks = bool(snapshot_flanks)
        self.small_div = int(small_div)
        self._rates = {}          # target index -> _Rates (long-run access rate map)
        self._restore = {}        # target index -> inner boundaries of pooled runs
        self._samples = {}        # target index -> SampleRows
        self._cuts = {}           # target index -> increasing cut addresses

    def _budget(self, ctx) -> int:
        a = ctx.attrs
        b = self.budget if self.budget is not None else self.explore_factor * a.min_nr_regions
        return max(1, min(a.max_nr_regions, b))

    def sample_rows(self, ctx) -> list:
        """This aggregation's :class:`SampleRows` per target (None: obsolete); new ones for
        new regions (first aggregation, after a split, or an ops update).  The native sample
        path fills them in C; :meth:`sampled` on the generic path."""
        return [None if t.obsolete else self._rows(ctx, i, t)
                for i, t in enumerate(ctx.targets)]

    def _rows(self, ctx, i, t) -> SampleRows:
        r = t.regions
        s = self._samples.get(i)
        if s is None or s.key is not r.start:
            s = self._samples[i] = SampleRows(r.start, r.nr, ctx.attrs.aggr_samples)
        return s

    def sampled(self, ctx, accessed) -> None:
        for i, t in enumerate(ctx.targets):
            if not t.obsolete:
                self._rows(ctx, i, t).record(t.regions.sampling_addr, accessed[i])

    def merge(self, ctx, threshold: int) -> None:
        self._cuts = {}
        self._restore = {}
        self._reported = {}
        taken = {}
        for i, t in enumerate(ctx.targets):
            s = self._samples.pop(i, None)
            r = t.regions
            if t.obsolete or s is None or s.key is not r.start or s.k == 0:
                continue
            taken[i] = s
            cuts = np.empty(2 * r.nr, np.uint64)
            n = _adapt.sample_edges(r.start, r.end, s.addrs[:s.k], s.accessed[:s.k],
                                    ctx.min_region, cuts, self.min_gain,
                                    self.min_gain_accessed)
            if n:
                self._cuts[i] = cuts[:n]
            if self.pool_rate > 0:
                self._learn(i, r, s)
        # the kernel's merge (threshold doubled while over max_nr_regions), mixed regions
        # merged up to total / budget only
        total = sum(t.regions.total_size() for t in ctx.active_targets)
        mixed_limit = max(ctx.min_region, total // (self.mixed_div * self._budget(ctx)))
        max_thres = ctx.attrs.aggr_samples
        while True:
            for t in ctx.active_targets:
                r = t.regions
                n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                         r.last_nr_accesses, r.age, threshold, ctx.sz_limit,
                                         mixed_limit, max_thres)
                r.truncate(n)
            threshold = max(1, threshold * 2)
            mixed_limit *= 2
            if not (ctx.nr_regions() > ctx.attrs.max_nr_regions
                    and threshold // 2 < max_thres):
                break
        if self.pool_rate > 0:
            for i, t in enumerate(ctx.targets):
                if not t.obsolete and i in self._rates:
                    self._pool(i, t.regions, max_thres)
        if self.report_edges:
            self._report_edges(ctx, taken, max_thres)
        if self.snapshot_flanks:
            for i, t in enumerate(ctx.targets):
                if t.obsolete:
                    continue
                r = t.regions
                cuts, _ = _adapt.flanks(r.start, r.end, r.nr_accesses, max_thres,
                                        ctx.min_region, self._cuts.get(i, _NO_CUTS))
                if len(cuts):
                    self._cuts[i] = cuts

    def _report_edges(self, ctx, taken, nr_samples) -> None:
        """Report the accessed piece of a region that reads under half of the samples
        as its own region, with the count its share of this aggregation's samples gives
        (``_adapt.report_edges``), within the budget's room: a hot range that just
        appeared inside an idle region shows in this aggregation's snapshot, not the
        next.  Report only: :meth:`split` puts the regions back as they were before, so
        the adaptation itself (what is sampled next) is the same with it or without
        (unless a scheme split the regions in between: they then stay cut, as at a
        scheme's own splits, and the pieces count against the next split's budget)."""
        room = self._budget(ctx) - sum(t.regions.nr + len(self._restore.get(i, _NO_CUTS))
                                       for i, t in enumerate(ctx.targets) if not t.obsolete)
        for i, cuts in self._cuts.items():
            s = taken.get(i)
            t = ctx.targets[i]
            if room <= 0 or s is None or t.obsolete:
                continue
            r = t.regions
            out = _adapt.report_edges(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                      r.last_nr_accesses, r.age, cuts,
                                      self._restore.get(i, _NO_CUTS), s.addrs[:s.k],
                                      s.accessed[:s.k], nr_samples, self.report_min_samples,
                                      room)
            if out is None:
                continue
            cols, used = out
            room -= used
            before = (r.start, r.end, r.nr_accesses, r.nr_accesses_bp, r.age)
            r.replace(*cols)
            self._reported[i] = (r.start, before)

    def _learn(self, i, r, s) -> None:
        """This aggregation's samples into target ``i``'s long-run rate map
        (``_adapt.rate_learn``); a new map when the covered size changed."""
        total = r.total_size()
        st = self._rates.get(i)
        if st is None or st.total != total:
            st = self._rates[i] = _Rates(total, self.pool_bins)
        _adapt.rate_learn(st.hits, st.trials, r.start, r.end, s.addrs[:s.k],
                          s.accessed[:s.k], st.bin_size, self.pool_decay)

    def _pool(self, i, r, nr_samples) -> None:
        """Pool runs of adjacent regions that the long-run rate map puts on one side of
        ``pool_rate`` of the samples (``_adapt.pool_runs``): hot runs (a region
        confidently over it, lower bound ``pool_z`` standard errors under the bins inside
        the region, and its neighbours that are not confidently under it, ``pool_join_z``)
        and cold runs (confidently under it by ``pool_cold_z``, over half of it).  Each run
        is reported as one region (size-weighted counters, as a merge) when that keeps it
        on its side of the bar, and its inner boundaries come back at the split (kept with
        the edge cuts), so the next aggregation samples the same pieces again.  A region at
        the fading edge of a hot set reads hot or not by the luck of its own 20 samples;
        pooled with its neighbours on the same side, the run reads with all of theirs."""
        st = self._rates[i]
        n = r.nr
        if n < 2 or st.total != r.total_size():
            return
        h = np.empty(n)
        m = np.empty(n)
        _adapt.region_rates(r.start, r.end, st.hits, st.trials, st.bin_size, h, m)
        restore = np.empty(n, np.uint64)
        k, nr_restore = _adapt.pool_runs(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                         r.last_nr_accesses, r.age, h, m, nr_samples,
                                         self.pool_rate, self.pool_z, self.pool_keep,
                                         restore, self.pool_join_z,
                                         self.pool_cold_z is not None,
                                         self.pool_cold_z or 0.0)
        if k < n:
            r.truncate(k)
            self._restore[i] = restore[:nr_restore]

    def _edge_pieces(self, ctx, targets, n_samples) -> None:
        """Regions that read near half of the samples (3/8 to 5/8: the ones whose hot or
        not is closest to a coin flip) into even pieces of at most total size /
        (``edge_div`` x budget), within the budget: pieces fail independently, so the
        fading edge of a hot set is not lost in one draw."""
        total = sum(t.regions.total_size() for _, t in targets)
        lim = np.uint64(max(ctx.min_region, total // (self.edge_div * self._budget(ctx))))
        room = self._budget(ctx) - sum(t.regions.nr for _, t in targets)
        plans = []
        for i, t in targets:
            r = t.regions
            plans.append(_adapt.edge_pieces(r.start, r.end, r.last_nr_accesses,
                                            self._cuts.get(i, _NO_CUTS), n_samples, lim))
        want = sum(total for _, total in plans)
        if want <= 0 or room <= 0:
            return
        for (_, t), (extra, total) in zip(targets, plans):
            if not total:
                continue
            if want > room:
                extra = extra * room // want
            if not extra.any():
                continue
            r = t.regions
            r.replace(*_adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                       r.last_nr_accesses, r.age, _NO_CUTS,
                                       (extra + 1).astype(np.uint32), ctx.min_region, ctx.rng))

    def _free_room(self, ctx, r, evidence, room, total, n_samples) -> int:
        """When the edge cuts and flanks in large regions (over 4 x total / (``small_div``
        x budget)) outnumber the room, merge adjacent small regions (unions of at most
        total / (``small_div`` x budget)) to make room for them (``_adapt.merge_small``);
        returns the regions freed.  Without it, a process whose heap shows as many tiny
        regions reading hot and idle in turn left no room for the cut that separates a
        20 MiB hot range from the idle region around it, for seconds (guest)."""
        lim = max(ctx.min_region, total // (self.small_div * self._budget(ctx)))
        _, large = _adapt.flanks(r.start, r.end, r.last_nr_accesses, n_samples,
                                 ctx.min_region, evidence, 4 * lim)
        need = large - max(room, 0)
        if need <= 0:
            return 0
        k = r.nr
        n = _adapt.merge_small(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, lim, need)
        r.truncate(n)
        return k - n

    def split(self, ctx) -> None:
        targets = [(i, t) for i, t in enumerate(ctx.targets) if not t.obsolete]
        reported, self._reported = self._reported, {}
        for i, t in targets:        # the regions as they were before the report's pieces
            key, before = reported.get(i, (None, None))
            if key is not None and t.regions.start is key:
                start, end, nr, bp, age = before    # reset as the core reset the report's
                t.regions.replace(start, end, np.zeros_like(nr), bp, nr, age)
        restore, self._restore = self._restore, {}
        for i, t in targets:        # pooled runs back into the pieces they were sampled as
            cuts = restore.get(i)
            if cuts is not None and len(cuts):
                r = t.regions
                r.replace(*_adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                           r.last_nr_accesses, r.age, cuts,
                                           np.ones(r.nr, np.uint32), ctx.min_region, ctx.rng))
        n_samples = ctx.attrs.aggr_samples
        if self.edge_div:
            self._edge_pieces(ctx, targets, n_samples)
        nr = sum(t.regions.nr for _, t in targets)
        room = self._budget(ctx) - nr
        cuts_of, self._cuts = self._cuts, {}
        self._last_nr_regions = nr
        if not targets or (room <= 0 and not self.small_div):
            return
        sizes = [t.regions.total_size() for _, t in targets]
        if len(targets) == 1:
            rooms = [room]
        else:       # each target's share of the room, by size
            rooms = [room * sz // max(1, sum(sizes)) for sz in sizes]
            rooms[int(np.argmax(sizes))] += room - sum(rooms)
        for (i, t), room_t in zip(targets, rooms):
            r = t.regions
            if self.small_div:
                room_t += self._free_room(ctx, r, cuts_of.get(i, _NO_CUTS), room_t,
                                          sum(sizes), n_samples)
            if room_t <= 0:
                continue
            cuts, pieces = _adapt.plan_split(r.start, r.end, r.last_nr_accesses,
                                             cuts_of.get(i, _NO_CUTS), room_t, n_samples,
                                             ctx.min_region, self.boost)
            r.replace(*_adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                       r.last_nr_accesses, r.age, cuts, pieces,
                                       ctx.min_region, ctx.rng))


_NO_CUTS = np.zeros(0, np.uint64)


class _Rates:
    """One target's long-run access rate map: decayed accessed / taken samples per bin of
    its covered bytes."""

    __slots__ = ("total", "bin_size", "hits", "trials")

    def __init__(self, total, nb):
        self.total = total
        self.bin_size = max(1, -(-total // nb))
        self.hits = np.zeros(nb)
        self.trials = np.zeros(nb)
