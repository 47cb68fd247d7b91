"""The virtual address space ops backend: targets are processes (``Target.pid``).

Regions: three ranges separated by the two largest gaps between the VMAs of
/proc/PID/maps (``__damon_va_three_regions()``), re-fitted at every ops update
(``damon_va_update()`` -> :func:`fit_regions`).  Targets given explicit ranges keep them (the
kernel would replace them by the three ranges at its first update).

Access checks (``page_table`` primitive), best available first:

- ``idle``: the sampling pages' PFNs from /proc/PID/pagemap are marked idle in
  /sys/kernel/mm/page_idle/bitmap at prepare and read back at check.  Needs root for PFNs.
  pagemap is read once per sample, at prepare; check judges the frames read then, so a page
  absent at prepare counts as not accessed even if it was faulted in before check (the
  kernel would find its young pte; here the next sample sees it), and a page replaced
  between prepare and check (migrated, reclaimed and faulted back) is judged by its old
  frame.  A second pagemap read per sample cost more than the whole rest of the check.
  Caveat: a frame still in a per-CPU LRU add batch (just faulted; at most ~15 per CPU)
  cannot be marked idle and so reads as accessed (the kernel's vaddr reads the pte itself);
  any move_pages call drains those batches.
- ``soft_dirty``: write-only; prepare clears the soft-dirty bits of the whole process
  (``echo 4 > /proc/PID/clear_refs``, a full page-table walk and TLB flush per target per
  sample), check reads pagemap bit 55.
- neither: FeatureMissing naming both, unless the context uses only ``page_fault`` reports.

Actions: ``migrate_hot``/``migrate_cold`` through move_pages(2) (one batch per apply call,
``sz_applied`` = bytes of present pages that are on their destination node afterwards,
already-there pages included, as the kernel counts same-node migration); ``pageout``,
``cold``, ``willneed`` and ``collapse`` (kernel 7.2: MADV_COLLAPSE; FeatureMissing at init
without transparent huge pages) through process_madvise(2) (``sz_applied`` = bytes
advised, like the kernel's vaddr).  Ops filters act per present page (pagemap -> kpageflags).
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from ..errors import FeatureMissing, InvalidConfig, TargetGone
from ..linux import madvise as md
from ..linux import pagemap as pmap
from ..linux.errors import NodeUnavailable
from ..linux.migrate import MPOL_MF_MOVE, MPOL_MF_MOVE_ALL, memory_nodes, move_pages, \
    pages_of_ranges, query_pages
from ..linux.page_idle import BITMAP_PATH, PageIdle
from ..linux.pidfd import ProcessWatch
from ..vocab import MIGRATE_ACTIONS, OPS_FILTER_TYPES, Action
from .base import ApplyResult, Operations
from .common import PAGE_SIZE, PageFilters, dests_by_address, fit_regions, page_runs, \
    pagemap_entries, read_maps, three_ranges
from .native import IdleNative

ADVICE = {Action.PAGEOUT: md.MADV_PAGEOUT, Action.COLD: md.MADV_COLD,
          Action.WILLNEED: md.MADV_WILLNEED, Action.COLLAPSE: md.MADV_COLLAPSE}
MIGRATE = MIGRATE_ACTIONS


def soft_dirty_supported(procfs_root: str = "/proc") -> bool:
    """CONFIG_MEM_SOFT_DIRTY: a page this process just wrote reads soft-dirty in pagemap."""
    m = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m[0] = 1
        addr = np.frombuffer(m, np.uint8).ctypes.data
        with pmap.Pagemap(os.getpid(), procfs_root) as pm:
            return bool(pm.read(addr, addr + 1)[0] & pmap.SOFT_DIRTY)
    finally:
        m.close()


def open_page_idle(path, page_idle):
    """The given PageIdle, or one on ``path``; None if the bitmap is absent."""
    if page_idle is not None:
        return page_idle
    try:
        return PageIdle(path)
    except FeatureMissing:
        return None


def check_destinations(schemes, sysfs_root) -> None:
    """NodeUnavailable for a migrate scheme aimed at a node without memory (at init)."""
    usable = set(memory_nodes(sysfs_root))
    for s in schemes:
        if s.action in MIGRATE:
            for nid, _ in s.destinations():
                if nid not in usable:
                    raise NodeUnavailable(nid, f"{s.action} scheme; usable nodes: "
                                               f"{sorted(usable)}")


class VaddrOps(Operations):
    """Ops over process address spaces.

    ``procfs_root``/``sysfs_root``: filesystem roots.  ``access_check``: ``"auto"``,
    ``"idle"`` or ``"soft_dirty"``.  ``page_idle``: a :class:`PageIdle` to use instead of
    the one at ``page_idle_path`` (tests pass a fixture).  ``move_all``: migrate shared pages
    too (MPOL_MF_MOVE_ALL; default when root).  ``max_gap_pages``: sampling pages this close
    share one pagemap pread.  ``native``: run whole samples in C when the idle bitmap is a
    plain file (:mod:`damoncore.ops.native`); False keeps the generic per-sample path.
    """

    name = "vaddr"
    space = "vaddr"
    supported_actions = frozenset({Action.STAT, *MIGRATE, *ADVICE})
    supported_filters = OPS_FILTER_TYPES

    def __init__(self, procfs_root="/proc", sysfs_root="/sys", access_check="auto",
                 page_idle_path=BITMAP_PATH, page_idle=None, move_all=None,
                 max_gap_pages=16, native=True):
        if access_check not in ("auto", "idle", "soft_dirty"):
            raise InvalidConfig(f"access_check must be auto, idle or soft_dirty, "
                                f"got {access_check!r}")
        self.procfs_root, self.sysfs_root = procfs_root, sysfs_root
        self.access_check = access_check
        self.page_idle_path, self._page_idle_arg = page_idle_path, page_idle
        self.move_flags = MPOL_MF_MOVE_ALL if (os.geteuid() == 0 if move_all is None
                                               else move_all) else MPOL_MF_MOVE
        self.max_gap_pages = max_gap_pages
        self.check = None             # the access check in use: "idle", "soft_dirty" or None
        self.page_idle = None
        self.filters = None
        self._auto = set()            # ids of targets whose ranges follow /proc/PID/maps
        self._watch = {}
        self._pagemaps = {}
        self._sampled = {}            # id(target) -> (PFNs of the present sampled pages, present)
        self.native, self._native = native, None     # native sample path (issue 13)

    # --- setup ---------------------------------------------------------------------------
    def _choose_check(self, ctx):
        if "page_table" not in ctx.primitives:
            return None
        if self.access_check in ("auto", "idle") and self.page_idle is not None:
            return "idle"
        if self.access_check in ("auto", "soft_dirty") and soft_dirty_supported(self.procfs_root):
            return "soft_dirty"
        want = {"auto": "CONFIG_IDLE_PAGE_TRACKING and CONFIG_MEM_SOFT_DIRTY",
                "idle": "CONFIG_IDLE_PAGE_TRACKING", "soft_dirty": "CONFIG_MEM_SOFT_DIRTY"}
        raise FeatureMissing(want[self.access_check],
                             "vaddr access checks need the idle page bitmap or soft-dirty "
                             "bits; use primitives=('page_fault',) with a reporter instead")

    def init(self, ctx) -> None:
        self.page_idle = open_page_idle(self.page_idle_path, self._page_idle_arg)
        self.filters = PageFilters(self.procfs_root, self.page_idle)
        self.check = self._choose_check(ctx)
        for s in ctx.schemes:
            self.filters.check_supported(s.ops_filters)
        check_destinations(ctx.schemes, self.sysfs_root)
        if any(s.action == Action.COLLAPSE for s in ctx.schemes):
            md.check_collapse(self.sysfs_root)
        for t in ctx.targets:
            if t.pid is None:
                raise InvalidConfig("vaddr targets need a pid")
            self._watch[id(t)] = ProcessWatch(t.pid)
            if t.regions.nr == 0 and not t.ranges:
                t.ranges = three_ranges(read_maps(t.pid, self.procfs_root))
                self._auto.add(id(t))

    def update(self, ctx) -> None:
        for t in ctx.targets:
            if t.obsolete or id(t) not in self._auto:
                continue
            try:
                ranges = three_ranges(read_maps(t.pid, self.procfs_root))
            except TargetGone:
                t.obsolete = True
                continue
            t.regions = fit_regions(t.regions, ranges, ctx.min_region)
            t.ranges = ranges

    def target_valid(self, target) -> bool:
        w = self._watch.get(id(target))
        return w is not None and w.alive()

    def cleanup(self, ctx) -> None:
        for x in list(self._watch.values()) + list(self._pagemaps.values()):
            x.close()
        self._watch.clear()
        self._pagemaps.clear()
        self._sampled.clear()
        self._native = None
        if self.filters is not None:
            self.filters.close()

    def node_ranges(self, ctx, target, starts, ends):
        """Runs of present pages on one node (move_pages(2) query of every page)."""
        addrs, _ = pages_of_ranges(starts, ends, PAGE_SIZE)
        if len(addrs) == 0:
            z = np.zeros(0, np.uint64)
            return z, z, np.zeros(0, np.int64)
        node = query_pages(target.pid, addrs).astype(np.int64)
        ok = node >= 0
        addrs, node = addrs[ok], node[ok]
        brk = np.ones(len(addrs), bool)
        brk[1:] = (node[1:] != node[:-1]) | (addrs[1:] != addrs[:-1] + np.uint64(PAGE_SIZE))
        first = np.flatnonzero(brk)
        last = np.append(first[1:], len(addrs)) - 1
        return addrs[first], addrs[last] + np.uint64(PAGE_SIZE), node[first]

    def page_keys(self, ctx, target, addrs):
        """The virtual page number: it does not change when the page moves."""
        return np.asarray(addrs, np.uint64) // np.uint64(PAGE_SIZE)

    def _pagemap(self, t):
        pm = self._pagemaps.get(id(t))
        if pm is None:
            pm = self._pagemaps[id(t)] = pmap.Pagemap(t.pid, self.procfs_root)
        return pm

    # --- access checks -------------------------------------------------------------------
    def prepare_access_checks(self, ctx) -> None:
        if self.check is None:
            return
        marks = []
        for t in ctx.targets:
            if t.obsolete:
                continue
            try:
                if self.check == "soft_dirty":
                    with open(os.path.join(self.procfs_root, str(t.pid), "clear_refs"), "w") as f:
                        f.write("4")
                    continue
                ent = pagemap_entries(self._pagemap(t), t.regions.sampling_addr,
                                      self.max_gap_pages)
            except (TargetGone, FileNotFoundError, ProcessLookupError):
                t.obsolete = True
                continue
            present = pmap.present(ent)
            pfns = (ent & pmap.PFN_MASK)[present]
            self._sampled[id(t)] = (pfns, present)
            marks.append(pfns)
        if marks:
            self.page_idle.mark_idle(np.concatenate(marks))

    def check_accesses(self, ctx) -> list:
        out = [np.zeros(t.regions.nr, np.uint8) for t in ctx.targets]
        if self.check is None:
            return out
        if self.check == "soft_dirty":
            for i, t in enumerate(ctx.targets):
                if not t.obsolete:
                    ent = self._entries(t, t.regions.sampling_addr)
                    if ent is not None:
                        out[i] = (pmap.present(ent) & ((ent & pmap.SOFT_DIRTY) != 0)).astype(np.uint8)
            return out
        sampled = [(i, t, self._sampled.pop(id(t), None)) for i, t in enumerate(ctx.targets)]
        sampled = [(i, t, s) for i, t, s in sampled
                   if s is not None and not t.obsolete and len(s[1]) == t.regions.nr]
        if not sampled:
            return out
        idle = self.page_idle.read_idle(np.concatenate([s[0] for _, _, s in sampled]))
        pos = 0
        for i, t, (tp, present) in sampled:
            # absent at prepare: not accessed (see the module docstring)
            out[i][present] = ~idle[pos:pos + len(tp)]
            pos += len(tp)
        return out

    # --- native sample path (issue 13): ops/native.py runs the idle check's samples in C --
    def native_sampler(self, ctx):
        if not self.native or self.check != "idle" or self.page_idle.raw_fd is None:
            return None
        if self._native is None:
            self._native = IdleNative(self, self.page_idle, PAGE_SIZE, self.max_gap_pages - 1)
        return self._native

    def native_fds(self, t):
        return self._pagemap(t).fileno(), self._watch[id(t)].fd

    def native_handoff(self, targets, entries) -> None:
        """The sample begun in C, as prepare_access_checks leaves it."""
        for t, ent in zip(targets, entries):
            present = pmap.present(ent)
            self._sampled[id(t)] = ((ent & pmap.PFN_MASK)[present], present)

    def _entries(self, t, addrs):
        try:
            return pagemap_entries(self._pagemap(t), addrs, self.max_gap_pages)
        except TargetGone:
            t.obsolete = True
            return None

    # --- schemes -------------------------------------------------------------------------
    def apply_scheme(self, ctx, target, scheme, starts, ends,
                     ops_filters=None) -> ApplyResult:
        a = scheme.action
        if a == Action.STAT:
            return ApplyResult()
        if ops_filters is None:
            ops_filters = scheme.ops_filters
        try:
            if a in ADVICE and not ops_filters:
                r = md.process_madvise(target.pid, starts, ends - starts, ADVICE[a])
                res = ApplyResult(sz_applied=r.bytes_advised, nr_failed=dict(r.errors))
                if not r.errors:
                    res.region_sz_applied = (ends - starts).astype(np.uint64)
                return res
            addrs, ridx = pages_of_ranges(starts, ends, PAGE_SIZE)
            ent = pagemap_entries(self._pagemap(target), addrs, self.max_gap_pages)
            present = pmap.present(ent)
            addrs, ridx, pfns = addrs[present], ridx[present], (ent & pmap.PFN_MASK)[present]
            ok = self.filters.passed(ops_filters, pfns)
            addrs, ridx = addrs[ok], ridx[ok]
            res = ApplyResult(sz_ops_filter_passed=len(addrs) * PAGE_SIZE)
            if a in ADVICE:
                s, ln = page_runs(addrs)
                r = md.process_madvise(target.pid, s, ln, ADVICE[a])
                res.sz_applied, res.nr_failed = r.bytes_advised, dict(r.errors)
                return res
            return self.migrate(target.pid, scheme, addrs, ridx, len(starts), res)
        except TargetGone:
            target.obsolete = True
            return ApplyResult()

    def migrate(self, pid, scheme, addrs, ridx, nr_ranges, res: ApplyResult) -> ApplyResult:
        """Move the pages of ``pid`` at ``addrs`` (page-aligned bytes, from ranges ``ridx``
        of ``nr_ranges``) to ``scheme``'s destinations with move_pages(2); fills ``res``
        (``sz_applied``: pages on their destination afterwards, ``migrated`` per (src,
        dst) node, ``region_sz_applied`` per range).  paddr moves frames through it once
        it knows their owners."""
        if len(addrs) == 0:
            res.region_sz_applied = np.zeros(nr_ranges, np.uint64)
            return res
        dst = dests_by_address(addrs, scheme.destinations())
        src = query_pages(pid, addrs)
        mr = move_pages(pid, addrs, dst, flags=self.move_flags, src_nodes=src,
                        page_size=PAGE_SIZE, sysfs_root=self.sysfs_root)
        done = mr.status == dst
        res.sz_applied = int(done.sum()) * PAGE_SIZE
        res.migrated = {k: v for k, v in mr.bytes_moved.items()}
        res.nr_failed = dict(mr.errors)
        res.region_sz_applied = (np.bincount(ridx[done], minlength=nr_ranges)
                                 .astype(np.uint64) * np.uint64(PAGE_SIZE))
        return res
