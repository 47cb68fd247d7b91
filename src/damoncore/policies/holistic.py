"""Holistic NUMA migration: one accessor-aware TPP per accessor, each along its own path.

For every accessor (a CPU node's CPUs, or a device) one :class:`~damoncore.Context` watches
all memory nodes (one physical :class:`~damoncore.Target` per node), fed only with that
accessor's access reports (``primitives=("page_fault",)`` and a cpumask or threads
:class:`~damoncore.SampleFilter`), so "hot" there means "hot for this accessor".  Its
schemes walk the accessor's :class:`~damoncore.policies.hierarchy.Hierarchy`:

- promote: pages on path node ``i`` that the coordinator approved (hot for the accessor, see
  below) go to path node ``j < i``, the best one with room: a ``migrate_hot`` scheme per
  (i, j), with no access-pattern condition of its own, whose quota goals
  (``node_mem_used_bp`` of ``j`` below ``used_goal_bp``; ``node_mem_free_bp`` of every node
  before ``j`` below ``10000 - used_goal_bp``, i.e. those are full) pause it otherwise;
- demote: the owner of a node (the accessor ranking it highest) moves pages cold for it one
  step down its path while the node's free share is under ``free_goal_bp`` and the next node
  is under ``used_goal_bp``.

Goals use the ``temporal`` tuner: a scheme runs while its goals are unmet and pauses when
they are met (the ``consist`` feedback loop needs ~log2(quota) windows to ramp up from 1
byte).  The size quota, in bytes per second, is enforced by the coordinator below, per
accessor and source node: it approves at most ``quota_bytes_per_s * aggr_us`` bytes per
aggregation, hottest first (promotions) or largest first (demotions), as address allow
filters; the schemes themselves have no size quota, only goals.

A coordinator sees every context's snapshot each aggregation and decides, per piece of
physical memory (the union of all contexts' region boundaries), which promotions may act:
promote schemes carry address *allow* filters for the approved pieces only (everything else
of their source node is rejected), demote schemes reject pieces hot for another accessor.
A decision made at the end of aggregation N is applied once, at the next sample (the
coordinator moves every policy scheme's next apply there; schemes apply before the
aggregation callbacks run, so by default they would act one aggregation later), whatever
the pieces' access counts since: one aggregation in which the pieces were hot (and
``min_age_aggrs`` of them in a row, tracked by the coordinator) is enough, so a burst of
accesses moves its pages.
A page several accessors find hot (in this aggregation or on average: an accessor whose region
straddles another's pages may find them hot now and not on average, and must still be weighed
against the other) goes where the weighted access cost ``sum_a weight_a * hot_a * cost_a(n)``
(``hot_a`` the moving average) is lowest (:func:`arbitrate`).  With ``min_reports_per_mib``,
a region that got fewer reports per MiB in an aggregation counts as not accessed at all
for the coordinator (one stray fault must not make a 20 MiB region hot, which would then
be promoted with every other page in it, or compete for them).

Hysteresis (no ping-pong):

1. dwell: an accessor's promotion takes a piece only after that accessor saw it hot in
   ``min_age_aggrs`` consecutive aggregations *at its current physical address*; migrated
   pages get new frames, so a page that just moved stays at least ``min_age_aggrs``
   aggregation intervals before anyone can move it again (and an accessor that touches it
   only every other interval never gets it);
2. gain: a page hot for several accessors (in this aggregation or on average) moves only if
   its weighted cost at the destination is at least ``min_gain_bp`` below where it is (ties
   and small gains stay);
3. an accessor's promotions never take pages from its own best node; demotions need
   ``min_age_aggrs`` aggregations of no access (the DAMOS ``age`` pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import Attrs, Context, Kdamond, SampleFilter, Target
from ..errors import InvalidConfig
from ..schemes.scheme import U64_MAX, AccessPattern, Filter, Quota, QuotaGoal, Scheme
from .hierarchy import node_owners

MiB = 1 << 20
BP = 10000


@dataclass
class HolisticConfig:
    """Knobs of :class:`HolisticPolicy`.

    ``quota_bytes_per_s``: most bytes per second moved out of one node by one accessor's
    promotions, and by its owner's demotions.  ``reset_interval_ms``: quota goal window.
    ``used_goal_bp``: promote into a node until its used share reaches this (basis points).
    ``free_goal_bp``: demote out of a node while its free share is below this (bp).
    ``hot_percent``: minimum access rate (percent of samples per aggregation) for "hot".
    ``min_age_aggrs``: hysteresis, consecutive aggregation intervals a piece must be hot
    before it is promoted (cold before it is demoted).  ``min_gain_bp``: hysteresis for
    shared pages, weighted cost gain needed to move (bp of the current cost).
    ``max_ranges``: cap of address filters per scheme (largest kept).  ``attrs``: monitoring
    attributes of every context (intervals in us).  ``promote_from_top``: promotions may take
    pages out of another accessor's best node; False when the reports cannot see accesses
    there (NUMA hint faults in tiering mode never fault top-tier pages, so the only faults
    there are first-touch and migration faults, which say nothing about steady use).
    ``min_reports_per_mib``: a region with fewer access reports per MiB in an aggregation
    counts as not accessed (0: off).  ``nr_accesses`` only says a region was accessed in a
    sample, so one stray report makes a whole (maybe 20 MiB) region hot and its promotion
    drags every page in it along; with fault reports (each fault sampled) a region whose
    pages hint-fault gets hundreds per MiB.
    """

    quota_bytes_per_s: int = 256 * MiB
    used_goal_bp: int = 9970
    free_goal_bp: int = 50
    hot_percent: int = 25
    min_age_aggrs: int = 3
    min_gain_bp: int = 2000
    reset_interval_ms: int = 100
    max_ranges: int = 128
    promote_from_top: bool = True
    min_reports_per_mib: float = 0.0
    attrs: Attrs = field(default_factory=lambda: Attrs(sample_us=5_000, aggr_us=100_000,
                                                       min_nr_regions=200,
                                                       max_nr_regions=1000))

    def __post_init__(self):
        if self.quota_bytes_per_s <= 0:
            raise InvalidConfig(f"quota must be > 0 bytes/s, got {self.quota_bytes_per_s}")
        if not 0 < self.used_goal_bp < BP:
            raise InvalidConfig(f"used goal must be in (0, 10000) bp, got {self.used_goal_bp}")
        if not 0 < self.free_goal_bp < BP:
            raise InvalidConfig(f"free goal must be in (0, 10000) bp, got {self.free_goal_bp}")
        if not 0 < self.hot_percent <= 100:
            raise InvalidConfig(f"hot_percent must be 1..100, got {self.hot_percent}")
        for n in ("min_age_aggrs", "min_gain_bp", "reset_interval_ms", "max_ranges"):
            if getattr(self, n) < 0:
                raise InvalidConfig(f"{n} must be >= 0, got {getattr(self, n)}")
        if self.reset_interval_ms == 0:
            raise InvalidConfig("reset_interval_ms must be > 0")
        if not self.min_reports_per_mib >= 0:
            raise InvalidConfig(f"min_reports_per_mib must be >= 0, got "
                                f"{self.min_reports_per_mib}")

    @property
    def sz_per_aggregation(self) -> int:
        """Bytes one accessor may move out of one node per aggregation interval."""
        return max(4096, self.quota_bytes_per_s * self.attrs.aggr_us // 1_000_000)


def accessor_filter(accessor) -> SampleFilter:
    """The sample filter keeping only ``accessor``'s reports (cpumask, else threads)."""
    if accessor.cpus:
        return SampleFilter("cpumask", allow=True, cpus=accessor.cpus)
    if accessor.tids:
        return SampleFilter("threads", allow=True, tids=accessor.tids)
    raise InvalidConfig(f"accessor {accessor.name} has neither cpus nor tids to tell its "
                        f"reports apart")


def only_target(ti: int) -> Filter:
    """Core filter rejecting every target but ``ti`` (explicit, so ops filters after it
    cannot turn other targets back on)."""
    return Filter("target", matching=False, allow=False, target_idx=ti)


def allow_ranges(ti: int, ranges) -> list:
    """Core filters passing only ``ranges`` (bytes) of target ``ti``: other targets and the
    rest of ``ti`` are rejected explicitly, so ops filters after them see only the ranges."""
    return ([only_target(ti)] + [Filter("addr", allow=True, address_range=r) for r in ranges]
            + [Filter("target", matching=True, allow=False, target_idx=ti)])


def promote_scheme(src_ti: int, dst: int, fuller: tuple, cfg: HolisticConfig,
                   ops_filters=(), name=None) -> Scheme:
    """``migrate_hot`` of hot pages of target ``src_ti`` to node ``dst``; runs while ``dst``
    is under the used goal and every node of ``fuller`` is full (free share below
    ``10000 - used_goal_bp``)."""
    goals = [QuotaGoal("node_mem_used_bp", cfg.used_goal_bp, nid=dst)]
    goals += [QuotaGoal("node_mem_free_bp", BP - cfg.used_goal_bp, nid=n) for n in fuller]
    # any access count: the coordinator's address allow filters (set at the end of one
    # aggregation, applied at the end of the next) already carry the decision, hotness and
    # dwell included; requiring the pages to be hot again at the apply would drop every
    # approval whose accesses came in one burst (NUMA hint faults)
    return Scheme(AccessPattern(min_nr_accesses=0, max_nr_accesses=U64_MAX),
                  "migrate_hot", target_nid=dst,
                  quota=Quota(reset_interval_ms=cfg.reset_interval_ms, weight_nr_accesses=100,
                              weight_age=100, goals=goals, goal_tuner="temporal"),
                  filters=[*allow_ranges(src_ti, ()), *ops_filters], name=name)


def demote_scheme(src_ti: int, src: int, dst: int, cfg: HolisticConfig, ops_filters=(),
                  name=None) -> Scheme:
    """``migrate_cold`` of pages of target ``src_ti`` (node ``src``) not accessed for
    ``min_age_aggrs`` aggregations to ``dst``, while ``src`` is short of free memory and
    ``dst`` has room."""
    goals = [QuotaGoal("node_mem_free_bp", cfg.free_goal_bp, nid=src),
             QuotaGoal("node_mem_used_bp", cfg.used_goal_bp, nid=dst)]
    return Scheme(AccessPattern(min_nr_accesses=0, max_nr_accesses=0,
                                min_age=cfg.min_age_aggrs),
                  "migrate_cold", target_nid=dst,
                  quota=Quota(reset_interval_ms=cfg.reset_interval_ms, weight_nr_accesses=100,
                              weight_age=100, goals=goals, goal_tuner="temporal"),
                  filters=[*allow_ranges(src_ti, ()), *ops_filters], name=name)


def arbitrate(hot, weight, cost, top, cur_node, hot_min: float, min_gain_bp: int,
              also_hot=None):
    """Which accessor's promotions may take each piece of memory.

    ``hot``: (pieces, accessors) access ratio per aggregation (0..1); ``weight``:
    (accessors,); ``cost``: (accessors, nodes) access cost, node axis indexed by node id;
    ``top``: (accessors,) each accessor's best node; ``cur_node``: (pieces,) node the piece
    is on; ``also_hot``: optional bool (pieces, accessors), accessors that compete for a
    piece although their ``hot`` is under ``hot_min`` (the coordinator passes this
    aggregation's hotness while ``hot`` is the moving average: an accessor that may promote
    a piece must be weighed against the others).  Returns bool (pieces, accessors): pieces
    hot for at most one accessor are free for all; a piece hot for several goes only to the
    hot accessor whose best node has the lowest weighted cost (weighted by ``hot``), and
    only if that cost is at least ``min_gain_bp`` below the current one.
    """
    hot = np.asarray(hot, float)
    is_hot = hot >= hot_min
    if also_hot is not None:
        is_hot = is_hot | np.asarray(also_hot, bool)
    shared = is_hot.sum(axis=1) >= 2
    allow = np.ones(hot.shape, bool)
    if not shared.any():
        return allow
    h = hot[shared] * np.asarray(weight, float)
    c = h @ np.asarray(cost, float)                                  # (shared, nodes)
    at_top = c[:, np.asarray(top)]                                   # (shared, accessors)
    at_top = np.where(is_hot[shared], at_top, np.inf)
    owner = at_top.argmin(axis=1)
    best = at_top[np.arange(len(owner)), owner]
    cur = c[np.arange(len(owner)), np.asarray(cur_node)[shared]]
    gain_ok = (cur - best) * BP >= min_gain_bp * cur
    sub = np.zeros((len(owner), hot.shape[1]), bool)
    sub[np.arange(len(owner)), owner] = gain_ok
    allow[shared] = sub
    return allow


def select_ranges(b, mask, priority, budget: int, limit: int):
    """Coalesced [start, end) byte ranges of pieces ``[b[k], b[k+1])`` where ``mask``, taken
    by ``priority`` (highest first) until ``budget`` bytes (the last piece is cut, page
    aligned); at most ``limit`` ranges (the largest)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0 or budget <= 0:
        return []
    idx = idx[np.argsort(-np.asarray(priority, float)[idx], kind="stable")]
    s, e = b[idx].astype(np.int64), b[idx + 1].astype(np.int64)
    cum = np.cumsum(e - s)
    k = int(np.searchsorted(cum, budget, side="left"))
    s, e = s[:k + 1], e[:k + 1].copy()
    if cum[min(k, len(cum) - 1)] > budget:
        e[-1] -= -(-(int(cum[k]) - budget) // 4096) * 4096      # whole pages, within budget
    ok = e > s
    s, e = s[ok], e[ok]
    o = np.argsort(s)
    s, e = s[o], e[o]
    brk = np.ones(len(s), bool)
    brk[1:] = s[1:] != e[:-1]
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(s)) - 1
    s, e = s[first], e[last]
    if len(s) > limit:
        keep = np.sort(np.argsort(e - s, kind="stable")[::-1][:limit])
        s, e = s[keep], e[keep]
    return list(zip(s.tolist(), e.tolist()))


def _covering(t, addrs):
    """Which of ``addrs`` lie in a region of target snapshot ``t`` (bool mask), and the
    index of that region for each of those."""
    k = np.searchsorted(t.start, addrs, side="right") - 1
    ok = k >= 0
    ok[ok] = addrs[ok] < t.end[k[ok]]
    return ok, k[ok]


class HolisticPolicy:
    """Per-accessor monitoring contexts, their TPP schemes and the shared-page coordinator.

    ``ops``: an Operations backend shared by all contexts, or ``accessor -> Operations``.
    ``hierarchies``: from :func:`~damoncore.policies.hierarchy.build_hierarchies`.
    ``node_ranges``: {memory node: [(start, end)]} physical bytes (one target per node).
    ``ops_filters``: DAMOS ops filters appended to every scheme (e.g. ``memcg`` allow).
    ``extra_sample_filters``: sample filters appended after the accessor's own (e.g. a
    threads filter for ``--pids``).
    """

    def __init__(self, ops, hierarchies, node_ranges, config: HolisticConfig | None = None,
                 ops_filters=(), extra_sample_filters=(), seed: int = 0):
        self.config = cfg = config or HolisticConfig()
        self.hierarchies = list(hierarchies)
        if not self.hierarchies:
            raise InvalidConfig("holistic migration needs at least one accessor")
        self.nodes = sorted(n for n, r in node_ranges.items() if r)
        on_path = {n for h in self.hierarchies for n in h.path}
        missing = sorted(on_path - set(self.nodes))
        if missing:
            raise InvalidConfig(f"no physical ranges for memory nodes {missing}")
        self.ti = {n: i for i, n in enumerate(self.nodes)}
        nn = max(self.nodes) + 1
        known = [c for h in self.hierarchies for c in h.cost.values()]
        # a node missing from a path is "far": finite, so that 0 hotness x cost stays 0
        self.cost = np.full((len(self.hierarchies), nn), 10.0 * max(known))
        for a, h in enumerate(self.hierarchies):
            for n, c in h.cost.items():
                self.cost[a, n] = c
        self.top = np.array([h.path[0] for h in self.hierarchies])
        self.weight = np.array([h.accessor.weight for h in self.hierarchies], float)
        self.owners = node_owners(self.hierarchies)
        self.contexts = []
        self.promotes = []        # per accessor: [(src target index, scheme)]
        self.demotes = []
        self._ops_filters = list(ops_filters)
        self._streaks = {}        # target index -> (breakpoints, hot since, ema) per accessor
        self._snaps = [None] * len(self.hierarchies)
        self.nr_decisions = 0
        self.nr_shared_rejected = 0
        self.nr_sparse_rejected = 0       # (piece, accessor) hot but too few reports/MiB
        for a, h in enumerate(self.hierarchies):
            o = ops(h.accessor) if callable(ops) and not hasattr(ops, "apply_scheme") else ops
            ctx = Context(o, [Target(ranges=node_ranges[n], name=f"node{n}")
                              for n in self.nodes],
                          attrs=cfg.attrs, primitives=("page_fault",),
                          sample_filters=[accessor_filter(h.accessor), *extra_sample_filters],
                          seed=seed + a, name=h.accessor.name)
            proms, dems = [], []
            tops = set(self.top.tolist())
            for i in range(1, len(h.path)):
                if not cfg.promote_from_top and h.path[i] in tops:
                    continue
                for j in range(i):
                    s = promote_scheme(self.ti[h.path[i]], h.path[j], h.path[:j], cfg,
                                       ops_filters,
                                       name=f"{h.accessor.name}:promote {h.path[i]}->{h.path[j]}")
                    proms.append((self.ti[h.path[i]], s))
            for i in range(len(h.path) - 1):
                src = h.path[i]
                if self.owners.get(src) == a:
                    s = demote_scheme(self.ti[src], src, h.path[i + 1], cfg, ops_filters,
                                      name=f"{h.accessor.name}:demote {src}->{h.path[i + 1]}")
                    dems.append((self.ti[src], s))
            # demotions first: a page promoted in this pass must not meet a demotion that
            # still sees its destination region's last (cold) aggregation
            for _, s in dems + proms:
                ctx.add_scheme(s)
            ctx.add_callback(self._make_callback(a))
            self.contexts.append(ctx)
            self.promotes.append(proms)
            self.demotes.append(dems)

    # --- running -------------------------------------------------------------------------
    def kdamond(self) -> Kdamond:
        """All contexts on one clock (required for the simulated machine)."""
        return Kdamond(self.contexts)

    def run(self, duration_us: int | None = None) -> None:
        self.kdamond().run(duration_us)

    def describe(self) -> list:
        """One line per accessor: its path with costs and its number of schemes."""
        return [f"{h.describe()}  [{len(p)} promote, {len(d)} demote schemes]"
                for h, p, d in zip(self.hierarchies, self.promotes, self.demotes)]

    def stats(self) -> dict:
        """{accessor: {sz_promoted, sz_demoted, migrated: {(src, dst): bytes}}} (bytes)."""
        out = {}
        for h, ctx in zip(self.hierarchies, self.contexts):
            mig = {}
            for s in ctx.schemes:
                for k, v in s.stats.migrated.items():
                    mig[k] = mig.get(k, 0) + v
            out[h.accessor.name] = {
                "sz_promoted": sum(s.stats.sz_promoted for s in ctx.schemes),
                "sz_demoted": sum(s.stats.sz_demoted for s in ctx.schemes),
                "migrated": mig}
        return out

    # --- coordination --------------------------------------------------------------------
    def _make_callback(self, a: int):
        def on_aggregation(ctx, snap):
            self._snaps[a] = snap
            if all(s is not None for s in self._snaps):
                self.decide(self._snaps)
                self._snaps = [None] * len(self.hierarchies)
            return False
        return on_aggregation

    def hotness(self, snaps, ti: int):
        """Union pieces of target ``ti`` over all contexts: ``(b, hot)`` with breakpoints
        ``b`` (bytes) and ``hot`` (pieces, accessors), the access ratio per aggregation."""
        per = []
        for snap in snaps:
            t = next((x for x in snap.targets if x.target_idx == ti), None)
            per.append((t, max(1, snap.max_nr_accesses)))
        cols = [np.concatenate([t.start, t.end]) for t, _ in per if t is not None]
        prev = self._streaks.get(ti)
        if prev is not None:
            cols.append(prev[0])
        if not cols:
            return np.zeros(0, np.uint64), np.zeros((0, len(snaps)))
        b = np.unique(np.concatenate(cols))
        ps = b[:-1]
        hot = np.zeros((len(ps), len(snaps)))
        for a, (t, mx) in enumerate(per):
            if t is None or len(t.start) == 0:
                continue
            ok, k = _covering(t, ps)
            hot[ok, a] = t.nr_accesses[k] / mx
        return b, hot

    def report_density(self, snaps, ti: int, b):
        """Reports per MiB of the region covering each piece ``[b[k], b[k+1])`` of target
        ``ti``, (pieces, accessors), in this aggregation; None if a snapshot has no report
        counts (contexts without the ``page_fault`` primitive)."""
        ps = b[:-1]
        dens = np.zeros((len(ps), len(snaps)))
        for a, snap in enumerate(snaps):
            t = next((x for x in snap.targets if x.target_idx == ti), None)
            if t is None or len(t.start) == 0:
                continue
            if t.nr_reports is None:
                return None
            ok, k = _covering(t, ps)
            dens[ok, a] = t.nr_reports[k] * float(MiB) / (t.end[k] - t.start[k])
        return dens

    def _track(self, ti: int, b, hot, is_hot):
        """Per piece and accessor: consecutive aggregations (including this one) hot at this
        physical address, and the moving average of the access ratio in percent
        (``ema = (3 * ema + 100 * hot) / 4``).  ``b`` contains the previous breakpoints
        (see :meth:`hotness`), so every piece maps into one old piece."""
        r = self.nr_decisions
        since = np.where(is_hot, r, -1)
        old_ema = np.zeros(hot.shape, np.int64)
        prev = self._streaks.get(ti)
        if prev is not None and len(prev[0]) > 1:
            pb, psince, pema = prev
            k = np.searchsorted(pb, b[:-1], side="right") - 1
            ok = (k >= 0) & (k < len(pb) - 1)
            old = np.full(is_hot.shape, -1)
            old[ok] = psince[k[ok]]
            old_ema[ok] = pema[k[ok]]
            since = np.where(is_hot & (old >= 0), old, since)
        ema = (3 * old_ema + np.rint(100 * hot).astype(np.int64)) // 4
        # store coalesced: keep a breakpoint only where some accessor's state changes
        keep = np.ones(len(b), bool)
        keep[1:-1] = ((since[1:] != since[:-1]) | (ema[1:] != ema[:-1])).any(axis=1)
        first = np.flatnonzero(keep[:-1])
        self._streaks[ti] = (b[keep], since[first], ema[first])
        return np.where(since >= 0, r - since + 1, 0), ema

    def decide(self, snaps) -> None:
        """Set every scheme's address filters from this round's snapshots."""
        cfg = self.config
        hot_min = cfg.hot_percent / 100
        lim = cfg.max_ranges
        budget = cfg.sz_per_aggregation
        self.nr_decisions += 1
        for n in self.nodes:
            ti = self.ti[n]
            b, hot = self.hotness(snaps, ti)
            if len(b) < 2:
                continue
            if cfg.min_reports_per_mib > 0:
                dens = self.report_density(snaps, ti, b)
                if dens is not None:
                    sparse = (hot > 0) & (dens < cfg.min_reports_per_mib)
                    self.nr_sparse_rejected += int((sparse & (hot >= hot_min)).sum())
                    hot = np.where(sparse, 0.0, hot)
            is_hot = hot >= hot_min
            streak, ema = self._track(ti, b, hot, is_hot)
            # how much each accessor wants a piece, from the moving average: one
            # aggregation's sampling noise on a small region must not hand it over; who
            # competes: hot in the average or in this aggregation (approval below needs the
            # latter only, so an accessor hot now but not on average must still be weighed
            # against the ones hot on average, else a region of its that straddles their
            # pages would be free for it to take)
            allow = arbitrate(ema / 100, self.weight, self.cost, self.top,
                              np.full(len(hot), n), hot_min, cfg.min_gain_bp, also_hot=is_hot)
            self.nr_shared_rejected += int((is_hot & ~allow).sum())
            ok = is_hot & allow & (streak >= max(1, cfg.min_age_aggrs))
            cold = ~is_hot.any(axis=1) & (ema < cfg.hot_percent).all(axis=1)
            size = np.diff(b).astype(float)
            for a in range(len(self.hierarchies)):
                approved = allow_ranges(ti, select_ranges(b, ok[:, a], hot[:, a], budget, lim))
                for sti, s in self.promotes[a]:
                    if sti == ti:
                        s.filters = approved + self._ops_filters
                approved = allow_ranges(ti, select_ranges(b, cold, size, budget, lim))
                for sti, s in self.demotes[a]:
                    if sti == ti:
                        s.filters = approved + self._ops_filters
        # act on the decision at the next sample, not at the end of the next aggregation
        # (then once per aggregation, each time on the newest decision)
        for ctx, proms, dems in zip(self.contexts, self.promotes, self.demotes):
            for _, s in proms + dems:
                s.next_apply_sis = ctx.passed_sample_intervals + 1
