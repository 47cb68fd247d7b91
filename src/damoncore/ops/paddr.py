"""The physical address space ops backend: targets are physical byte ranges (e.g. a node's
``numa.Topology.phys_ranges``); default is the largest range of online memory.

Access checks (``page_table`` primitive) use the idle page bitmap: prepare marks every
target's sampling frames idle in one batched call, check reads them back in one (a handful
of pread/pwrite syscalls per sample, see :mod:`damoncore.linux.page_idle`); a frame sampled
by two regions is checked once.  Without CONFIG_IDLE_PAGE_TRACKING, ``init`` raises
FeatureMissing unless the context uses only ``page_fault`` reports (physical addresses
pushed by a reporter such as :class:`damoncore.ops.perf.PerfOps`).

Migration needs (pid, vaddr) for move_pages(2): a reverse map PFN -> (pid, vaddr) is built
from /proc/PID/pagemap of the processes in scope (all, ``pids``, or ``cgroup``'s
cgroup.procs) at init and every ops update (PAGEMAP_SCAN finds the present pages, then one
pagemap pread per present run).  Before moving, each page's current PFN is re-read so a
stale entry never moves the wrong page.  A process started after the last build owns
frames the map does not know: when a migration finds mapped LRU frames (kpageflags) in its
ranges that the map has no owner for, the map is rebuilt at once (at most once per
``rmap_retry_s``, 1 s) and the lookup retried once.  Cost (benchmarks/bench_access_check.py, 2-core
host, 4 KiB pages): about 35 ms per GiB of present memory (for 1 GiB: PAGEMAP_SCAN 5 ms,
pagemap preads 12 ms, sorting 15 ms), plus a few hundred us per process.

Actions: ``migrate_hot``/``migrate_cold`` (move_pages(2) per owning process), and, like the
kernel's paddr, ``pageout`` and ``lru_deprio``: process_madvise(2) ``MADV_PAGEOUT`` /
``MADV_COLD`` (deactivate: the LRU deprioritization user space can ask for) on the runs of
each owner's pages.  ``sz_applied`` = bytes advised.  Unlike the kernel, only frames mapped
by a process in scope can be acted on (page cache nobody maps, kernel memory: not from user
space); ``lru_prio`` has no user-space equivalent and stays unsupported.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..errors import FeatureMissing, InvalidConfig, SyscallError, TargetGone
from ..linux import kpageflags as kpf
from ..linux import madvise as md
from ..linux import pagemap as pmap
from ..linux.page_idle import BITMAP_PATH, PageIdle
from ..numa.topology import Topology
from .base import ApplyResult, Operations
from .common import (PAGE_SIZE, PageFilters, dests_by_address, page_runs, pagemap_entries,
                     present_ranges)
from .vaddr import MIGRATE, VaddrOps, check_destinations

U64 = np.uint64
#: paddr actions done through process_madvise on the owners' pages (kernel: reclaim_pages,
#: folio_deactivate)
ADVICE = {"pageout": md.MADV_PAGEOUT, "lru_deprio": md.MADV_COLD}
#: actions that need the reverse map PFN -> (pid, vaddr)
NEEDS_RMAP = frozenset({*MIGRATE, *ADVICE})


class ReverseMap:
    """PFN -> (pid, vaddr) of the pages mapped by a set of processes, as sorted arrays.

    ``pfn`` (uint64, sorted), ``pid`` (int32), ``vaddr`` (uint64 bytes); a frame mapped by
    several processes appears once (the first process found).  ``nr_pids``: processes read;
    ``nr_denied``: processes that exited or whose pagemap we may not read.  The monitoring
    process itself is left out (kdamond has no user pages either).
    """

    def __init__(self, procfs_root="/proc"):
        self.procfs_root = procfs_root
        self.pfn = np.zeros(0, U64)
        self.pid = np.zeros(0, np.int32)
        self.vaddr = np.zeros(0, U64)
        self.nr_pids = 0
        self.nr_denied = 0

    def build(self, pids) -> None:
        pf, pd, va = [], [], []
        self.nr_pids = self.nr_denied = 0
        me = os.getpid()
        for pid in pids:
            if pid == me:
                continue
            try:
                with pmap.Pagemap(pid, self.procfs_root) as pm:
                    rng = present_ranges(pm)
                    if rng is None:
                        raise FeatureMissing("PAGEMAP_SCAN (Linux >= 6.7)")
                    s, e = rng
                    if len(s) == 0:
                        continue
                    ent = np.concatenate([pm.read(a, b) for a, b in zip(s.tolist(), e.tolist())])
            except (TargetGone, PermissionError, SyscallError):
                self.nr_denied += 1       # gone, or not ours to read (e.g. ptrace rules)
                continue
            n = ((e - s) // U64(PAGE_SIZE)).astype(np.int64)
            off = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
            addr = np.repeat(s, n) + off.astype(U64) * U64(PAGE_SIZE)
            ok = pmap.present(ent) & ((ent & pmap.PFN_MASK) != 0)
            pf.append((ent & pmap.PFN_MASK)[ok])
            va.append(addr[ok])
            pd.append(np.full(int(ok.sum()), pid, np.int32))
            self.nr_pids += 1
        if not pf:
            self.__init__(self.procfs_root)
            return
        pfn, pid, vaddr = np.concatenate(pf), np.concatenate(pd), np.concatenate(va)
        # mergesort (np.unique's) is fastest here: a process' frames come mostly ascending
        self.pfn, first = np.unique(pfn, return_index=True)
        self.pid, self.vaddr = pid[first], vaddr[first]

    def lookup(self, starts, ends):
        """Indices into the map of the frames inside the physical ranges, and the range
        index of each."""
        lo = np.searchsorted(self.pfn, np.asarray(starts, U64) // U64(PAGE_SIZE))
        hi = np.searchsorted(self.pfn, (np.asarray(ends, U64) + U64(PAGE_SIZE - 1)) // U64(PAGE_SIZE))
        n = hi - lo
        ridx = np.repeat(np.arange(len(n)), n)
        idx = np.repeat(lo, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return idx, ridx

    def __len__(self):
        return len(self.pfn)


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
    ``rmap_retry_s``: least time between two reverse map rebuilds caused by migrations that
    found frames without a known owner (``nr_rmap_retries`` counts them).
    """

    #: most frames per migration call checked for unknown owners (16 GiB of 4 KiB pages)
    MAX_MISS_CHECK_FRAMES = 1 << 22

    name = "paddr"
    supported_actions = frozenset({"stat", *NEEDS_RMAP})

    def __init__(self, sysfs_root="/sys", procfs_root="/proc", pids=None, cgroup=None,
                 page_idle_path=BITMAP_PATH, page_idle=None, cgroupfs_root="/sys/fs/cgroup",
                 rmap_retry_s: float = 1.0):
        if pids is not None and cgroup is not None:
            raise InvalidConfig("give pids or cgroup, not both")
        self.sysfs_root, self.procfs_root = sysfs_root, procfs_root
        self.pids, self.cgroup, self.cgroupfs_root = pids, cgroup, cgroupfs_root
        self.page_idle_path, self._page_idle_arg = page_idle_path, page_idle
        self.page_idle = None
        self.filters = None
        self.rmap = ReverseMap(procfs_root)
        self._rmap_wanted = False
        self.rmap_retry_s = rmap_retry_s
        self.nr_rmap_retries = 0
        self._rmap_built_at = None
        self._pfns = None
        # migration itself is a vaddr job once the owner of each frame is known
        self._mover = VaddrOps(procfs_root, sysfs_root)

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
        self.rmap.build(scope_pids(self.procfs_root, self.pids, self.cgroup,
                                   self.cgroupfs_root))
        self._rmap_built_at = time.monotonic()

    def _owners_missing(self, starts, ends, idx) -> bool:
        """Whether the ranges hold mapped LRU frames the reverse map has no owner for (at
        most MAX_MISS_CHECK_FRAMES frames checked).  Without kpageflags: whether the map
        knows no frame at all in them."""
        known = self.rmap.pfn[idx]
        budget = self.MAX_MISS_CHECK_FRAMES
        try:
            if self.filters._kpf is None:
                self.filters._kpf = kpf.KPageFlags(self.procfs_root)
            flags_reader = self.filters._kpf
            for a, b in zip(np.asarray(starts, U64).tolist(), np.asarray(ends, U64).tolist()):
                first, last = a // PAGE_SIZE, -(-b // PAGE_SIZE)
                n = min(last - first, budget)
                if n <= 0:
                    break
                budget -= n
                fl = flags_reader.read_range(first, n)
                user = np.flatnonzero(kpf.has(fl, kpf.MMAP) & kpf.has(fl, kpf.LRU))
                if len(user) and not np.isin(user.astype(U64) + U64(first), known).all():
                    return True
            return False
        except (FeatureMissing, SyscallError, PermissionError):
            return len(idx) == 0

    def _lookup(self, starts, ends):
        """rmap lookup; on frames without a known owner, rebuild the map (rate limited) and
        look up again once."""
        idx, ridx = self.rmap.lookup(starts, ends)
        recent = (self._rmap_built_at is not None
                  and time.monotonic() - self._rmap_built_at < self.rmap_retry_s)
        if not recent and len(starts) and self._owners_missing(starts, ends, idx):
            self.nr_rmap_retries += 1
            self.refresh_rmap()
            idx, ridx = self.rmap.lookup(starts, ends)
        return idx, ridx

    def update(self, ctx) -> None:
        if self._rmap_wanted or any(s.action in NEEDS_RMAP for s in ctx.schemes):
            self._rmap_wanted = True
            self.refresh_rmap()

    def cleanup(self, ctx) -> None:
        if self.filters is not None:
            self.filters.close()
        self._mover.cleanup(ctx)

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
    def apply_scheme(self, ctx, target, scheme, starts, ends) -> ApplyResult:
        if scheme.action not in NEEDS_RMAP:
            return ApplyResult()
        if not self._rmap_wanted:
            self._rmap_wanted = True
            self.refresh_rmap()
        idx, ridx = self._lookup(starts, ends)
        pfn = self.rmap.pfn[idx]
        res = ApplyResult(region_sz_applied=np.zeros(len(starts), U64))
        ok = self.filters.passed(scheme.ops_filters, pfn)
        res.sz_ops_filter_passed = int(ok.sum()) * PAGE_SIZE
        idx, ridx, pfn = idx[ok], ridx[ok], pfn[ok]
        pids = self.rmap.pid[idx]
        order = np.argsort(pids, kind="stable")
        bounds = np.flatnonzero(np.diff(pids[order])) + 1
        for grp in np.split(order, bounds):           # one move_pages batch per process
            if len(grp) == 0:
                continue
            pid = int(pids[grp[0]])
            va = self.rmap.vaddr[idx[grp]]
            try:
                with pmap.Pagemap(pid, self.procfs_root) as pm:
                    ent = pagemap_entries(pm, va)
            except TargetGone:
                continue
            # only pages still at the frame the map says (no stale entry moves a stranger)
            same = pmap.present(ent) & ((ent & pmap.PFN_MASK) == pfn[grp])
            res.nr_failed["stale"] = res.nr_failed.get("stale", 0) + int((~same).sum())
            grp = grp[same]
            if scheme.action in ADVICE:
                r = self._advise(pid, ADVICE[scheme.action], self.rmap.vaddr[idx[grp]],
                                 ridx[grp], len(starts))
            else:
                r = self._mover._migrate(pid, scheme, self.rmap.vaddr[idx[grp]], ridx[grp],
                                         len(starts), ApplyResult())
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
