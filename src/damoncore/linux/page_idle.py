"""Idle page tracking through /sys/kernel/mm/page_idle/bitmap (CONFIG_IDLE_PAGE_TRACKING).

The bitmap has one bit per page frame number (PFN), 64 PFNs per 8-byte little-endian word at byte
offset ``(pfn // 64) * 8``.  Writing a 1 bit marks that page idle (0 bits are ignored: the kernel
ORs); reading returns 1 for pages still idle, i.e. not accessed since they were marked.  Reads and
writes must be whole, aligned words.

One sample step costs a handful of syscalls: PFNs are sorted, grouped by word, and words that lie
within ``max_gap_words`` of each other are covered by one pread/pwrite (gap words are written as 0,
which the kernel ignores).
"""

from __future__ import annotations

import errno
import os

import numpy as np

from damoncore.errors import FeatureMissing, SyscallError

BITMAP_PATH = "/sys/kernel/mm/page_idle/bitmap"
PFNS_PER_WORD = 64
WORD_BYTES = 8


class FileIO:
    """pread/pwrite on an open file; the default backend of ``PageIdle``."""

    def __init__(self, path: str):
        try:
            self.fd = os.open(path, os.O_RDWR)
        except FileNotFoundError as err:
            raise FeatureMissing("CONFIG_IDLE_PAGE_TRACKING", f"{path} does not exist") from err
        except OSError as err:
            raise SyscallError(err.errno, "open", None, path) from err
        self.path = path

    def pread(self, nbytes: int, offset: int) -> bytes:
        return os.pread(self.fd, nbytes, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def word_runs(pfns, max_gap_words: int = 16):
    """Group PFNs into spans of bitmap words.

    Returns ``(uniq_pfns, spans)``: the sorted unique PFNs, and a list of
    ``(first_word, nr_words, pfn_lo, pfn_hi)`` where ``uniq_pfns[pfn_lo:pfn_hi]`` fall in words
    ``[first_word, first_word + nr_words)``.
    """
    p = np.unique(np.asarray(pfns, dtype=np.uint64))
    if p.size == 0:
        return p, []
    words = (p // PFNS_PER_WORD).astype(np.int64)
    breaks = np.flatnonzero(np.diff(words) > max_gap_words + 1) + 1
    los = np.concatenate([[0], breaks])
    his = np.concatenate([breaks, [p.size]])
    spans = [
        (int(words[lo]), int(words[hi - 1] - words[lo] + 1), int(lo), int(hi))
        for lo, hi in zip(los, his)
    ]
    return p, spans


class PageIdle:
    """The idle page bitmap; a context manager.

    Args:
        path: the bitmap file (a parameter so tests can use a fixture file).
        max_gap_words: words of gap (64 PFNs each) bridged within one syscall.
        io: an object with ``pread(nbytes, offset)``, ``pwrite(data, offset)`` and ``close()``;
            defaults to the file at ``path``.
    Attributes:
        nr_syscalls: pread/pwrite calls issued so far (for cost accounting).
    """

    def __init__(self, path: str = BITMAP_PATH, max_gap_words: int = 16, io=None):
        self.io = io if io is not None else FileIO(path)
        self.max_gap_words = max_gap_words
        self.nr_syscalls = 0

    def mark_idle(self, pfns) -> None:
        """Mark every page frame in ``pfns`` idle (clears its young bits in the kernel)."""
        p, spans = word_runs(pfns, self.max_gap_words)
        for first, nr, lo, hi in spans:
            buf = np.zeros(nr, dtype=np.uint64)
            sub = p[lo:hi]
            idx = (sub // PFNS_PER_WORD).astype(np.int64) - first
            bits = np.left_shift(np.uint64(1), sub % PFNS_PER_WORD)
            np.bitwise_or.at(buf, idx, bits)
            try:
                self.io.pwrite(buf.astype("<u8").tobytes(), first * WORD_BYTES)
            except OSError as err:
                raise self._error(err, "pwrite") from err
            self.nr_syscalls += 1

    def read_idle(self, pfns) -> np.ndarray:
        """Bool per entry of ``pfns`` (original order): the page is still idle.

        Frames past the end of the bitmap read as not idle.
        """
        q = np.asarray(pfns, dtype=np.uint64)
        p, spans = word_runs(q, self.max_gap_words)
        idle_sorted = np.zeros(p.size, dtype=bool)
        for first, nr, lo, hi in spans:
            try:
                raw = self.io.pread(nr * WORD_BYTES, first * WORD_BYTES)
            except OSError as err:
                raise self._error(err, "pread") from err
            self.nr_syscalls += 1
            words = np.zeros(nr, dtype=np.uint64)
            got = len(raw) // WORD_BYTES
            words[:got] = np.frombuffer(raw[: got * WORD_BYTES], dtype="<u8")
            sub = p[lo:hi]
            w = words[(sub // PFNS_PER_WORD).astype(np.int64) - first]
            idle_sorted[lo:hi] = (w >> (sub % PFNS_PER_WORD)) & np.uint64(1) != 0
        return idle_sorted[np.searchsorted(p, q)]

    @staticmethod
    def _error(err: OSError, call: str):
        # ENXIO: a PFN beyond max_pfn; EINVAL: an unaligned access (a bug here).
        detail = "PFN beyond the end of memory" if err.errno == errno.ENXIO else "page_idle bitmap"
        return SyscallError(err.errno, call, None, detail)

    def close(self):
        self.io.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
