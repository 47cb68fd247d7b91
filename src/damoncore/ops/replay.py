"""The replay ops backend: schemes act on a simulated placement instead of memory.

A scheme replay (:mod:`damoncore.replay`) loads each recorded aggregation's regions into
the contexts and runs the real scheme engine (patterns, scores, quotas, goals, core
filters); this backend answers what the engine asks the ops for:

- ``apply_scheme``: ``migrate_hot``/``migrate_cold`` move the ranges' bytes to the
  destination node(s) of a :class:`~damoncore.sim.placement.Placement` as far as the node
  has room (``sz_applied`` = bytes moved, as the kernel's paddr counts migrated pages;
  weighted ``dests`` interleave by address as the simulator's do); ``pageout`` moves them
  to swap, ``willneed`` brings swapped bytes back to the default node; every other action
  is applied to the bytes present (no placement change).
- ops filters: only ``young`` can be judged, and only per region: a region's memory is
  young when the region was accessed in the aggregation (``nr_accesses > 0``).  The other
  types need page state a record does not hold: :func:`unsupported` names them.
- ``metric``: node used/free ratios from the placement and the node capacities given;
  ``free_mem_rate`` over every node with a capacity.
- ``apply_time_ns``: time quotas charge the bytes tried at ``throughput`` bytes/s (default
  the kernel's estimate before it has measured anything, PAGE_SIZE * 1024 per ms).
- ``node_ranges``: the placement's pieces (node_eligible_mem_bp goals).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidConfig
from ..schemes.filters import filters_pass
from ..sim.placement import SIM_PAGE_SIZE as PAGE_SIZE
from ..sim.placement import SWAP, Placement
from ..units import BP
from ..vocab import Action, FilterType
from .base import ApplyResult, Operations
from .sim import interleave_by_address

U64 = np.uint64
#: the kernel's first throughput estimate (damos_set_effective_quota()): bytes per second
DEFAULT_THROUGHPUT = PAGE_SIZE * 1024 * 1000
FILTERS = frozenset({FilterType.YOUNG})
METRICS = ("node_mem_used_bp", "node_mem_free_bp", "node_mem_total_bytes", "free_mem_rate")


class ReplayClock:
    """The clock of a replay: the engine sets the time of each recorded aggregation."""

    def __init__(self, now_us: int = 0):
        self.t = int(now_us)

    def now_us(self) -> int:
        return self.t

    def sleep_us(self, us: int) -> None:
        self.t += max(0, int(us))


def unsupported(scheme) -> str | None:
    """Why a replay cannot run ``scheme`` faithfully (None: it can); ops filters other than
    :data:`FILTERS` are refused when the scheme is installed (``supported_filters``)."""
    for g in scheme.quota.goals:
        if g.metric not in ("user_input", "node_eligible_mem_bp") and g.metric not in METRICS:
            return f"quota goal metric {g.metric!r} is not simulated by a replay"
    return None


class ReplayOps(Operations):
    """Ops over a :class:`Placement`.  ``space``: the recorded context's ``paddr`` or
    ``vaddr`` (vaddr targets are placed per pid); ``throughput``: bytes per second a time
    quota charges."""

    name = "replay"
    supported_actions = frozenset(Action)
    #: young, judged per region; the other types need page state a record does not hold
    supported_filters = FILTERS
    page_size = PAGE_SIZE

    def __init__(self, placement: Placement, space: str = "paddr",
                 throughput: int = DEFAULT_THROUGHPUT, clock: ReplayClock | None = None):
        if throughput <= 0:
            raise InvalidConfig(f"replay throughput must be > 0 bytes/s, got {throughput}")
        self.placement = placement
        self.space = space
        self.throughput = int(throughput)
        self.clock = clock or ReplayClock()

    def key(self, target):
        """The placement's address space of ``target``."""
        return None if self.space == "paddr" else target.pid

    # --- schemes -------------------------------------------------------------------------
    def _young(self, target, starts):
        r = target.regions
        k = np.searchsorted(r.start, starts, side="right") - 1
        return r.nr_accesses[np.clip(k, 0, None)] > 0

    def apply_scheme(self, ctx, target, scheme, starts, ends, ops_filters=None) -> ApplyResult:
        starts, ends = np.asarray(starts, U64), np.asarray(ends, U64)
        filters = scheme.ops_filters if ops_filters is None else ops_filters
        if filters:
            young = self._young(target, starts)
            ok = filters_pass(filters, lambda f: young, len(starts))
            starts, ends = starts[ok], ends[ok]
        sizes = ends - starts
        res = ApplyResult(sz_ops_filter_passed=int(sizes.sum()))
        a, pl, key = scheme.action, self.placement, self.key(target)
        if a in ("migrate_hot", "migrate_cold"):
            dests = scheme.destinations()
            gs, ge, g = interleave_by_address(starts, ends, [w for _, w in dests])
            for i, (nid, _) in enumerate(dests):
                moved, failed = pl.move(key, gs[g == i], ge[g == i], nid)
                res.add(ApplyResult(sum(moved.values()), 0, moved,
                                    {"ENOMEM": failed // PAGE_SIZE} if failed else {}))
        elif a == "pageout":
            moved, _ = pl.move(key, starts, ends, SWAP)
            res.sz_applied = sum(moved.values())
        elif a == "willneed":
            moved, failed = pl.move(key, starts, ends, pl.default_node, from_nodes=(SWAP,))
            res.sz_applied = sum(moved.values())
            if failed:
                res.nr_failed["ENOMEM"] = failed // PAGE_SIZE
        elif a != "stat":
            _, lo, hi, node = pl.pieces(key, starts, ends)
            res.sz_applied = int((hi - lo)[node >= 0].sum())
        return res

    def apply_time_ns(self, sz_tried: int, measured_ns: int) -> int:
        return sz_tried * 1_000_000_000 // self.throughput

    def node_ranges(self, ctx, target, starts, ends):
        _, lo, hi, node = self.placement.pieces(self.key(target), starts, ends)
        ok = node >= 0
        return lo[ok], hi[ok], node[ok].astype(np.int64)

    # --- goal metrics --------------------------------------------------------------------
    def _capacity(self, name, nid) -> int:
        cap = self.placement.capacities.get(nid)
        if cap is None:
            raise InvalidConfig(f"{name} of node {nid}: the replay needs that node's capacity "
                                f"(--node_capacity {nid} <size>)")
        return cap

    def metric(self, name: str, nid=None, memcg_path=None) -> int:
        pl = self.placement
        if name == "node_mem_total_bytes":
            return self._capacity(name, nid)
        if name in ("node_mem_used_bp", "node_mem_free_bp"):
            cap = self._capacity(name, nid)
            used = min(cap, pl.node_bytes(nid)) * BP // max(1, cap)
            return used if name == "node_mem_used_bp" else BP - used
        if name == "free_mem_rate":
            caps = {n: self._capacity(name, n) for n in pl.nodes}
            total = sum(caps.values())
            free = sum(max(0, c - pl.node_bytes(n)) for n, c in caps.items())
            return free * 1000 // max(1, total)
        raise InvalidConfig(f"metric {name!r} is not simulated by a replay")
