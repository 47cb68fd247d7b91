"""Holistic NUMA migration: one accessor-aware TPP per accessor, each along its own path.

For every accessor (a CPU node's CPUs, or a device) one :class:`~damoncore.Context` watches
all memory nodes (one physical :class:`~damoncore.Target` per node), fed only with that
accessor's access reports (``primitives=("page_fault",)`` and a cpumask or threads
:class:`~damoncore.SampleFilter`), so its reports say what *this* accessor touches.  Its
schemes walk the accessor's :class:`~damoncore.policies.hierarchy.Hierarchy`:

- promote: a ``migrate_hot`` scheme per (path node ``i``, better path node ``j < i``), with
  no access-pattern condition of its own; its quota goal (``node_mem_used_bp`` of ``j``
  below ``used_goal_bp``) pauses it when ``j`` is full;
- demote: the owner of a node (the accessor ranking it highest) moves pages cold for every
  accessor one step down its path while the node's free share is under ``free_goal_bp`` and
  the next node is under ``used_goal_bp``.

Goals use the ``temporal`` tuner (run while unmet, pause when met).  What the schemes act on
is decided by a coordinator that sees every context's snapshot each aggregation and sets the
schemes' address *allow* filters; a decision made at the end of aggregation N is applied
once, at the next sample (schemes apply before the aggregation callbacks run, so by default
they would act one aggregation later), whatever the access counts since: a burst of
accesses in one aggregation (NUMA hint faults) is enough to move its pages.

What the coordinator knows (:class:`PageHistory`): for every page an access report named,
per accessor, a moving average of its reports per aggregation (``3/4 old + 1/4 new``),
where it was last reported and how often the policy moved it.  Pages are keyed by the ops
backend's :meth:`~damoncore.Operations.page_keys` (the simulated page, or the faulting
process' virtual page for perf reports), which a migration does not change: a page's
history follows it to its new frame.  A backend that cannot tell keys pages by physical
address, and a moved page then starts over.

What it decides, per *piece* of a node (the union of all contexts' region boundaries: DAMON
adapts regions to similar access, so a piece is a good unit to average over):

- hotness per accessor, comparable across pieces of any size: the sum of the piece's pages'
  moving averages divided by its pages (reports per page per aggregation).  A piece is hot
  for an accessor at ``hot_percent`` of that accessor's typical density (the median over its
  reported pages, weighted by their reports) and at least ``min_reports_per_mib``;
- where it should be: the node with room (under ``used_goal_bp``, after what this round
  already sent there) that minimizes the weighted access cost
  ``sum_a weight_a * density_a * cost_a(node)`` over every accessor (:func:`arbitrate`),
  among the destinations of the promote schemes of the accessors it is hot for;
- whether it moves: a piece hot for one accessor moves to its best node with room once it
  has been hot for ``min_age_aggrs`` aggregations there (TPP); a piece hot for several
  (shared) moves only if the weighted cost drops by at least ``min_gain_bp`` at the
  destination, and only once that gain held for ``min_age_aggrs`` aggregations in a row,
  with the same destination (real and lasting).  Otherwise it is left alone.

What moves: only the pages of an approved piece that an access report named in the last
``evidence_aggrs`` aggregations (coalesced runs, page granular), never their cold
neighbours; a page the policy already moved ``m`` times waits ``min_age_aggrs * (1 + m)``
aggregations after its last move before it can move again.  Demotions take cold pieces
(cold for every accessor) minus the pages reported in the last ``evidence_aggrs``
aggregations.  Budgets: at most ``quota_bytes_per_s * aggr_us`` bytes per aggregation per
accessor and source node, the most beneficial pages first (promotions) or the largest cold
ranges first (demotions), and never more than a node's room to its used goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import PAGE_SIZE, Operations
from ..core import Attrs, Context, Kdamond, SampleFilter, Target
from ..errors import InvalidConfig
from ..ops.base import KEY_NONE
from ..schemes.scheme import U64_MAX, AccessPattern, Filter, Quota, QuotaGoal, Scheme
from ..units import BP
from .hierarchy import node_owners

MiB = 1 << 20
EMA_KEEP = 0.75           # moving averages: 3/4 of the old value + 1/4 of this aggregation's
FADED = 1e-3              # a page's averages all below this: forgotten
ACTIVE_AGGRS = 2          # an accessor with no report on a piece for this long left it
WARM_AGGRS = 8            # ~2 / (1 - EMA_KEEP): averages this old have forgotten their start


@dataclass
class HolisticConfig:
    """Knobs of :class:`HolisticPolicy`.

    ``quota_bytes_per_s``: most bytes per second moved out of one node by one accessor's
    promotions, and by its owner's demotions.  ``reset_interval_ms``: quota goal window.
    ``used_goal_bp``: promote into a node until its used share reaches this (basis points).
    ``free_goal_bp``: demote out of a node while its free share is below this (bp).
    ``hot_percent``: a piece is hot for an accessor when its reports per page reach this
    percentage of the accessor's typical density (the median over the pages it touches,
    weighted by their reports): relative, so it does not depend on the sampling ratio.
    ``min_age_aggrs``: hysteresis, consecutive aggregation intervals a piece must be hot
    before it is promoted (cold before it is demoted), and a shared piece's gain must last;
    a page moved ``m`` times waits ``min_age_aggrs * (1 + m)`` aggregations before its next
    move.  ``min_gain_bp``: hysteresis for shared pieces, weighted cost gain needed to move
    (bp of the current cost).  ``evidence_aggrs``: a page moves (or is kept from a
    demotion) only if a report named it in the last this many aggregations.
    ``max_ranges``: cap of address filters per scheme (largest kept).  ``attrs``: monitoring
    attributes of every context (intervals in us).  ``promote_from_top``: promotions may take
    pages out of another accessor's best node; False when the reports cannot see accesses
    there (NUMA hint faults in tiering mode never fault top-tier pages, so the only faults
    there are first-touch and migration faults, which say nothing about steady use).
    ``min_reports_per_mib``: the least density that is ever hot, in reports per MiB per
    aggregation (moving average; 0: off): one stray fault in a large piece does not make
    it hot; with fault reports (each fault sampled) memory that hint-faults gets hundreds
    per MiB.
    """

    quota_bytes_per_s: int = 256 * MiB
    used_goal_bp: int = 9970
    free_goal_bp: int = 50
    hot_percent: int = 10
    min_age_aggrs: int = 3
    min_gain_bp: int = 2000
    reset_interval_ms: int = 100
    max_ranges: int = 512
    evidence_aggrs: int = 8
    piece_bytes: int = 256 << 10
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
        for n in ("min_age_aggrs", "min_gain_bp", "reset_interval_ms", "max_ranges",
                  "evidence_aggrs", "piece_bytes"):
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
        return max(PAGE_SIZE, self.quota_bytes_per_s * self.attrs.aggr_us // 1_000_000)


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


def arbitrate(density, weight, cost, cur_node, reach, room, min_gain_bp: int, shared):
    """Where each piece should go and whether that is worth a move.

    ``density``: (pieces, accessors) reports per page per aggregation (moving averages);
    ``weight``: (accessors,); ``cost``: (accessors, nodes) access cost, node axis indexed by
    node id; ``cur_node``: (pieces,) the node each piece is on; ``reach``: bool (pieces,
    nodes), the destinations some promote scheme may take the piece to; ``room``: bool
    (nodes,), nodes that can take more; ``shared``: bool (pieces,), hot for several
    accessors.  Returns ``(dst, cur_cost, dst_cost, ok)``: the reachable node with room of
    the lowest weighted cost ``sum_a weight_a * density_a * cost_a(node)``, both costs, and
    whether to move: the destination is cheaper, and for shared pieces by at least
    ``min_gain_bp`` of the current cost.
    """
    density = np.asarray(density, float)
    c = (density * np.asarray(weight, float)) @ np.asarray(cost, float)   # (pieces, nodes)
    idx = np.arange(len(c))
    cur = c[idx, np.asarray(cur_node)]
    cand = np.where(np.asarray(reach, bool) & np.asarray(room, bool)[None, :], c, np.inf)
    dst = cand.argmin(axis=1) if c.shape[1] else np.zeros(len(c), np.int64)
    best = cand[idx, dst] if len(c) else np.zeros(0)
    ok = best < cur
    gain_ok = (cur - best) * BP >= min_gain_bp * cur
    ok &= ~np.asarray(shared, bool) | gain_ok
    return dst, cur, best, ok


def largest_runs(s, e, limit: int):
    """Ranges ``[s, e)`` (disjoint) coalesced where they touch, sorted; at most ``limit``
    (the largest): a list of ``(start, end)``."""
    s, e = np.asarray(s, np.int64), np.asarray(e, np.int64)
    if len(s) == 0:
        return []
    o = np.argsort(s, kind="stable")
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


def subtract_ranges(s, e, hs, he):
    """``[s, e)`` minus the holes ``[hs, he)`` (each list sorted and disjoint)."""
    s, e = np.asarray(s, np.int64), np.asarray(e, np.int64)
    hs, he = np.asarray(hs, np.int64), np.asarray(he, np.int64)
    if len(hs) == 0 or len(s) == 0:
        return s, e
    hs, he = runs(hs, he)
    pts = sorted_unique(np.concatenate([s, e, hs, he]))
    lo, hi = pts[:-1], pts[1:]
    i = np.searchsorted(s, lo, side="right") - 1
    inside = (i >= 0) & (lo < e[np.maximum(i, 0)])
    j = np.searchsorted(hs, lo, side="right") - 1
    hole = (j >= 0) & (lo < he[np.maximum(j, 0)])
    keep = inside & ~hole
    lo, hi = lo[keep], hi[keep]
    if len(lo) == 0:
        return lo, hi
    brk = np.ones(len(lo), bool)
    brk[1:] = lo[1:] != hi[:-1]
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(lo)) - 1
    return lo[first], hi[last]


def sorted_unique(a, return_inverse: bool = False):
    """np.unique by sorting (numpy's hash-based unique is slower on large uint64 arrays)."""
    a = np.asarray(a)
    o = np.argsort(a, kind="stable") if return_inverse else None
    srt = a[o] if return_inverse else np.sort(a)
    first = np.ones(len(srt), bool)
    first[1:] = srt[1:] != srt[:-1]
    u = srt[first]
    if not return_inverse:
        return u
    inv = np.empty(len(a), np.int64)
    inv[o] = np.cumsum(first) - 1
    return u, inv


def runs(s, e):
    """Touching or overlapping ranges ``[s, e)`` (sorted by start) merged."""
    s, e = np.asarray(s, np.int64), np.asarray(e, np.int64)
    if len(s) == 0:
        return s, e
    run_end = np.maximum.accumulate(e)
    brk = np.ones(len(s), bool)
    brk[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(s)) - 1
    return s[first], run_end[last]


def weighted_median(values, weights) -> float:
    """The value at half the total weight (0 without weight)."""
    values, weights = np.asarray(values, float), np.asarray(weights, float)
    tot = weights.sum()
    if len(values) == 0 or tot <= 0:
        return 0.0
    o = np.argsort(values, kind="stable")
    k = int(np.searchsorted(np.cumsum(weights[o]), tot / 2))
    return float(values[o][min(k, len(o) - 1)])


class PageHistory:
    """The coordinator's memory of reported pages, one row per page, sorted by key.

    ``key``: the page's key (:meth:`~damoncore.Operations.page_keys`, or its physical
    address when ``by_address``); ``loc``: physical address it was last reported at
    (``NOWHERE`` while the policy is moving it); ``ema``: (rows, accessors) moving average
    of reports per aggregation; ``last``: decision round of its last report, ``seen`` of
    each accessor's last (rows, accessors); ``moves``:
    times the policy moved it, ``moved_at`` the round of the last; ``pending``: the address
    it was approved to leave (``NOWHERE`` if none), ``pending_at`` the round.
    """

    NOWHERE = U64_MAX

    def __init__(self, nr_accessors: int, node_of, by_address: bool = False):
        self.nr_accessors = nr_accessors
        self.node_of = node_of
        self.by_address = by_address
        self.key = np.zeros(0, np.uint64)
        self.loc = np.zeros(0, np.uint64)
        self.ema = np.zeros((0, nr_accessors))
        self.last = np.zeros(0, np.int64)
        self.seen = np.zeros((0, nr_accessors), np.int64)
        self.moves = np.zeros(0, np.int64)
        self.moved_at = np.zeros(0, np.int64)
        self.pending = np.zeros(0, np.uint64)
        self.pending_at = np.zeros(0, np.int64)
        self._by_loc = None

    def __len__(self):
        return len(self.key)

    _COLS = ("key", "loc", "ema", "last", "seen", "moves", "moved_at", "pending", "pending_at")

    def _take(self, rows) -> None:
        for c in self._COLS:
            setattr(self, c, getattr(self, c)[rows])
        self._by_loc = None

    def decay(self) -> None:
        """One aggregation passed: every average keeps 3/4."""
        self.ema *= EMA_KEEP

    def add(self, keys, locs, a: int, r: int) -> None:
        """Reports of accessor ``a`` in round ``r``: page keys and the physical page
        addresses they were reported at (equal lengths)."""
        if len(keys) == 0:
            return
        uk, inv = sorted_unique(keys, return_inverse=True)
        cnt = np.bincount(inv, minlength=len(uk))
        uloc = np.zeros(len(uk), np.uint64)
        uloc[inv] = locs                                  # any report's address will do
        j = np.searchsorted(self.key, uk)
        hit = j < len(self.key)
        hit[hit] = self.key[j[hit]] == uk[hit]
        if not hit.all():
            new = uk[~hit]
            n, z = len(new), np.zeros(len(new), np.int64)
            parts = {"key": new, "loc": np.full(n, self.NOWHERE, np.uint64),
                     "ema": np.zeros((n, self.nr_accessors)), "last": z,
                     "seen": np.zeros((n, self.nr_accessors), np.int64), "moves": z,
                     "moved_at": z, "pending": np.full(n, self.NOWHERE, np.uint64),
                     "pending_at": z}
            for c in self._COLS:
                setattr(self, c, np.concatenate([getattr(self, c), parts[c]]))
            self._take(np.argsort(self.key, kind="stable"))
            j = np.searchsorted(self.key, uk)
        self.ema[j, a] += (1 - EMA_KEEP) * cnt
        self.last[j] = r
        self.seen[j, a] = r
        # a page the policy was moving: reported off its old frame, it moved; reported at
        # the old frame right after the approval, the report predates the move; later, the
        # move failed (no room, page busy) and the page is where it was
        pend = self.pending[j] != self.NOWHERE
        old = pend & (uloc == self.pending[j])
        stale = old & (r <= self.pending_at[j] + 1)
        moved = pend & ~old
        if moved.any():
            jm = j[moved]
            moved_node = self.node_of(uloc[moved]) != self.node_of(self.pending[jm])
            self.moves[jm[moved_node]] += 1
            self.moved_at[jm[moved_node]] = r
        done = pend & ~stale
        self.pending[j[done]] = self.NOWHERE
        self.loc[j[~stale]] = uloc[~stale]
        self._by_loc = None

    def located(self, lo: int, hi: int):
        """Rows reported last at an address in ``[lo, hi)``, by address: ``(rows, locs)``."""
        if self._by_loc is None:
            o = np.argsort(self.loc, kind="stable")
            self._by_loc = (o, self.loc[o])
        o, locs = self._by_loc
        i, k = np.searchsorted(locs, [lo, hi])
        return o[i:k], locs[i:k]

    def approved(self, rows, r: int) -> None:
        """The policy is moving these pages (round ``r``): not located until reported
        again; keyed by address, they start over."""
        if self.by_address:
            keep = np.ones(len(self.key), bool)
            keep[rows] = False
            self._take(np.flatnonzero(keep))
            return
        self.pending[rows] = self.loc[rows]
        self.pending_at[rows] = r
        self.loc[rows] = self.NOWHERE
        self._by_loc = None

    def prune(self, r: int, keep_moved_aggrs: int) -> None:
        """Forget pages whose averages faded, unless moved in the last
        ``keep_moved_aggrs`` rounds (their move count still matters)."""
        faded = self.ema.max(axis=1, initial=0) < FADED
        recent = (self.moves > 0) & (r - self.moved_at < keep_moved_aggrs)
        drop = faded & ~recent & (self.pending == self.NOWHERE)
        if drop.any():
            self._take(np.flatnonzero(~drop))


class Streaks:
    """Since which round a condition holds without a break, per key and column (-1: it
    does not hold now); with a ``tag``, a change of tag breaks the streak too.  Keys seen
    in a round replace the previous round's (a key not seen is forgotten)."""

    def __init__(self, width: int):
        self.key = np.zeros(0, np.uint64)
        self.since = np.zeros((0, width), np.int64)
        self.tag = np.zeros(0, np.int64)

    def update(self, keys, on, r: int, tag=None) -> np.ndarray:
        """``keys``: sorted unique (uint64); ``on``: bool (keys, width)."""
        keys = np.asarray(keys, np.uint64)
        on = np.asarray(on, bool).reshape(len(keys), self.since.shape[1])
        tag = np.zeros(len(keys), np.int64) if tag is None else np.asarray(tag, np.int64)
        old = np.full(on.shape, -1, np.int64)
        j = np.searchsorted(self.key, keys)
        hit = j < len(self.key)
        hit[hit] = self.key[j[hit]] == keys[hit]
        hit[hit] = self.tag[j[hit]] == tag[hit]
        old[hit] = self.since[j[hit]]
        since = np.where(on, np.where(old >= 0, old, r), -1)
        self.key, self.since, self.tag = keys, since, tag
        return since


class HolisticPolicy:
    """Per-accessor monitoring contexts, their TPP schemes and the placement coordinator.

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
        self._ti_of = np.zeros(max(self.nodes) + 1, np.int64)      # node id -> target
        self._ti_of[self.nodes] = np.arange(len(self.nodes))
        self.node_ranges = {n: sorted((int(a), int(b)) for a, b in node_ranges[n])
                            for n in self.nodes}
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
        self._promote = {}        # (accessor, src target index, dst node) -> scheme
        self._reach = np.zeros((len(self.hierarchies), len(self.nodes), nn), bool)
        self._ops_filters = list(ops_filters)
        self._hot_since = Streaks(len(self.hierarchies))    # piece -> since, per accessor
        self._gain_since = Streaks(1)                       # (piece, node) -> since, dst
        self._seen_since = Streaks(1)                       # piece -> first round seen
        self._snaps = [None] * len(self.hierarchies)
        self.history = None       # PageHistory, made at the first decision
        self.nr_decisions = 0
        self.nr_shared_rejected = 0       # (piece) shared, a cheaper node, gain too small
        self.nr_sparse_rejected = 0       # (piece, accessor) reported, under the floor
        self.nr_pages_approved = 0
        for a, h in enumerate(self.hierarchies):
            o = ops if isinstance(ops, Operations) else ops(h.accessor)
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
                    # the coordinator sends each piece to one destination with room: no
                    # "every better node is full" goals here (they made each accessor's
                    # promotion the best node *for it*, not for the piece's users)
                    s = promote_scheme(self.ti[h.path[i]], h.path[j], (), cfg, ops_filters,
                                       name=f"{h.accessor.name}:promote {h.path[i]}->{h.path[j]}")
                    proms.append((self.ti[h.path[i]], s))
                    self._promote[(a, self.ti[h.path[i]], h.path[j])] = s
                    self._reach[a, self.ti[h.path[i]], h.path[j]] = True
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
        self.page = self.contexts[0].min_region

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

    def node_of(self, paddrs) -> np.ndarray:
        """Node of physical addresses (-1 outside every node's ranges)."""
        paddrs = np.asarray(paddrs, np.uint64)
        out = np.full(len(paddrs), -1, np.int64)
        for n, rs in self.node_ranges.items():
            for lo, hi in rs:
                out[(paddrs >= np.uint64(lo)) & (paddrs < np.uint64(hi))] = n
        return out

    def _record_reports(self, snaps, r: int) -> None:
        """Every snapshot's reported pages into the history (keys from the ops)."""
        h, page = self.history, np.uint64(self.page)
        for a, snap in enumerate(snaps):
            ctx = self.contexts[a]
            keys, locs = [], []
            for t in snap.targets:
                if t.report_addrs is None or len(t.report_addrs) == 0:
                    continue
                pg = t.report_addrs // page * page
                k = None
                if not h.by_address:
                    k = ctx.ops.page_keys(ctx, ctx.targets[t.target_idx], pg)
                    if k is None and len(h) == 0:
                        h.by_address = True      # the backend cannot tell pages apart
                keys.append(pg // page if k is None else np.asarray(k, np.uint64))
                locs.append(pg)
            if keys:
                keys, locs = np.concatenate(keys), np.concatenate(locs)
                ok = keys != np.uint64(KEY_NONE)
                h.add(keys[ok], locs[ok], a, r)

    def _breakpoints(self, snaps, ti: int):
        """Union of every context's region boundaries on target ``ti``."""
        cols = [np.concatenate([t.start, t.end]) for snap in snaps for t in snap.targets
                if t.target_idx == ti]
        if not cols:
            return np.zeros(0, np.uint64)
        return sorted_unique(np.concatenate(cols)).astype(np.uint64)

    def _room(self):
        """Per node id: bytes it may still take before its used goal, and bytes it must
        give away to reach its free goal."""
        ctx, cfg = self.contexts[0], self.config
        room = np.zeros(self.cost.shape[1])
        short = np.zeros(self.cost.shape[1])
        for n in self.nodes:
            used = int(ctx.ops.metric("node_mem_used_bp", nid=n))
            total = int(ctx.ops.metric("node_mem_total_bytes", nid=n))
            room[n] = max(0, (cfg.used_goal_bp - used) * total // BP)
            short[n] = max(0, (cfg.free_goal_bp - (BP - used)) * total // BP)
        return room, short

    def decide(self, snaps) -> None:
        """Set every scheme's address filters from this round's snapshots."""
        cfg = self.config
        self.nr_decisions += 1
        r = self.nr_decisions
        k_age = max(1, cfg.min_age_aggrs)
        if self.history is None:
            self.history = PageHistory(len(self.hierarchies), self.node_of)
        hist = self.history
        hist.decay()
        self._record_reports(snaps, r)
        hist.prune(r, keep_moved_aggrs=64 * k_age)
        pieces, pinv, dens = self._densities()
        hot, shared, since, warm = self._hotness(pieces, pinv, dens)
        recent = r - max(1, cfg.evidence_aggrs)
        # where each (piece, node) group of located pages should go, and which may go now
        node = self.node_of(hist.loc)
        located = node >= 0
        nn = self.cost.shape[1]
        group = pinv.astype(np.int64) * nn + np.where(located, node, 0)
        groups, ginv = sorted_unique(group[located], return_inverse=True)
        gp, gn = groups // nn, groups % nn                        # piece index, node
        gti = self._ti_of[gn]
        reach = (hot[gp][:, :, None] & self._reach[:, gti, :].transpose(1, 0, 2)).any(axis=1)
        room, short = self._room()
        dst, cur, best, ok = arbitrate(dens[gp], self.weight, self.cost, gn, reach,
                                       room >= self.page, cfg.min_gain_bp, shared[gp])
        self.nr_shared_rejected += int((shared[gp] & (best < cur) & ~ok).sum())
        gkey = pieces[gp] * np.uint64(nn) + gn.astype(np.uint64)
        gain_since = self._gain_since.update(gkey, ok[:, None], r, tag=dst)[:, 0]
        gain_for = np.where(gain_since >= 0, r - gain_since + 1, 0)
        # the accessor whose scheme moves a group: hot, reaching dst, the densest
        can = hot[gp] & self._reach[:, gti, dst].T
        execu = np.where(can, dens[gp], -1).argmax(axis=1)
        idx = np.arange(len(groups))
        hot_for = np.where(since[gp, execu] >= 0, r - since[gp, execu] + 1, 0)
        ok &= can[idx, execu] & (hot_for >= k_age) & (~shared[gp] | warm[gp])
        # the pages: located in an approved group and reported lately.  A piece one
        # accessor uses moves once hot for min_age aggregations (TPP); for a shared piece
        # (whose estimated mix of accessors is noisier than one accessor's hotness) the
        # gain must have lasted WARM_AGGRS times 1 + the moves the page already made; and
        # a moved page waits min_age times 1 + its moves after its last move
        rows = np.flatnonzero(located)
        moves = hist.moves[rows]
        lasting = np.where(shared[gp][ginv], max(k_age, WARM_AGGRS) * (1 + moves), 1)
        page_ok = (ok[ginv] & (hist.last[rows] > recent) & (gain_for[ginv] >= lasting)
                   & ((moves == 0) | (r - hist.moved_at[rows] >= k_age * (1 + moves))))
        sel, gs = rows[page_ok], ginv[page_ok]
        prio = (cur[gs] - best[gs]) / np.maximum(cur[gs], 1e-12)
        self._set_promotes(prio, execu[gs], gti[gs], dst[gs], hist.loc[sel], sel,
                           cfg.sz_per_aggregation, room)
        # demotions: each node's pieces minus the pages hot for anyone, reported lately
        # or being promoted
        busy = located & (hot[pinv].any(axis=1) | (hist.last > recent))
        moving = hist.pending != PageHistory.NOWHERE
        busy_locs = sorted_unique(np.concatenate([hist.loc[busy], hist.pending[moving]])
                                  .astype(np.int64))
        for n in self.nodes:
            ti = self.ti[n]
            b = self._breakpoints(snaps, ti)
            if len(b) >= 2:
                # no more than the node is short of its free goal (rounded up to a
                # piece): the goal pauses the scheme only at the next window
                need = -(-int(short[n]) // cfg.piece_bytes) * cfg.piece_bytes
                self._set_demotes(ti, b, busy_locs, min(cfg.sz_per_aggregation, need))
        # act on the decision at the next sample, not at the end of the next aggregation
        # (then once per aggregation, each time on the newest decision)
        for ctx, proms, dems in zip(self.contexts, self.promotes, self.demotes):
            for _, s in proms + dems:
                ctx.apply_scheme_at_next_sample(s)

    def _densities(self):
        """Pieces of the owners' address spaces (``piece_bytes`` of page keys) holding
        known pages: ``(pieces, piece index of every history row, density)``, density
        (pieces, accessors) in reports per page per aggregation (moving averages)."""
        hist, per_piece = self.history, max(1, self.config.piece_bytes // self.page)
        pieces, pinv = sorted_unique(hist.key // np.uint64(per_piece), return_inverse=True)
        dens = np.zeros((len(pieces), len(self.hierarchies)))
        np.add.at(dens, pinv, hist.ema)
        return pieces, pinv, dens / per_piece

    def _hotness(self, pieces, pinv, dens):
        """Per piece and accessor: ``hot``; per piece: ``shared``; the round since which
        each accessor reported it hot without a break (-1: not now), and whether its
        averages warmed up."""
        cfg, hist, r = self.config, self.history, self.nr_decisions
        nacc = len(self.hierarchies)
        # hot: a share of each accessor's typical density (the median over its pages, by
        # reports), never under the floor
        floor = cfg.min_reports_per_mib * self.page / MiB
        typical = np.array([weighted_median(dens[pinv, a], hist.ema[:, a])
                            for a in range(nacc)])
        thr = np.maximum(np.maximum(cfg.hot_percent / 100 * typical, floor), 1e-12)
        if floor > 0:
            self.nr_sparse_rejected += int(((dens > 0) & (dens < floor)).sum())
        hot = dens >= thr[None, :]
        active, now = (np.zeros((len(pieces), nacc), bool) for _ in range(2))
        for a in range(nacc):
            active[:, a] = np.bincount(pinv, hist.seen[:, a] > r - ACTIVE_AGGRS,
                                       len(pieces)) > 0
            now[:, a] = np.bincount(pinv, hist.seen[:, a] == r, len(pieces)) > 0
        # shared: several accessors at half the threshold or more (a band, so that a
        # shared piece does not read as one accessor's when another's average dips) that
        # still report it (one that left counts no more once its reports stop, while its
        # average fades)
        shared = ((dens >= thr[None, :] / 2) & active).sum(axis=1) >= 2
        # the dwell counts aggregations in which the accessor reported the piece and its
        # average is hot (the average alone stays hot for a while after a burst)
        since = self._hot_since.update(pieces, hot & now, r)
        seen = self._seen_since.update(pieces, np.ones((len(pieces), 1), bool), r)[:, 0]
        return hot, shared, since, r - seen + 1 >= WARM_AGGRS

    def _set_demotes(self, ti: int, b, busy_locs, budget: int) -> None:
        """Demote filters of target ``ti``: its pieces ``b`` without the pages at
        ``busy_locs`` (sorted), largest first, within ``budget``."""
        s, e = b[:-1].astype(np.int64), b[1:].astype(np.int64)
        if budget <= 0:
            s, e = s[:0], e[:0]
        i, k = np.searchsorted(busy_locs, [s[0], e[-1]]) if len(s) else (0, 0)
        hs = busy_locs[i:k]
        s, e = subtract_ranges(s, e, hs, hs + self.page)
        o = np.argsort(s - e, kind="stable")                # largest first
        s, e = s[o], e[o]
        n = int(np.searchsorted(np.cumsum(e - s), budget, side="right"))
        s, e = s[:n + 1], e[:n + 1].copy()
        if len(s) and int((e - s).sum()) > budget:           # cut the last, whole pages
            e[-1] -= (int((e - s).sum()) - budget + self.page - 1) // self.page * self.page
        sel = largest_runs(s[e > s], e[e > s], self.config.max_ranges)
        approved = allow_ranges(ti, sel)
        for a in range(len(self.hierarchies)):
            for sti, sch in self.demotes[a]:
                if sti == ti:
                    sch.filters = approved + self._ops_filters

    def _set_promotes(self, prio, acc, src, dst, loc, rows, budget: int, room) -> None:
        """Promote filters from the candidate pages (at ``loc``, history ``rows``): the
        most beneficial first, at most ``budget`` bytes per (accessor, source target) and
        a destination's room; the pages approved are marked in the history."""
        for (a, ti, d), s in self._promote.items():
            s.filters = allow_ranges(ti, ()) + self._ops_filters
        if len(prio) == 0:
            return
        o = np.argsort(-prio, kind="stable")
        acc, src, dst, loc, rows = acc[o], src[o], dst[o], loc[o], rows[o]
        page = self.page
        take = (_rank_in_group(acc * len(self.nodes) + src) + 1) * page <= budget
        take &= (_rank_in_group(dst) + 1) * page <= room[dst]
        acc, src, dst, loc, rows = acc[take], src[take], dst[take], loc[take], rows[take]
        approved = []
        for key in np.unique(np.stack([acc, src, dst], axis=1), axis=0):
            g = (acc == key[0]) & (src == key[1]) & (dst == key[2])
            li = loc[g].astype(np.int64)
            ranges = largest_runs(np.sort(li), np.sort(li) + page, self.config.max_ranges)
            s = self._promote[tuple(int(x) for x in key)]
            s.filters = allow_ranges(int(key[1]), ranges) + self._ops_filters
            rs = np.array([x for x, _ in ranges], np.int64)
            re = np.array([y for _, y in ranges], np.int64)
            j = np.searchsorted(rs, li, side="right") - 1
            inr = (j >= 0) & (li < re[np.maximum(j, 0)])
            approved.append(rows[g][inr])
        done = np.concatenate(approved) if approved else np.zeros(0, np.int64)
        self.nr_pages_approved += len(done)
        self.history.approved(done, self.nr_decisions)


def _rank_in_group(g) -> np.ndarray:
    """Position of every element among the earlier elements with the same group value."""
    g = np.asarray(g)
    o = np.argsort(g, kind="stable")
    gs = g[o]
    start = np.flatnonzero(np.concatenate([[True], gs[1:] != gs[:-1]]))
    cnt = np.diff(np.append(start, len(gs)))
    rank = np.arange(len(gs)) - np.repeat(start, cnt)
    out = np.empty(len(g), np.int64)
    out[o] = rank
    return out
