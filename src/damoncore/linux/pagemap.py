"""Vectorized reads of /proc/PID/pagemap: one pread per contiguous range, one uint64 per page,
and the PAGEMAP_SCAN ioctl (Linux >= 6.7) that finds a process' present pages in one walk.

Entry bits (Documentation/admin-guide/mm/pagemap.rst): PFN 0-54 (zero without CAP_SYS_ADMIN),
soft-dirty 55, exclusively mapped 56, uffd-wp 57, file-page or shared-anon 61, swapped 62,
present 63.  When swapped, bits 0-4 are the swap type and 5-54 the swap offset.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

import numpy as np

from damoncore.arrays import unique
from damoncore.errors import SyscallError, TargetGone
from damoncore.linux import _frames, _syscalls
from damoncore.linux.system import PAGE_SIZE, user_space_end

PFN_MASK = np.uint64((1 << 55) - 1)
SOFT_DIRTY = np.uint64(1 << 55)
EXCLUSIVE = np.uint64(1 << 56)
UFFD_WP = np.uint64(1 << 57)
FILE_SHARED = np.uint64(1 << 61)
SWAPPED = np.uint64(1 << 62)
PRESENT = np.uint64(1 << 63)
ENTRY_BYTES = 8
#: scattered lookups read pages this close together with one pread (the kernel walks the gap)
LOOKUP_GAP_PAGES = 16
#: ranges one PAGEMAP_SCAN call reports at most (24 bytes each)
SCAN_VEC_LEN = 2048


class Pagemap:
    """An open /proc/PID/pagemap; a context manager.

    Args:
        pid: target process.
        procfs_root: normally ``/proc``.
        page_size: bytes per page (the pagemap has one entry per base page).
    """

    def __init__(self, pid: int, procfs_root: str = "/proc", page_size: int = PAGE_SIZE):
        self.pid, self.page_size = pid, page_size
        path = os.path.join(procfs_root, str(pid), "pagemap")
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError) as err:
            # ENOENT: no such pid; ESRCH: a zombie, whose mm is already gone
            raise TargetGone(pid) from err
        except OSError as err:
            raise SyscallError(err.errno, "open", pid, path) from err

    def read(self, start: int, end: int) -> np.ndarray:
        """Raw entries (uint64) for the pages covering virtual bytes ``[start, end)``.

        Pages at or above the top of the user address space (TASK_SIZE, see
        :func:`damoncore.linux.system.user_space_end`) read as 0, like unmapped pages below it.  Raises
        :class:`TargetGone` once the process has exited.
        """
        first = start // self.page_size
        last = -(-end // self.page_size)
        nbytes = (last - first) * ENTRY_BYTES
        try:
            buf = os.pread(self._fd, nbytes, first * ENTRY_BYTES)
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise TargetGone(self.pid) from err
            raise SyscallError(err.errno, "pread", self.pid, "pagemap") from err
        if len(buf) != nbytes:
            # The kernel stops at TASK_SIZE, and returns nothing at all once the process has
            # released its mm.  Only the latter is an exit: tell them apart by address 0.
            if not buf and not self._mm_alive():
                raise TargetGone(self.pid)
            out = np.zeros(nbytes // ENTRY_BYTES, dtype=np.uint64)
            out[: len(buf) // ENTRY_BYTES] = np.frombuffer(buf, dtype=np.uint64)
            return out
        return np.frombuffer(buf, dtype=np.uint64)

    def read_runs(self, first_pages, nr_pages) -> np.ndarray:
        """Entries of the page runs ``[first_pages[i], first_pages[i] + nr_pages[i])`` (page
        numbers), back to back in one uint64 array: one preadv straight into it per run, so
        thousands of runs cost little more than their syscalls.  Same edges as :meth:`read`.
        """
        firsts = np.asarray(first_pages, dtype=np.int64).tolist()
        sizes = (np.asarray(nr_pages, dtype=np.int64) * ENTRY_BYTES).tolist()
        out = np.empty(sum(sizes) // ENTRY_BYTES, dtype=np.uint64)
        mv = memoryview(out).cast("B")
        fd, pos = self._fd, 0
        try:
            for first, nbytes in zip(firsts, sizes):
                got = os.preadv(fd, [mv[pos:pos + nbytes]], first * ENTRY_BYTES)
                if got != nbytes:
                    if not got and not self._mm_alive():
                        raise TargetGone(self.pid)
                    out[(pos + got) // ENTRY_BYTES:(pos + nbytes) // ENTRY_BYTES] = 0
                pos += nbytes
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise TargetGone(self.pid) from err
            raise SyscallError(err.errno, "preadv", self.pid, "pagemap") from err
        return out

    def entries_at(self, pages, max_gap_pages: int = 0) -> np.ndarray:
        """Entries (uint64) of the virtual page numbers ``pages`` (any order, duplicates
        allowed), in their order: one pread per span of pages at most ``max_gap_pages`` apart
        (the kernel walks the gap too), all in C.  Same edges as :meth:`read`.
        """
        q = np.ascontiguousarray(np.asarray(pages, dtype=np.uint64).ravel())
        out = np.empty(q.size, dtype=np.uint64)
        try:
            # "at most max_gap_pages apart" bridges max_gap_pages - 1 pages between them
            _, nr_empty = _frames.pagemap_at(self._fd, q, out, max(max_gap_pages - 1, 0))
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise TargetGone(self.pid) from err
            raise SyscallError(err.errno, "pread", self.pid, "pagemap") from err
        if nr_empty and not self._mm_alive():
            raise TargetGone(self.pid)
        return out

    def fileno(self) -> int:
        """The open pagemap's fd (for C loops such as the native sample path)."""
        return self._fd

    def alive(self) -> bool:
        """Whether the process still has its memory (an exited one, even a zombie whose
        pid was reused since, reads nothing through this open file)."""
        return self._fd >= 0 and self._mm_alive()

    def _mm_alive(self) -> bool:
        try:
            return len(os.pread(self._fd, ENTRY_BYTES, 0)) == ENTRY_BYTES
        except ProcessLookupError:
            return False

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PagemapCache:
    """Open /proc/PID/pagemap files by pid, for lookups repeated over a run (e.g. turning
    fault addresses into physical ones).  The files of processes that have exited are
    closed: the pid that faulted last is checked at each lookup, every cached one at
    most every ``sweep_s`` seconds.

    Args:
        procfs_root: normally ``/proc``.
        page_size: bytes per page.
        sweep_s: least time between two checks of every cached file.
    """

    def __init__(self, procfs_root: str = "/proc", page_size: int = PAGE_SIZE,
                 sweep_s: float = 1.0):
        self.procfs_root, self.page_size, self.sweep_s = procfs_root, page_size, sweep_s
        self._open: dict[int, Pagemap] = {}
        self._swept_at = time.monotonic()

    def __len__(self):
        return len(self._open)

    def get(self, pid: int) -> Pagemap:
        """The open pagemap of ``pid``; TargetGone if it does not exist."""
        pm = self._open.get(pid)
        if pm is None:
            pm = self._open[pid] = Pagemap(pid, self.procfs_root, self.page_size)
        return pm

    def forget(self, pid: int) -> None:
        pm = self._open.pop(pid, None)
        if pm is not None:
            pm.close()

    def sweep(self, now: float | None = None) -> int:
        """Close the files of exited processes (at most every ``sweep_s``); how many."""
        now = time.monotonic() if now is None else now
        if now - self._swept_at < self.sweep_s:
            return 0
        self._swept_at = now
        gone = [pid for pid, pm in self._open.items() if not pm.alive()]
        for pid in gone:
            self.forget(pid)
        return len(gone)

    def phys_addrs(self, pids, addrs):
        """``(paddrs, kept)``: the physical address now behind each virtual address
        ``addrs[i]`` (bytes) of process ``pids[i]``, and a mask of those present (needs
        CAP_SYS_ADMIN for PFNs); addresses of exited processes are not kept."""
        pids = np.asarray(pids)
        addrs = np.asarray(addrs, np.uint64)
        out = np.zeros(len(addrs), np.uint64)
        kept = np.zeros(len(addrs), bool)
        ps = np.uint64(self.page_size)
        for pid in unique(pids).tolist():
            sel = np.flatnonzero(pids == pid)
            try:
                ent = self.get(pid).entries_at(addrs[sel] // ps, LOOKUP_GAP_PAGES)
            except TargetGone:
                self.forget(pid)
                continue
            frames = ent & PFN_MASK
            kept[sel] = present(ent) & (frames != 0)
            out[sel] = frames * ps + addrs[sel] % ps
        self.sweep()
        return out, kept

    def close(self) -> None:
        for pid in list(self._open):
            self.forget(pid)


def present(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: the page is in RAM."""
    return (entries & PRESENT) != 0


def swapped(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: the page is in swap."""
    return (entries & SWAPPED) != 0


def file_or_shared(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: a page-cache page or shared anonymous page."""
    return (entries & FILE_SHARED) != 0


def exclusive(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: mapped by exactly this process."""
    return (entries & EXCLUSIVE) != 0


def pfns(entries: np.ndarray) -> np.ndarray:
    """Page frame number per entry (uint64); 0 where not present or without CAP_SYS_ADMIN."""
    return np.where(present(entries), entries & PFN_MASK, np.uint64(0))


def present_ranges(pm: Pagemap, start: int = 0, end: int | None = None,
                   vec_len: int = SCAN_VEC_LEN):
    """(starts, ends) byte arrays of the present pages of ``pm``'s process in ``[start,
    end)`` (default: the whole user address space), through the PAGEMAP_SCAN ioctl, or None
    if the kernel lacks it (< 6.7).  Cost is one page-table walk."""
    if end is None:
        end = user_space_end()
    if not _syscalls.PAGEMAP_SCAN:
        return None
    present = _syscalls.PAGEMAP_SCAN_PRESENT
    vec = np.zeros(3 * vec_len, np.uint64)
    out_s, out_e = [], []
    while start < end:
        # struct pm_scan_arg: size, flags, start, end, walk_end, vec, vec_len, max_pages,
        # category_inverted, category_mask, category_anyof_mask, return_mask
        arg = bytearray(struct.pack("=12Q", 96, 0, start, end, 0, vec.ctypes.data, vec_len,
                                    0, 0, present, 0, present))
        try:
            n = fcntl.ioctl(pm._fd, _syscalls.PAGEMAP_SCAN, arg, True)
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL):
                return None
            if err.errno == errno.ESRCH:
                raise TargetGone(pm.pid) from err
            raise SyscallError(err.errno, "ioctl(PAGEMAP_SCAN)", pm.pid) from err
        v = vec[: 3 * n].reshape(-1, 3)
        out_s.append(v[:, 0].copy())
        out_e.append(v[:, 1].copy())
        walk_end = struct.unpack_from("=Q", arg, 32)[0]
        if n < vec_len or walk_end >= end:
            break
        start = walk_end
    return np.concatenate(out_s), np.concatenate(out_e)
