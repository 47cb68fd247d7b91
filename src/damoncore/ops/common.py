"""Helpers shared by the backends: vaddr's initial ranges, scattered
pagemap reads, page ops filters from /proc/kpageflags, page runs, weighted destinations.

Addresses and sizes are bytes; PFNs are page frame numbers.  Every function works on whole
numpy arrays; the only Python loops issue one syscall per contiguous cluster of pages.
"""

from __future__ import annotations

import os

import numpy as np

from ..arrays import unique
from ..core.regions import fit_regions  # noqa: F401  (moved to core: the commit uses it)
from ..errors import FeatureMissing, InvalidConfig, TargetGone
from ..linux import kpageflags as kpf
from ..linux.system import PAGE_SIZE
from ..schemes.filters import filters_pass
from ..vocab import FilterType

U64 = np.uint64


# --- regions ---------------------------------------------------------------------------------
def three_ranges(vmas):
    """vaddr's initial ranges (``__damon_va_three_regions()``): the three (start, end)
    ranges covering ``vmas`` (a list of (start, end) bytes) minus its two largest gaps; the
    core then splits them evenly into ``min_nr_regions`` regions."""
    vmas = sorted((int(a), int(b)) for a, b in vmas)
    if not vmas:
        raise ValueError("no memory mappings")
    gaps = [(vmas[i + 1][0] - vmas[i][1], i) for i in range(len(vmas) - 1)
            if vmas[i + 1][0] > vmas[i][1]]
    if len(gaps) < 2:
        return [(vmas[0][0], vmas[-1][1])]
    top = sorted(sorted(gaps, reverse=True)[:2], key=lambda g: g[1])
    (_, i1), (_, i2) = top
    return [(vmas[0][0], vmas[i1][1]), (vmas[i1 + 1][0], vmas[i2][1]),
            (vmas[i2 + 1][0], vmas[-1][1])]


# --- processes -------------------------------------------------------------------------------
def read_maps(pid: int, procfs_root: str = "/proc") -> list:
    """(start, end) byte ranges of the VMAs of ``pid``; [vsyscall] is not a VMA of the mm."""
    try:
        with open(os.path.join(procfs_root, str(pid), "maps")) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError) as err:
        raise TargetGone(pid) from err
    out = []
    for line in text.splitlines():
        if line.endswith("[vsyscall]"):
            continue
        a, _, b = line.split(" ", 1)[0].partition("-")
        out.append((int(a, 16), int(b, 16)))
    if not out:
        raise TargetGone(pid)        # a zombie has no mm
    return out


# --- pagemap ---------------------------------------------------------------------------------
def pagemap_entries(pm, addrs, max_gap_pages: int = 16) -> np.ndarray:
    """Raw pagemap entries (uint64) for each address in ``addrs`` (any order).

    Pages at most ``max_gap_pages`` apart share one pread (the kernel walks the gap too).
    """
    a = np.asarray(addrs, dtype=U64).ravel()
    return pm.entries_at(a // U64(pm.page_size), max_gap_pages)


def page_runs(addrs, page_size: int = PAGE_SIZE):
    """Sorted page addresses -> (starts, lengths) byte arrays of maximal contiguous runs."""
    a = np.asarray(addrs, U64)
    if a.size == 0:
        return a, a
    brk = np.flatnonzero(np.diff(a) != U64(page_size)) + 1
    los, his = np.r_[0, brk], np.r_[brk, a.size]
    return a[los], (his - los).astype(U64) * U64(page_size)


# --- ops filters -----------------------------------------------------------------------------
class _KPageCgroup(kpf.KPageFlags):
    """/proc/kpagecgroup: the memcg inode number of each PFN (same layout as kpageflags)."""

    def __init__(self, procfs_root="/proc"):
        path = os.path.join(procfs_root, "kpagecgroup")
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as err:
            raise FeatureMissing("CONFIG_MEMCG", f"{path} does not exist") from err


def folio_bytes(flags_reader, pfns, flags, page_size: int = PAGE_SIZE) -> np.ndarray:
    """Size in bytes of the folio holding each PFN, from the compound head/tail flags of the
    512-frame aligned block around it (one kpageflags read per block).  Folios larger than a
    block (x86 1 GiB hugetlb pages) are reported as 1 GiB."""
    sz = np.full(len(pfns), page_size, U64)
    comp = kpf.has(flags, kpf.COMPOUND_HEAD) | kpf.has(flags, kpf.COMPOUND_TAIL)
    if not comp.any():
        return sz
    p = np.asarray(pfns, U64)[comp]
    blocks = unique(p >> U64(9))
    f = flags_reader.read(((blocks[:, None] << U64(9)) + np.arange(512, dtype=U64)).ravel())
    f = f.reshape(-1, 512)
    idx = np.arange(513)
    head = np.where(kpf.has(f, kpf.COMPOUND_HEAD), idx[:512], -1)
    last_head = np.maximum.accumulate(head, axis=1)
    nontail = np.where(kpf.has(f, kpf.COMPOUND_TAIL), 512, idx[:512])
    nontail = np.c_[nontail, np.full(len(blocks), 512)]
    next_nontail = np.minimum.accumulate(nontail[:, ::-1], axis=1)[:, ::-1]
    b = np.searchsorted(blocks, p >> U64(9))
    h = last_head[b, (p & U64(511)).astype(np.int64)]
    end = next_nontail[b, np.where(h >= 0, h + 1, 512)]
    big = h < 0                       # the head lies in an earlier block
    edge = np.flatnonzero((h == 0) & (end == 512))
    if len(edge):                     # a whole block: 2 MiB, unless the folio goes on
        nxt = flags_reader.read(((p[edge] >> U64(9)) + U64(1)) << U64(9))
        big[edge] = kpf.has(nxt, kpf.COMPOUND_TAIL)
    sz[comp] = np.where(big, U64(1 << 30), (end - h).astype(U64) * U64(page_size))
    return sz


class PageFilters:
    """Evaluates DAMOS ops filters on page frames (``damos_folio_filter_match()``).

    ``anon``/``active``: the kpageflags bits; ``unmapped``: not mapped by any page table;
    ``hugepage_size``: the folio size is within the filter's (min, max) bytes; ``memcg``: the
    frame's memcg (/proc/kpagecgroup) is ``cgroupfs_root/memcg_path``; ``young``: accessed
    since the frame was last marked idle, and then marked idle (the kernel's mkold), which
    needs the idle page bitmap (``page_idle``, a :class:`PageIdle`, or None).
    Unlike the kernel, every filter is evaluated for every page (the first match still
    decides), so the young filter's mkold also reaches pages an earlier filter decided.
    """

    def __init__(self, procfs_root="/proc", page_idle=None, cgroupfs_root="/sys/fs/cgroup"):
        self.procfs_root, self.page_idle, self.cgroupfs_root = procfs_root, page_idle, cgroupfs_root
        self._kpf = None
        self._kpc = None

    def check_supported(self, filters) -> None:
        for f in filters:
            if f.filter_type == FilterType.YOUNG and self.page_idle is None:
                raise FeatureMissing("CONFIG_IDLE_PAGE_TRACKING",
                                     "the young filter reads and clears page idle bits")

    def kpageflags(self) -> kpf.KPageFlags:
        """The open /proc/kpageflags these filters read (opened at first use)."""
        if self._kpf is None:
            self._kpf = kpf.KPageFlags(self.procfs_root)
        return self._kpf

    def on_lru(self, pfns) -> np.ndarray:
        """Bool per PFN: the frame is an LRU (user) page.  Free frames, slab and page
        tables cannot be marked idle, so their idle bit always reads "accessed"; the
        kernel's paddr finds no folio for them (damon_get_folio()) and reports no access."""
        return kpf.has(self.kpageflags().read(np.asarray(pfns, U64)), kpf.LRU)

    def passed(self, filters, pfns) -> np.ndarray:
        """Bool per PFN: the filters let the page through."""
        pfns = np.asarray(pfns, U64)
        if not filters:
            return np.ones(len(pfns), bool)
        self.check_supported(filters)
        cache = {}

        def flags():
            if "flags" not in cache:
                cache["flags"] = self.kpageflags().read(pfns)
            return cache["flags"]

        def match(f):
            t = f.filter_type
            if t == FilterType.ANON:
                return kpf.has(flags(), kpf.ANON)
            if t == FilterType.ACTIVE:
                return kpf.has(flags(), kpf.ACTIVE)
            if t == FilterType.UNMAPPED:
                return ~kpf.has(flags(), kpf.MMAP)
            if t == FilterType.HUGEPAGE_SIZE:
                sz = folio_bytes(self.kpageflags(), pfns, flags())
                lo, hi = f.hugepage_size
                return (sz >= U64(lo)) & (sz <= U64(hi))
            if t == FilterType.MEMCG:
                if self._kpc is None:
                    self._kpc = _KPageCgroup(self.procfs_root)
                path = os.path.join(self.cgroupfs_root, f.memcg_path.lstrip("/"))
                try:
                    ino = os.stat(path).st_ino
                except FileNotFoundError as err:
                    raise InvalidConfig(f"memcg filter: no cgroup {path}") from err
                return self._kpc.read(pfns) == U64(ino)
            if t == FilterType.YOUNG:
                young = ~self.page_idle.read_idle(pfns)
                self.page_idle.mark_idle(pfns[young])
                return young
            raise InvalidConfig(f"filter type {t!r} is not an ops filter")

        return filters_pass(filters, match, len(pfns))

    def close(self):
        for r in (self._kpf, self._kpc):
            if r is not None:
                r.close()
        self._kpf = self._kpc = None


def dests_by_address(addrs, dests, page_size: int = PAGE_SIZE) -> np.ndarray:
    """Destination node of each page at ``addrs``, spread by dests' weights.

    As the kernel's weighted interleaving (and DAMOS migrate_dests) does, a page's node
    follows from its interleave index (page number modulo the weight total), not from its
    position in the batch, so re-applying a scheme does not move pages already placed.
    """
    cum = np.cumsum([wt for _, wt in dests])
    ilx = (np.asarray(addrs, np.uint64) // np.uint64(page_size)) % np.uint64(cum[-1])
    group = np.searchsorted(cum, ilx.astype(np.int64), side="right")
    return np.array([nid for nid, _ in dests], np.int32)[group]
