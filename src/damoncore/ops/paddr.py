"""The physical address space ops backend: targets are physical byte ranges (e.g. a node's
``numa.Topology.phys_ranges``); default is the largest range of online memory.

Access checks (``page_table`` primitive) use the idle page bitmap: prepare marks every
target's sampling frames idle in one batched call, check reads them back in one (a handful
of pread/pwrite syscalls per sample, see :mod:`damoncore.linux.page_idle`); a frame sampled
by two regions is checked once.  Without CONFIG_IDLE_PAGE_TRACKING, ``init`` raises
FeatureMissing unless the context uses only ``page_fault`` reports (physical addresses
pushed by a reporter such as :class:`damoncore.ops.perf.PerfOps`).

Migration needs (pid, vaddr) for move_pages(2): :class:`damoncore.ops.rmap.OwnerIndex` finds
the owners of the frames a scheme acts on among the processes in scope (all, ``pids``, or
``cgroup``'s cgroup.procs), at a cost that follows the frames acted on and the processes in
scope, not all mapped memory: candidates narrowed by memcg (/proc/kpagecgroup), a compact
per-process extent index built the first time a process is needed and kept across ops
updates (rebuilt only when frames of its memcg have no known owner and it faulted since,
at most once per ``rmap_retry_s``), pages this backend moved re-read at once.  Owners are
verified against pagemap when found and re-checked right before acting, so a stale entry
never moves or advises a stranger's page.  Design, costs and worst cases: that module.

Actions: ``migrate_hot``/``migrate_cold`` (move_pages(2) per owning process), and, like the
kernel's paddr, ``pageout`` and ``lru_deprio``: process_madvise(2) ``MADV_PAGEOUT`` /
``MADV_COLD`` (deactivate: the LRU deprioritization user space can ask for) on the runs of
each owner's pages, and ``collapse`` (kernel 7.2 has it for vaddr only) the same way with
``MADV_COLLAPSE``: huge pages where an owner's run covers a whole aligned extent.
``sz_applied`` = bytes advised.  Unlike the kernel, only frames mapped
by a process in scope can be acted on (page cache nobody maps, kernel memory: not from user
space); ``lru_prio`` has no user-space equivalent and stays unsupported.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import FeatureMissing, InvalidConfig, SyscallError, TargetGone
from ..linux import kpageflags as kpf
from ..linux import madvise as md
from ..linux import pagemap as pmap
from ..linux.page_idle import BITMAP_PATH, PageIdle
from ..numa.topology import Topology
from ..vocab import OPS_FILTER_TYPES
from .base import ApplyResult, Operations
from .common import PAGE_SIZE, PageFilters, page_runs, pagemap_entries
from .native import IdleNative
from .rmap import OwnerIndex
from .vaddr import MIGRATE, VaddrOps, check_destinations

U64 = np.uint64
#: paddr actions done through process_madvise on the owners' pages (kernel: reclaim_pages,
#: folio_deactivate)
ADVICE = {"pageout": md.MADV_PAGEOUT, "lru_deprio": md.MADV_COLD,
          "collapse": md.MADV_COLLAPSE}
#: actions that need the reverse map PFN -> (pid, vaddr)
NEEDS_RMAP = frozenset({*MIGRATE, *ADVICE})


def scope_pids(procfs_root="/proc", pids=None, cgroup=None, cgroupfs_root="/sys/fs/cgroup"):
    """The processes whose pages paddr may migrate."""
    if pids is not None:
        return [int(p) for p in pids]
    if cgroup is not None:
        path = cgroup if os.path.isabs(cgroup) and os.path.exists(cgroup) \
            else os.path.join(cgroupfs_root, cgroup.lstrip("/"))
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError as err:
            raise InvalidConfig(f"no cgroup {path}") from err
    return [int(d) for d in os.listdir(procfs_root) if d.isdigit()]


class PaddrOps(Operations):
    """Ops over physical memory.

    ``sysfs_root``/``procfs_root``: filesystem roots.  ``pids`` / ``cgroup``: which
    processes' pages migrations may move (default: all).  ``page_idle_path`` or
    ``page_idle`` (a :class:`PageIdle`, e.g. over a fixture file): the idle page bitmap.
    ``rmap_retry_s``: least time between two re-indexings of one process caused by frames
    without a known owner (``nr_rmap_retries`` counts the lookups that re-indexed).
    ``native``: run whole samples in C when the idle bitmap is a plain file
    (:mod:`damoncore.ops.native`).
    """

    name = "paddr"
    space = "paddr"
    supported_actions = frozenset({"stat", *NEEDS_RMAP})
    supported_filters = OPS_FILTER_TYPES
    # fault addresses are translated when the reports are drained, after the fault
    translates_reports = True

    def __init__(self, sysfs_root="/sys", procfs_root="/proc", pids=None, cgroup=None,
                 page_idle_path=BITMAP_PATH, page_idle=None, cgroupfs_root="/sys/fs/cgroup",
                 rmap_retry_s: float = 1.0, native: bool = True):
        if pids is not None and cgroup is not None:
            raise InvalidConfig("give pids or cgroup, not both")
        self.sysfs_root, self.procfs_root = sysfs_root, procfs_root
        self.pids, self.cgroup, self.cgroupfs_root = pids, cgroup, cgroupfs_root
        self.page_idle_path, self._page_idle_arg = page_idle_path, page_idle
        self.page_idle = None
        self.filters = None
        self.rmap = OwnerIndex(lambda: scope_pids(procfs_root, pids, cgroup, cgroupfs_root),
                               procfs_root, cgroupfs_root, retry_s=rmap_retry_s)
        self._rmap_wanted = False
        self._topo = None             # the node ranges node_bytes() cuts at
        self._pfns = None
        self.native, self._native, self._native_kpf = native, None, None    # issue 13
        # migration itself is a vaddr job once the owner of each frame is known
        self._mover = VaddrOps(procfs_root, sysfs_root)
        self._reporters = pmap.PagemapCache(procfs_root)

    @property
    def rmap_retry_s(self) -> float:
        return self.rmap.retry_s

    @property
    def nr_rmap_retries(self) -> int:
        return self.rmap.nr_retries

    def _open_idle(self):
        if self._page_idle_arg is not None:
            return self._page_idle_arg
        return PageIdle(self.page_idle_path)          # FeatureMissing if absent

    def init(self, ctx) -> None:
        uses_young = any(f.filter_type == "young" for s in ctx.schemes for f in s.ops_filters)
        if "page_table" in ctx.primitives or uses_young:
            self.page_idle = self._open_idle()
        self.filters = PageFilters(self.procfs_root, self.page_idle, self.cgroupfs_root)
        check_destinations(ctx.schemes, self.sysfs_root)
        if any(s.action == "collapse" for s in ctx.schemes):
            md.check_collapse(self.sysfs_root)
        for t in ctx.targets:
            if t.pid is not None:
                raise InvalidConfig("paddr targets are physical ranges, not processes")
            if t.regions.nr == 0 and not t.ranges:
                topo = Topology.read(self.sysfs_root, self.procfs_root)
                ranges = [r for n in topo.nodes for r in topo.phys_ranges.get(n, [])]
                if not ranges:
                    raise FeatureMissing("physical memory ranges",
                                         "no memory blocks or zoneinfo ranges found")
                t.ranges = [max(ranges, key=lambda r: r[1] - r[0])]
        self._rmap_wanted = any(s.action in NEEDS_RMAP for s in ctx.schemes)
        if self._rmap_wanted:
            self.refresh_rmap()

    def refresh_rmap(self) -> None:
        """The processes in scope, read again (O(processes)); nothing is indexed here."""
        self.rmap.refresh_scope()

    def update(self, ctx) -> None:
        if self._rmap_wanted or any(s.action in NEEDS_RMAP for s in ctx.schemes):
            self._rmap_wanted = True
            self.refresh_rmap()

    #: kpageflags entries read at once by :meth:`node_bytes` (8 MiB of flags)
    LRU_CHUNK = 1 << 20

    def node_bytes(self, ctx, target, starts, ends):
        """``{nid: bytes}`` of the LRU pages in the physical ranges, by the node whose
        physical range holds them: the folios damos_calc_eligible_bytes() finds
        (damon_get_folio(): online LRU folios; a huge folio's tail pages carry its LRU bit
        in /proc/kpageflags), read in chunks of :attr:`LRU_CHUNK` frames."""
        if self._topo is None:
            self._topo = Topology.read(self.sysfs_root, self.procfs_root)
        out = {}
        with kpf.KPageFlags(self.procfs_root) as flags:
            for nid, ranges in self._topo.phys_ranges.items():
                for ns, ne in ranges:
                    for a, b in zip(np.asarray(starts, U64), np.asarray(ends, U64)):
                        lo, hi = max(int(a), ns), min(int(b), ne)
                        first, last = -(-lo // PAGE_SIZE), hi // PAGE_SIZE
                        for pfn in range(first, last, self.LRU_CHUNK):
                            n = min(self.LRU_CHUNK, last - pfn)
                            lru = int(kpf.has(flags.read_range(pfn, n), kpf.LRU).sum())
                            out[nid] = out.get(nid, 0) + lru * PAGE_SIZE
        return out

    def cleanup(self, ctx) -> None:
        if self.filters is not None:
            self.filters.close()
        self.rmap.close()
        self._mover.cleanup(ctx)
        if self._native_kpf is not None:
            self._native_kpf.close()
        self._native = self._native_kpf = None
        self._reporters.close()

    def translate_reports(self, pid, addrs):
        """Physical addresses of faults at virtual ``addrs`` of processes ``pid``, as
        /proc/PID/pagemap maps them now; pages no longer present are not kept."""
        return self._reporters.phys_addrs(pid, addrs)

    # --- native sample path (issue 13): ops/native.py runs the idle check's samples in C --
    def native_sampler(self, ctx):
        if (not self.native or "page_table" not in ctx.primitives or self.page_idle is None
                or self.page_idle.raw_fd is None):
            return None
        if self._native is None:
            # the LRU check of check_accesses (PageFilters.on_lru: KPageFlags.read's gap)
            try:
                self._native_kpf = kpf.KPageFlags(self.procfs_root)
            except (FeatureMissing, SyscallError):
                return None               # the generic check raises it when it needs it
            self._native = IdleNative(self, self.page_idle, PAGE_SIZE, kpageflags=(
                self._native_kpf.fileno(), kpf.LRU, 8))
        return self._native

    def native_fds(self, t):
        return -1, -1                 # physical addresses; the targets never exit

    def native_handoff(self, targets, entries) -> None:
        """The sample begun in C (``entries``: the sampled PFNs), as prepare_access_checks
        leaves it."""
        self._pfns = np.concatenate(entries) if entries else np.zeros(0, U64)

    # --- access checks -------------------------------------------------------------------
    def prepare_access_checks(self, ctx) -> None:
        if "page_table" not in ctx.primitives:
            return
        addrs = [t.regions.sampling_addr for t in ctx.targets]
        self._pfns = np.concatenate(addrs) // U64(PAGE_SIZE) if addrs else np.zeros(0, U64)
        self.page_idle.mark_idle(self._pfns)

    def check_accesses(self, ctx) -> list:
        n = [t.regions.nr for t in ctx.targets]
        if "page_table" not in ctx.primitives or self._pfns is None or len(self._pfns) != sum(n):
            return [np.zeros(k, np.uint8) for k in n]
        acc = ~self.page_idle.read_idle(self._pfns)
        if acc.any():
            # only frames that read "accessed" need the LRU check (one batched read)
            hit = np.flatnonzero(acc)
            acc[hit] = self.filters.on_lru(self._pfns[hit])
        acc = acc.astype(np.uint8)
        self._pfns = None
        return np.split(acc, np.cumsum(n)[:-1])

    # --- schemes -------------------------------------------------------------------------
    def apply_scheme(self, ctx, target, scheme, starts, ends,
                     ops_filters=None) -> ApplyResult:
        if scheme.action not in NEEDS_RMAP:
            return ApplyResult()
        if ops_filters is None:
            ops_filters = scheme.ops_filters
        if not self._rmap_wanted:
            self._rmap_wanted = True
            self.refresh_rmap()
        own = self.rmap.lookup(starts, ends)
        res = ApplyResult(region_sz_applied=np.zeros(len(starts), U64))
        if own.nr_stale:                      # index entries that no longer held
            res.nr_failed["stale"] = own.nr_stale
        ok = self.filters.passed(ops_filters, own.pfn)
        res.sz_ops_filter_passed = int(ok.sum()) * PAGE_SIZE
        pfn, pids, vaddr, ridx = own.pfn[ok], own.pid[ok], own.vaddr[ok], own.ridx[ok]
        order = np.argsort(pids, kind="stable")
        bounds = np.flatnonzero(np.diff(pids[order])) + 1
        for grp in np.split(order, bounds):           # one move_pages batch per process
            if len(grp) == 0:
                continue
            pid = int(pids[grp[0]])
            try:
                with pmap.Pagemap(pid, self.procfs_root) as pm:
                    ent = pagemap_entries(pm, vaddr[grp])
            except TargetGone:
                continue
            # right before acting: only pages still at the frame found (no stranger's page)
            same = pmap.present(ent) & ((ent & pmap.PFN_MASK) == pfn[grp])
            res.nr_failed["stale"] = res.nr_failed.get("stale", 0) + int((~same).sum())
            grp = grp[same]
            if scheme.action in ADVICE:
                r = self._advise(pid, ADVICE[scheme.action], vaddr[grp], ridx[grp], len(starts))
            else:
                r = self._mover.migrate(pid, scheme, vaddr[grp], ridx[grp], len(starts),
                                        ApplyResult())
                if any(src != dst for src, dst in r.migrated):
                    self.rmap.note_moved(pid, vaddr[grp])     # they live at new frames now
            res.add(r)
            if r.region_sz_applied is not None:
                res.region_sz_applied += r.region_sz_applied
        return res

    @staticmethod
    def _advise(pid, advice, vaddr, ridx, nr_ranges) -> ApplyResult:
        """process_madvise ``advice`` on ``pid``'s pages at ``vaddr`` (from ranges ``ridx``)."""
        order = np.argsort(vaddr, kind="stable")
        vaddr, ridx = vaddr[order], ridx[order]
        run_starts, run_lens = page_runs(vaddr)
        try:
            r = md.process_madvise(pid, run_starts, run_lens, advice)
        except TargetGone:
            return ApplyResult(nr_failed={"gone": len(vaddr)})
        res = ApplyResult(sz_applied=r.bytes_advised, nr_failed=dict(r.errors))
        if not r.errors:
            res.region_sz_applied = np.bincount(
                ridx, minlength=nr_ranges).astype(U64) * U64(PAGE_SIZE)
        return res
