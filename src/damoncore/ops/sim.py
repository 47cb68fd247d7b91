"""The simulated-memory ops backend: the core's questions answered by a :class:`SimMachine`.

Accessed bits: ``prepare_access_checks`` records the time (mkold of the sampling pages);
``check_accesses`` draws, per sampling page, whether the workload touched it since then
(see :meth:`SimMachine.touched`).  Physical targets map sampling addresses back to
(process, virtual page) through the extent table; free frames are never accessed.

Ops filter model (per page of the ranges, drawn per homogeneous piece, not per page):

- ``anon``: every mapped page (all simulated memory is anonymous); free frames are not.
- ``unmapped``: free frames (physical targets only; vaddr holes are never acted on).
- ``young``: touched since the context's last ``prepare_access_checks`` (one sampling
  interval, the window in which the sampling pages' accessed bits were also cleared).
- ``active``: touched within the last ``active_aggrs`` aggregation intervals (young pages
  are always active).
- ``memcg``: the owning process' ``memcg`` path equals the filter's.
- ``hugepage_size``: never matches (the simulation maps base pages only).

Within a piece of uniform rate and placement the pages are exchangeable, so the action takes
the lowest-addressed pages of each piece, as many as passed the filters.
"""

from __future__ import annotations

import numpy as np

from ..arrays import expand_runs
from ..errors import InvalidConfig
from ..schemes.filters import filters_pass
from ..units import BP
from ..vocab import OPS_FILTER_TYPES, Action, FilterType
from ..sim.extents import KEY_END, KEY_SHIFT, SWAPPED, U64, VADDR_MASK, key_of, overlap_pairs, \
    u64
from .base import ApplyResult, Operations
from .common import three_ranges

REPORT_SIZE = 8            # bytes per access report (one word)
NR_CLASSES = 3             # young (and active), active only, inactive


DEST_CHUNK = 2 << 20         # interleave granularity of weighted destinations (bytes)


def interleave_by_address(lo, hi, weights):
    """Split key ranges ``[lo, hi)`` into DEST_CHUNK-aligned pieces and give each the
    destination index its address picks under weighted interleaving.

    Like the kernel's migrate_dests (6.17), a piece's destination follows from its address
    (chunk index modulo the weight total), not from its place in the batch, so applying the
    scheme again does not shuffle pages already placed.  Returns ``(s, e, dest_idx)``.
    """
    if len(lo) == 0:
        return lo, hi, np.zeros(0, np.int64)
    c = U64(DEST_CHUNK)
    first, last = lo // c, (hi - U64(1)) // c
    rep, chunk = expand_runs(first, (last - first + U64(1)).astype(np.int64))
    s = np.maximum(lo[rep], chunk * c)
    e = np.minimum(hi[rep], (chunk + U64(1)) * c)
    cum = np.cumsum(np.asarray(weights, np.int64))
    idx = np.searchsorted(cum, ((chunk & (VADDR_MASK // c)) % U64(cum[-1])).astype(np.int64),
                          side="right")
    return s, e, idx


class SimOps(Operations):
    """Ops backend over a simulated machine.

    ``space``: ``"vaddr"`` (targets are processes; ``pid`` is the default for targets
    without one) or ``"paddr"`` (targets are physical ranges; default: all memory).
    ``max_reports_per_accessor``: cap of access reports per accessor per sample interval
    (``page_fault`` primitive).  ``report_period``: one report per this many accesses on
    average, for every accessor alike (a perf sample period; default 1: every access, so
    the cap decides, and two accessors' report counts are scaled differently).  ``active_aggrs``: window of the ``active`` filter and the
    active/inactive metrics, in aggregation intervals.
    """

    name = "sim"
    supported_actions = frozenset({Action.STAT, Action.MIGRATE_HOT, Action.MIGRATE_COLD,
                                   Action.PAGEOUT, Action.COLD, Action.WILLNEED,
                                   Action.COLLAPSE})
    supported_filters = OPS_FILTER_TYPES

    def __init__(self, machine, space: str = "vaddr", pid=None,
                 max_reports_per_accessor: int = 256, active_aggrs: int = 3,
                 report_period: float = 1.0):
        if space not in ("vaddr", "paddr"):
            raise InvalidConfig(f"sim ops space must be vaddr or paddr, got {space!r}")
        if not report_period >= 1:
            raise InvalidConfig(f"report_period must be >= 1 access, got {report_period!r}")
        self.report_period = float(report_period)
        self.machine = machine
        self.clock = machine.clock
        self.page_size = machine.page_size
        self.space = space
        self.pid = pid
        self.max_reports_per_accessor = int(max_reports_per_accessor)
        self.active_aggrs = int(active_aggrs)
        self._prepared_us = {}
        self._checked_us = {}
        self._active_window_us = 3 * 100_000

    # --- helpers -------------------------------------------------------------------------
    def _pid(self, target):
        pid = target.pid if target.pid is not None else self.pid
        if pid is None:
            raise InvalidConfig("a vaddr sim target needs a pid")
        return pid

    def _keys(self, target, addrs) -> np.ndarray:
        """Keys of the pages at ``addrs`` (bytes, in the target's space)."""
        if self.space == "vaddr":
            return key_of(self.machine.pidx(self._pid(target)), addrs)
        return self.machine.extents.reverse(addrs)

    # --- callbacks -----------------------------------------------------------------------
    def init(self, ctx) -> None:
        m = self.machine
        for t in ctx.targets:
            if t.regions.nr or t.ranges:
                continue
            if self.space == "vaddr":
                t.ranges = three_ranges(m.mappings(self._pid(t)))
            else:
                t.ranges = [(0, m.total_bytes)]
        self._active_window_us = self.active_aggrs * ctx.attrs.aggr_us
        self._checked_us[id(ctx)] = m.now_us

    def update(self, ctx) -> None:
        """Nothing to refresh: simulated mappings never change while a process lives (an
        exit is reported through :meth:`target_valid`)."""

    def prepare_access_checks(self, ctx) -> None:
        self._prepared_us[id(ctx)] = self.machine.now_us

    def check_accesses(self, ctx) -> list:
        m = self.machine
        now = m.now_us
        t0 = self._prepared_us.get(id(ctx), now)
        out = []
        for t in ctx.targets:
            if t.obsolete or "page_table" not in ctx.primitives:
                out.append(np.zeros(t.regions.nr, np.uint8))
                continue
            keys = self._keys(t, t.regions.sampling_addr)
            out.append(m.touched(keys, t0, now).astype(np.uint8))
        if "page_fault" in ctx.primitives:
            # without page_table sampling nothing is prepared: report the last interval
            since = self._checked_us.get(id(ctx), self._prepared_us.get(
                id(ctx), now - ctx.attrs.sample_us))
            self._report(ctx, since, now)
        self._checked_us[id(ctx)] = now
        return out

    def _report(self, ctx, t0: int, t1: int) -> None:
        """Push a sample of the accesses of ``[t0, t1)`` into ``ctx.report_access``."""
        m = self.machine
        if t1 <= t0:
            return
        keys, acc, times = m.sample_accesses(t0, t1, self.max_reports_per_accessor,
                                             self.report_period)
        if len(keys) == 0:
            return
        accs = m.accessors
        cpu = np.array([a.cpu for a in accs], np.int64)[acc]
        tid = np.array([a.tid for a in accs], np.int64)[acc]
        pid = m.pids_by_pidx()[(keys >> U64(KEY_SHIFT)).astype(np.int64)]
        if self.space == "vaddr":
            addr = keys & VADDR_MASK
        else:
            addr = m.extents.lookup(keys)
            ok = (addr != KEY_END) & (addr != SWAPPED)
            addr, cpu, tid, pid, times = addr[ok], cpu[ok], tid[ok], pid[ok], times[ok]
        ctx.report_access(addr, REPORT_SIZE, cpu=cpu, tid=tid, pid=pid, time_us=times)

    def target_valid(self, target) -> bool:
        if self.space == "vaddr":
            return self.machine.alive(self._pid(target))
        return True

    def cleanup(self, ctx) -> None:
        self._prepared_us.pop(id(ctx), None)
        self._checked_us.pop(id(ctx), None)

    def node_ranges(self, ctx, target, starts, ends):
        """Present parts of the ranges and their nodes (vaddr: the process' pages, swapped
        ones left out; paddr: the ranges cut at node boundaries)."""
        m = self.machine
        starts, ends = u64(starts), u64(ends)
        if self.space == "vaddr":
            k = m.pidx(self._pid(target))
            s, e, _, node = m.segments(key_of(k, starts), key_of(k, ends))
            ok = node < len(m.nodes)
            return s[ok] & VADDR_MASK, e[ok] & VADDR_MASK, node[ok].astype(np.int64)
        b = np.append(m.bases, U64(m.total_bytes))
        _, j, lo, hi = overlap_pairs(starts, ends, b[:-1], b[1:])
        return lo, hi, j.astype(np.int64)

    def page_keys(self, ctx, target, addrs):
        """The simulated page: its extent-table key (process index and virtual address)
        in pages, unchanged by migrations; free frames give ``KEY_NONE``."""
        ps = U64(self.machine.page_size)
        k = self._keys(target, u64(addrs) // ps * ps)
        return np.where(k == KEY_END, k, k // ps)

    # --- schemes -------------------------------------------------------------------------
    def _pieces(self, target, starts, ends):
        """Mapped pieces of the ranges, sorted by key: ``(ks, ke, node)``, and the free
        bytes in them (physical targets)."""
        m = self.machine
        ps = U64(m.page_size)
        starts = (u64(starts) + ps - U64(1)) // ps * ps     # whole pages only, inward
        ends = u64(ends) // ps * ps
        ok = starts < ends
        starts, ends = starts[ok], ends[ok]
        if self.space == "vaddr":
            k = m.pidx(self._pid(target))
            s, e, _, node = m.segments(key_of(k, starts), key_of(k, ends))
            return s, e, node, 0
        pps, ppe, pks = m.extents.phys_view()
        _, j, lo, hi = overlap_pairs(starts, ends, pps, ppe)
        s = pks[j] + (lo - pps[j])
        o = np.argsort(s, kind="stable")
        fs = np.concatenate([f.s for f in m.free])
        fe = np.concatenate([f.e for f in m.free])
        _, _, flo, fhi = overlap_pairs(starts, ends, fs, fe)
        return s[o], (s + (hi - lo))[o], m.node_of(lo)[o], int((fhi - flo).sum())

    def _filter(self, ctx, filters, s, e, node, free_bytes):
        """Apply the ops filters: passed pages per piece (of the rate-split pieces
        returned), and the passed bytes including free frames."""
        m = self.machine
        rm = m.ratemap()
        qi, r, lo, hi = overlap_pairs(s, e, rm.starts, rm.ends)
        node = node[qi]
        n = ((hi - lo) // U64(m.page_size)).astype(np.int64)
        if not filters:
            return lo, hi, node, n, int((hi - lo).sum()) + free_bytes
        lam = rm.total[r]
        wy = max(1, m.now_us - self._prepared_us.get(id(ctx), m.now_us)) / 1e6
        wa = max(wy, self._active_window_us / 1e6)
        py, pa = -np.expm1(-lam * wy), -np.expm1(-lam * wa)
        ny = m.rng.binomial(n, py)
        na = m.rng.binomial(n - ny, np.clip((pa - py) / np.maximum(1 - py, 1e-300), 0, 1))
        counts = np.concatenate([np.stack([ny, na, n - ny - na], axis=1).ravel(),
                                 [free_bytes // m.page_size]])
        cls = np.concatenate([np.tile(np.arange(NR_CLASSES), len(n)), [NR_CLASSES - 1]])
        unmapped = np.zeros(len(counts), bool)
        unmapped[-1] = True
        memcgs = np.array(m.memcg_of_pidx() + [None], dtype=object)
        pidx = (np.repeat(lo, NR_CLASSES) >> U64(KEY_SHIFT)).astype(np.int64)
        owner = np.concatenate([pidx, [len(memcgs) - 1]])

        def match(f):
            if f.filter_type == FilterType.ANON:
                return ~unmapped
            if f.filter_type == FilterType.UNMAPPED:
                return unmapped
            if f.filter_type == FilterType.YOUNG:
                return (cls == 0) & ~unmapped
            if f.filter_type == FilterType.ACTIVE:
                return (cls <= 1) & ~unmapped
            if f.filter_type == FilterType.MEMCG:
                return memcgs[owner] == f.memcg_path
            return np.zeros(len(counts), bool)          # hugepage_size: base pages only

        ok = filters_pass(filters, match, len(counts))
        passed = np.where(ok, counts, 0)
        per_piece = passed[:-1].reshape(-1, NR_CLASSES).sum(axis=1)
        return lo, hi, node, per_piece, int(passed.sum()) * m.page_size

    def apply_scheme(self, ctx, target, scheme, starts, ends,
                     ops_filters=None) -> ApplyResult:
        """Act on the pages of ``[starts, ends)`` that pass ``ops_filters``; nothing
        outside the ranges is touched."""
        m = self.machine
        if ops_filters is None:
            ops_filters = scheme.ops_filters
        s, e, node, free_bytes = self._pieces(target, starts, ends)
        lo, _, node, k, sz_passed = self._filter(ctx, ops_filters, s, e, node, free_bytes)
        res = ApplyResult(sz_ops_filter_passed=sz_passed)
        take = k > 0
        lo, node, k = lo[take], node[take], k[take]
        hi = lo + k.astype(U64) * U64(m.page_size)
        a = scheme.action
        nr_nodes = len(m.nodes)
        if a in (Action.MIGRATE_HOT, Action.MIGRATE_COLD):
            present = node < nr_nodes
            lo, hi = lo[present], hi[present]
            dests = scheme.destinations()
            gs, ge, g = interleave_by_address(lo, hi, [w for _, w in dests])
            for i, (nid, _) in enumerate(dests):
                mv = m.move_keys(gs[g == i], ge[g == i], nid)
                res.add(ApplyResult(mv.sz_moved, 0, mv.moved,
                                    {"ENOMEM": mv.nr_failed} if mv.nr_failed else {}))
        elif a == Action.PAGEOUT:
            res.sz_applied = m.swap_out(lo, hi)
        elif a == Action.WILLNEED:
            if self.space == "vaddr":
                res.sz_applied = m.swap_in(lo, hi, m.process(self._pid(target)).node)
        elif a in (Action.COLD, Action.COLLAPSE):
            # MADV_COLD reorders LRU lists, MADV_COLLAPSE makes huge pages: the simulation
            # models neither (base pages only), so the present bytes count as advised
            res.sz_applied = int((hi - lo)[node < nr_nodes].sum())
        return res

    # --- quota goal metrics --------------------------------------------------------------
    def metric(self, name: str, nid=None, memcg_path=None) -> int:
        """Goal metric from the simulated machine: node used/free in basis points of the
        node's capacity; active/inactive share of present pages in basis points."""
        m = self.machine
        if name == "node_mem_total_bytes":
            return m.nodes[nid].capacity_bytes
        if name in ("node_mem_used_bp", "node_mem_free_bp"):
            if nid is None or not 0 <= nid < len(m.nodes):
                raise InvalidConfig(f"metric {name} needs a node id of the simulated machine, "
                                    f"got {nid!r}")
            used = m.node_used(nid) * BP // m.nodes[nid].capacity_bytes
            return used if name == "node_mem_used_bp" else BP - used
        if name in ("active_mem_bp", "inactive_mem_bp"):
            act = int(round(m.acct.active_share(self._active_window_us) * BP))
            return act if name == "active_mem_bp" else BP - act
        raise InvalidConfig(f"the sim backend has no metric {name!r} (it provides "
                            f"node_mem_used_bp, node_mem_free_bp, active_mem_bp, "
                            f"inactive_mem_bp)")
