"""Vectorized reads of /proc/kpageflags: one uint64 of flags per page frame number (PFN).

Bit numbers are the stable ones of include/uapi/linux/kernel-page-flags.h.  Reading needs
CAP_SYS_ADMIN.  For a sorted PFN set, contiguous runs are read with one pread each.
"""

from __future__ import annotations

import os

import numpy as np

from damoncore.errors import FeatureMissing, SyscallError

from . import _frames

LOCKED = 0
REFERENCED = 2
UPTODATE = 3
DIRTY = 4
LRU = 5
ACTIVE = 6
SLAB = 7
WRITEBACK = 8
RECLAIM = 9
BUDDY = 10
MMAP = 11
ANON = 12
SWAPCACHE = 13
SWAPBACKED = 14
COMPOUND_HEAD = 15
COMPOUND_TAIL = 16
HUGE = 17
UNEVICTABLE = 18
HWPOISON = 19
NOPAGE = 20
KSM = 21
THP = 22
OFFLINE = 23
ZERO_PAGE = 24
IDLE = 25
PGTABLE = 26


def contiguous_runs(sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, lengths)`` of runs of consecutive integers in a sorted, unique array."""
    if sorted_ids.size == 0:
        return sorted_ids[:0], sorted_ids[:0]
    breaks = np.flatnonzero(np.diff(sorted_ids) != 1) + 1
    idx = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([idx, [sorted_ids.size]]))
    return sorted_ids[idx], lengths


class KPageFlags:
    """An open /proc/kpageflags; a context manager.

    Args:
        procfs_root: normally ``/proc``.
    """

    def __init__(self, procfs_root: str = "/proc"):
        path = os.path.join(procfs_root, "kpageflags")
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as err:
            raise FeatureMissing("CONFIG_PROC_PAGE_MONITOR", path) from err
        except OSError as err:
            raise SyscallError(err.errno, "open", None, path) from err

    def read_range(self, first_pfn: int, nr: int) -> np.ndarray:
        """Flags (uint64) of PFNs ``[first_pfn, first_pfn + nr)``; 0 past the end of memory."""
        try:
            buf = os.pread(self._fd, nr * 8, first_pfn * 8)
        except OSError as err:
            raise SyscallError(err.errno, "pread", None, "kpageflags") from err
        out = np.zeros(nr, dtype=np.uint64)
        out[: len(buf) // 8] = np.frombuffer(buf, dtype=np.uint64)
        return out

    def read(self, pfns, max_gap: int = 8) -> np.ndarray:
        """Flags (uint64) for each PFN in ``pfns`` (any order, duplicates allowed).

        PFNs at most ``max_gap`` frames apart share one pread.  The kernel spends ~150 ns per frame
        it reports (measured here) against ~1 us per syscall, so only small gaps are bridged.
        """
        p = np.ascontiguousarray(pfns, dtype=np.uint64)
        out = np.empty(p.size, dtype=np.uint64)
        # the same 8-byte-entry table walk as pagemap's: one pread per span, in C
        _frames.pagemap_at(self._fd, p.ravel(), out, max_gap)
        return out.reshape(p.shape)

    def fileno(self) -> int:
        """The open file's fd (for C loops such as the native sample path)."""
        return self._fd

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def has(flags: np.ndarray, bit: int) -> np.ndarray:
    """Bool per page: flag ``bit`` (one of this module's constants) is set."""
    return (flags >> np.uint64(bit)) & np.uint64(1) != 0
