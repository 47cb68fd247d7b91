"""Owners of physical frames (PFN -> pid, vaddr) for paddr's actions, at a cost that follows
the work rather than the machine.

The kernel's paddr finds a frame's mappings through its rmap; user space has no such
interface (pagemap goes vaddr -> PFN; kpageflags, kpagecount and kpagecgroup say what a
frame is, not where it is mapped; PAGEMAP_SCAN has no PFN category), so the owners must be
indexed.  Design:

- **Candidates by memory cgroup.**  For the frames of the ranges acted on, one
  /proc/kpageflags and one /proc/kpagecgroup read (O(frames acted on)) give the frames that
  are mapped and the memcgs they are charged to; only processes in scope listed in those
  memcgs' cgroup.procs are candidates (the memcg -> cgroup directories map: one walk of
  the cgroup tree per scope read).  Without kpagecgroup or a cgroup filesystem, for a
  scope of one process, or for more than ``MAX_CHECK_FRAMES`` frames, every process in
  scope is one.  Unindexed candidates are indexed largest resident set first, and only
  until every mapped LRU frame of the ranges has an owner.
- **A compact per-process extent index, built lazily, kept incrementally.**  A candidate
  is indexed the first time it is needed: PAGEMAP_SCAN finds its present pages, pagemap is
  read in blocks of ``BLOCK_PAGES`` (so memory during the build stays a few MiB), and runs
  of pages contiguous both virtually and physically become extents (PFN start, vaddr, length
  <= 65535) sorted by PFN, a frame mapped twice by one process kept once.  An extent takes
  11 bytes (u32 PFN and vaddr page low bits, u8 index into the process' few high-bit values,
  u16 length; wider types past 16 TiB of RAM).  A lookup is two binary searches per range
  and process plus the frames found.  The index is kept, not rebuilt per ops update: a
  process is rebuilt only when a lookup finds mapped LRU frames of its memcg without a
  known owner *and* it faulted since its build (``minflt + majflt`` of /proc/PID/stat) or
  its index is older than ``max_age_s`` (the kernel moves pages without faults: compaction,
  khugepaged), and at most once per ``retry_s``.  Pages this backend migrated are re-read
  right after the move (O(pages moved)) into a small overlay index, merged into the main
  one when it grows past a quarter of it.  A process that exited or whose pid was reused
  (start time) is dropped at the next ops update.
- **Verified owners.**  Every owner found is re-read from pagemap before it is returned
  (O(frames found)); stale entries are dropped, so a frame is attributed to a process that
  maps it now, and the caller re-checks once more right before moving.

Cost, steady state (nothing in scope faulted since its build): per lookup
O(candidates + frames in the ranges + found * log(extents)); memory 11 bytes per extent;
per ops update O(processes in scope) (the scope is read again).  Worst cases: (1) the first lookup that needs a process, and every rebuild, reads
its whole pagemap: O(its present pages) time (~25-35 ms per GiB here, kernel-side mostly),
and ~100 bytes per extent while the extents are sorted; a process that faults all the time
and owns missed frames is rebuilt once per ``retry_s``.  (2) Memory is one extent per run of
physically contiguous pages: on a fragmented host (runs of ~3-5 pages measured here) 2.1-3.0
bytes per mapped page, with no physical contiguity at all (pages faulted in random order on
fragmented memory) 11 bytes per page; THP-backed memory ~0.02 bytes per page.  (3) Frames of a process that changed memcg
after they were charged, or of processes outside the scope, are never found (as before).
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..arrays import expand_runs, unique
from ..errors import FeatureMissing, SyscallError, TargetGone
from ..linux import kpageflags as kpf
from ..linux import pagemap as pmap
from ..linux.pagemap import present_ranges
from .common import PAGE_SIZE, _KPageCgroup, pagemap_entries

U64 = np.uint64
#: longest extent (pages): the length is stored as uint16
EXT_MAX = 0xFFFF
#: pages of pagemap read at once while indexing a process (512 KiB of entries)
BLOCK_PAGES = 1 << 16
_EMPTY = np.zeros(0, U64)


def _expand(first, count):
    """Concatenated ``first[i] + arange(count[i])`` (uint64), and the index i of each."""
    idx, values = expand_runs(np.asarray(first, U64), count)
    return values, idx


def runs_of(vpn, pfn):
    """Extents (vpn0, pfn0, length) of pages given in vaddr order: runs where both the
    virtual and the physical page number step by one, at most EXT_MAX long."""
    if len(vpn) == 0:
        return _EMPTY, _EMPTY, np.zeros(0, np.uint16)
    step = (np.diff(vpn) == 1) & (np.diff(pfn) == 1)
    run = np.r_[0, np.cumsum(~step)]                       # run id of each page
    first = np.r_[0, np.flatnonzero(~step) + 1]
    pos = np.arange(len(vpn)) - first[run]
    head = np.flatnonzero(pos % EXT_MAX == 0)
    n = np.diff(np.r_[head, len(vpn)])
    return vpn[head], pfn[head], n.astype(np.uint16)


class Extents:
    """Extents of one process sorted by PFN, pairwise disjoint in PFN (a frame the process
    maps twice is kept at its first vaddr).  Compact: see the module doc."""

    __slots__ = ("start", "vlo", "vhi", "his", "n")

    def __init__(self, vpn0, pfn0, n):
        order = np.argsort(pfn0, kind="stable")
        s, v, k = pfn0[order], vpn0[order], n[order].astype(U64)
        if len(s):
            # trim what an earlier extent covers: the earlier ones end at most at the running
            # maximum, and the one that reaches it covers everything from our start to it
            reach = np.r_[U64(0), np.maximum.accumulate(s + k)[:-1]]
            new = np.maximum(s, reach)
            keep = new < s + k
            v = v[keep] + (new - s)[keep]
            k = (s + k - new)[keep]
            s = new[keep]
        last = int((s + k).max()) if len(s) else 0
        self.start = s.astype(np.uint32) if last < (1 << 32) - 1 else s
        hi = v >> U64(32)
        self.his = unique(hi)
        if len(self.his) <= 256:
            self.vlo = (v & U64(0xFFFFFFFF)).astype(np.uint32)
            self.vhi = np.searchsorted(self.his, hi).astype(np.uint8)
        else:
            self.vlo, self.vhi, self.his = v, None, None
        self.n = k.astype(np.uint16)

    def __len__(self):
        return len(self.start)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.start, self.vlo, self.vhi, self.his, self.n)
                   if a is not None)

    def vpn(self, e):
        if self.vhi is None:
            return self.vlo[e].astype(U64)
        return (self.his[self.vhi[e]] << U64(32)) | self.vlo[e].astype(U64)

    def runs(self):
        """All extents as (vpn0, pfn0, n), for merging."""
        e = np.arange(len(self))
        return self.vpn(e), self.start.astype(U64), self.n

    def find(self, a, b):
        """Frames of PFN ranges [a, b) (uint64 arrays) this process maps: (pfn, vpn, range
        index), O(ranges * log(extents) + frames found)."""
        if len(self.start) == 0 or len(a) == 0:
            return _EMPTY, _EMPTY, np.zeros(0, np.int64)
        lim = U64(np.iinfo(self.start.dtype).max)
        qa = np.minimum(a, lim).astype(self.start.dtype)
        qb = np.minimum(b, lim).astype(self.start.dtype)
        i0 = np.maximum(np.searchsorted(self.start, qa, "right") - 1, 0)
        i1 = np.searchsorted(self.start, qb, "left")
        e, r = _expand(i0, np.maximum(i1 - i0, 0))
        e = e.astype(np.int64)
        es = self.start[e].astype(U64)
        lo = np.maximum(a[r], es)
        hi = np.minimum(b[r], es + self.n[e].astype(U64))
        ok = hi > lo
        e, r, es, lo, hi = e[ok], r[ok], es[ok], lo[ok], hi[ok]
        fr, j = _expand(lo, (hi - lo).astype(np.int64))
        vpn = self.vpn(e[j]) + (fr - es[j])
        return fr, vpn, r[j]


def index_process(pm, block_pages: int = BLOCK_PAGES) -> Extents:
    """The extents of the present pages of ``pm``'s process (see the module doc)."""
    rng = present_ranges(pm)
    if rng is None:
        raise FeatureMissing("PAGEMAP_SCAN (Linux >= 6.7)")
    s, e = rng
    first, count = s // U64(PAGE_SIZE), (e - s) // U64(PAGE_SIZE)
    # cut runs into pieces of at most block_pages, and group the pieces into blocks
    pieces = (count + U64(block_pages - 1)) // U64(block_pages)
    pfirst, ridx = _expand(np.zeros(len(pieces), U64), pieces)
    pfirst = first[ridx] + pfirst * U64(block_pages)
    pcount = np.minimum(first[ridx] + count[ridx] - pfirst, U64(block_pages))
    before = np.cumsum(pcount) - pcount
    block = (before // U64(block_pages)).astype(np.int64)
    bounds = np.r_[0, np.flatnonzero(np.diff(block)) + 1, len(block)]
    out = []
    for i, j in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        ent = pm.read_runs(pfirst[i:j], pcount[i:j])
        vpn, _ = _expand(pfirst[i:j], pcount[i:j])
        ok = pmap.present(ent) & ((ent & pmap.PFN_MASK) != 0)
        out.append(runs_of(vpn[ok], ent[ok] & pmap.PFN_MASK))
    if not out:
        return Extents(_EMPTY, _EMPTY, np.zeros(0, np.uint16))
    return Extents(*(np.concatenate(c) for c in zip(*out)))


def _read_small(path) -> bytes:
    """A small /proc or cgroup file in three syscalls (a text-mode open() makes seven: in
    the guest, with a sampling thread holding the GIL between them, each one counts)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out = [os.read(fd, 1 << 16)]
        while len(out[-1]) == 1 << 16:                # a cgroup.procs of many processes
            out.append(os.read(fd, 1 << 16))
        return b"".join(out)
    finally:
        os.close(fd)


def _read_stat(procfs_root, pid):
    """(start time, minflt + majflt) of a process from /proc/PID/stat."""
    try:
        f = _read_small(os.path.join(procfs_root, str(pid), "stat")).rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError) as err:
        raise TargetGone(pid) from err
    return int(f[19]), int(f[7]) + int(f[9])


class ProcessOwners:
    """The index of one process and what it was built from."""

    __slots__ = ("pid", "start_time", "faults", "built_at", "main", "overlay")

    def __init__(self, pid, start_time, faults, main):
        self.pid, self.start_time, self.faults = pid, start_time, faults
        self.built_at = time.monotonic()
        self.main, self.overlay = main, None

    @property
    def nbytes(self) -> int:
        return self.main.nbytes + (self.overlay.nbytes if self.overlay is not None else 0)


class Owners:
    """Frames found mapped, one owner each: ``pfn``, ``pid``, ``vaddr`` (bytes) and ``ridx``
    (index of the range holding the frame); ``nr_stale``: index entries that no longer held
    when read back (dropped)."""

    def __init__(self, pfn=_EMPTY, pid=None, vaddr=_EMPTY, ridx=None, nr_stale=0):
        self.pfn, self.vaddr = pfn, vaddr
        self.pid = np.zeros(0, np.int32) if pid is None else pid
        self.ridx = np.zeros(0, np.int64) if ridx is None else ridx
        self.nr_stale = nr_stale

    def __len__(self):
        return len(self.pfn)


class OwnerIndex:
    """PFN -> (pid, vaddr) for the processes in scope (see the module doc).

    ``nr_pids``: processes indexed now; ``nr_denied``: processes that could not be read
    (exited, or pagemap refused); ``nr_builds``: process indexings so far; ``nr_retries``:
    lookups that rebuilt processes because frames had no known owner.
    """

    #: most frames per lookup whose flags and memcg are read (16 GiB of 4 KiB pages)
    MAX_CHECK_FRAMES = 1 << 22

    def __init__(self, scope_fn, procfs_root="/proc", cgroupfs_root="/sys/fs/cgroup",
                 retry_s: float = 1.0, max_age_s: float = 60.0):
        self.scope_fn = scope_fn
        self.procfs_root, self.cgroupfs_root = procfs_root, cgroupfs_root
        self.retry_s, self.max_age_s = retry_s, max_age_s
        self.procs: dict[int, ProcessOwners] = {}
        self.scope: list[int] = []
        self._scope_read_at = None
        self._denied: set[int] = set()        # not readable since the scope was last read
        self.nr_denied = self.nr_builds = self.nr_retries = 0
        self._memcg_dirs = None               # memcg inode -> cgroup dirs charged to it
        self._kpf = self._kpc = None
        self._no_memcg = False

    # --- scope and per-process state ----------------------------------------------------
    @property
    def nr_pids(self) -> int:
        return len(self.procs)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.procs.values())

    def refresh_scope(self) -> None:
        """Read the processes in scope again (``scope_fn()``, O(processes)); indexes of
        others, of exited ones and of reused pids are dropped."""
        me = os.getpid()
        self.scope = [int(p) for p in self.scope_fn() if int(p) != me]
        self._scope_read_at = time.monotonic()
        self._denied.clear()
        inscope = set(self.scope)
        for pid in list(self.procs):
            po = self.procs[pid]
            try:
                alive = pid in inscope and _read_stat(self.procfs_root, pid)[0] == po.start_time
            except (TargetGone, OSError):
                alive = False
            if not alive:
                del self.procs[pid]
        self._memcg_dirs = None

    def build(self, pid) -> bool:
        """(Re)index one process; False if it cannot be read."""
        try:
            start_time, faults = _read_stat(self.procfs_root, pid)
            with pmap.Pagemap(pid, self.procfs_root) as pm:
                ext = index_process(pm)
        except (TargetGone, PermissionError, SyscallError, OSError):
            self.procs.pop(pid, None)
            self._denied.add(pid)
            self.nr_denied += 1               # gone, or not ours to read (e.g. ptrace rules)
            return False
        self.procs[pid] = ProcessOwners(pid, start_time, faults, ext)
        self.nr_builds += 1
        return True

    def _stale(self, po, now) -> bool:
        if now - po.built_at < self.retry_s:
            return False
        if now - po.built_at >= self.max_age_s:
            return True
        try:
            st, faults = _read_stat(self.procfs_root, po.pid)
        except (TargetGone, OSError):
            return True
        return st != po.start_time or faults != po.faults

    # --- memcg narrowing ------------------------------------------------------------------
    def _memcg_map(self):
        """{memcg inode: cgroup directories whose processes are charged to it}: the cgroup
        v1 memory hierarchy, or on cgroup v2 each directory with ``memory.current`` (and the
        root) with its descendants that have none.  One walk of the cgroup tree per scope
        read; None without a cgroup filesystem."""
        if self._memcg_dirs is not None:
            return self._memcg_dirs or None
        v1 = os.path.join(self.cgroupfs_root, "memory")
        root = v1 if os.path.exists(os.path.join(v1, "cgroup.procs")) else self.cgroupfs_root
        out = {}
        stack = [(root, None)]
        while stack:
            d, ino = stack.pop()
            try:
                if root == v1 or ino is None or os.path.exists(os.path.join(d, "memory.current")):
                    ino = os.stat(d).st_ino
                out.setdefault(ino, []).append(d)
                stack += [(e.path, ino) for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
        if not os.path.exists(os.path.join(root, "cgroup.procs")):
            out = {}
        self._memcg_dirs = out
        return out or None

    def _procs_in(self, inos):
        """Pids charged to the memcgs ``inos`` (their cgroup.procs), None if unknown."""
        m = self._memcg_map()
        if m is None:
            return None
        pids = set()
        for ino in inos:
            for d in m.get(int(ino), ()):
                try:
                    pids.update(int(x) for x in _read_small(os.path.join(d, "cgroup.procs"))
                                .split())
                except (OSError, ValueError):
                    continue
        return pids

    def _frame_info(self, a, b):
        """Frames of the ranges with their kpageflags and memcg inodes, or None past
        MAX_CHECK_FRAMES frames or without /proc/kpageflags."""
        n = (b - a).astype(np.int64)
        if int(n.sum()) > self.MAX_CHECK_FRAMES:
            return None
        frames, _ = _expand(a, n)
        try:
            if self._kpf is None:
                self._kpf = kpf.KPageFlags(self.procfs_root)
            flags = self._kpf.read(frames)
        except (FeatureMissing, SyscallError, PermissionError):
            return None
        memcg = None
        if not self._no_memcg and len(self.scope) > 1:     # else nothing to narrow
            try:
                if self._kpc is None:
                    self._kpc = _KPageCgroup(self.procfs_root)
                memcg = self._kpc.read(frames)
            except (FeatureMissing, SyscallError, PermissionError, OSError):
                self._no_memcg = True
        return frames, flags, memcg

    def _candidates(self, info):
        if info is None or info[2] is None:
            return list(self.scope)
        frames, flags, memcg = info
        procs = self._procs_in(unique(memcg[kpf.has(flags, kpf.MMAP)]).tolist())
        return list(self.scope) if procs is None else [p for p in self.scope if p in procs]

    # --- lookup ---------------------------------------------------------------------------
    def _find(self, pids, a, b) -> Owners:
        pf, pd, va, rx = [], [], [], []
        stale = 0
        dups = False                    # a frame may be found twice (shared, or stale+new)
        for pid in pids:
            po = self.procs.get(pid)
            if po is None:
                continue
            got = [po.main.find(a, b)]
            if po.overlay is not None:      # both may hold a frame (one entry stale)
                got.insert(0, po.overlay.find(a, b))
                dups = True
            fr, vpn, r = (np.concatenate(x) for x in zip(*got))
            if len(fr) == 0:
                continue
            vaddr = vpn * U64(PAGE_SIZE)
            try:                              # verify: only pages mapped there now
                with pmap.Pagemap(pid, self.procfs_root) as pm:
                    ent = pagemap_entries(pm, vaddr)
            except (TargetGone, SyscallError, PermissionError):
                continue
            ok = pmap.present(ent) & ((ent & pmap.PFN_MASK) == fr)
            stale += int((~ok).sum())
            dups = dups or bool(pf)
            pf.append(fr[ok])
            va.append(vaddr[ok])
            rx.append(r[ok])
            pd.append(np.full(int(ok.sum()), pid, np.int32))
        if not pf:
            return Owners(nr_stale=stale)
        pfn, pd, va, rx = (np.concatenate(x) for x in (pf, pd, va, rx))
        if dups:                        # one owner per frame
            pfn, first = np.unique(pfn, return_index=True)
            pd, va, rx = pd[first], va[first], rx[first]
        return Owners(pfn, pd, va, rx, stale)

    def _rss(self, pid) -> int:
        try:
            return int(_read_small(os.path.join(self.procfs_root, str(pid), "statm")).split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    def _index_until_found(self, pids, a, b, want, parts, got):
        """(Re)index ``pids``, the largest resident set first, each followed by a lookup,
        until every frame in ``want`` has an owner (all of them without ``want``)."""
        for pid in sorted(pids, key=self._rss, reverse=True):
            if not self.build(pid):
                continue
            parts.append(self._find([pid], a, b))
            if want is not None:
                got |= np.isin(want, parts[-1].pfn)
                if got.all():
                    break
        return got

    @staticmethod
    def _merge(parts) -> Owners:
        stale = sum(p.nr_stale for p in parts)
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:
            out = parts[0] if parts else Owners()
            out.nr_stale = stale
            return out
        pfn, first = np.unique(np.concatenate([p.pfn for p in parts]), return_index=True)
        return Owners(pfn, *(np.concatenate([getattr(p, k) for p in parts])[first]
                             for k in ("pid", "vaddr", "ridx")), stale)

    def lookup(self, starts, ends) -> Owners:
        """Verified owners of the frames in physical byte ranges [starts, ends).

        Indexed candidates are looked up first; unindexed ones are indexed largest first
        until every mapped LRU frame of the ranges has an owner, so one big owner does not
        make every small process in its memcg be read."""
        a = np.asarray(starts, U64) // U64(PAGE_SIZE)
        b = (np.asarray(ends, U64) + U64(PAGE_SIZE - 1)) // U64(PAGE_SIZE)
        if self._scope_read_at is None:
            self.refresh_scope()
        if len(a) == 0:
            return Owners()
        info = self._frame_info(a, b)
        cands = self._candidates(info)
        want = wmemcg = got = None
        if info is not None:
            frames, flags, memcg = info
            user = kpf.has(flags, kpf.MMAP) & kpf.has(flags, kpf.LRU)
            want = frames[user]
            wmemcg = None if memcg is None else memcg[user]
        parts = [self._find([p for p in cands if p in self.procs], a, b)]
        if want is not None:
            got = np.isin(want, parts[0].pfn)
            if got.all():
                return parts[0]
        new = [p for p in cands if p not in self.procs and p not in self._denied]
        got = self._index_until_found(new, a, b, want, parts, got)
        if want is None or got.all():
            return self._merge(parts)
        # frames no known process maps: a process started since, or an index gone stale
        now = time.monotonic()
        todo = []
        if now - self._scope_read_at >= self.retry_s:
            known = set(self.scope)
            self.refresh_scope()
            cands = self._candidates(info)
            todo = [p for p in cands if p not in known and p not in self.procs]
        procs = None if wmemcg is None else self._procs_in(unique(wmemcg[~got]).tolist())
        todo += [p for p in cands if p in self.procs and self._stale(self.procs[p], now)
                 and (procs is None or p in procs)]
        if todo:
            self.nr_retries += 1
            self._index_until_found(todo, a, b, want, parts, got)
        return self._merge(parts)

    def note_moved(self, pid, vaddrs) -> None:
        """Re-read ``pid``'s pages at ``vaddrs`` (just migrated: new frames) into its overlay
        index, O(pages); merged into the main index past a quarter of its size."""
        po = self.procs.get(pid)
        if po is None or len(vaddrs) == 0:
            return
        v = np.sort(np.asarray(vaddrs, U64))
        try:
            with pmap.Pagemap(pid, self.procfs_root) as pm:
                ent = pagemap_entries(pm, v)
        except (TargetGone, SyscallError, PermissionError):
            return
        ok = pmap.present(ent) & ((ent & pmap.PFN_MASK) != 0)
        new = runs_of(v[ok] // U64(PAGE_SIZE), ent[ok] & pmap.PFN_MASK)
        parts = [new] + ([po.overlay.runs()] if po.overlay is not None else [])
        ov = Extents(*(np.concatenate(c) for c in zip(*parts)))
        if len(ov) > len(po.main) // 4:
            po.main, po.overlay = Extents(*(np.concatenate(c)
                                            for c in zip(ov.runs(), po.main.runs()))), None
        else:
            po.overlay = ov

    def close(self):
        for r in (self._kpf, self._kpc):
            if r is not None:
                r.close()
        self._kpf = self._kpc = None
