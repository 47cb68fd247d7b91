"""Idle page tracking through /sys/kernel/mm/page_idle/bitmap (CONFIG_IDLE_PAGE_TRACKING).

The bitmap has one bit per page frame number (PFN), 64 PFNs per 8-byte little-endian word at byte
offset ``(pfn // 64) * 8``.  Writing a 1 bit marks that page idle (0 bits are ignored: the kernel
ORs); reading returns 1 for pages still idle, i.e. not accessed since they were marked.  Reads and
writes must be whole, aligned words.

One sample step costs at most one syscall per distinct word: PFNs are sorted and grouped by word,
all span buffers are laid out in one numpy pass, and only the pread/pwrite calls loop in Python
(about 1 µs each on top of the syscall).  Writes bridge gaps of up to ``max_gap_words`` (gap
words are written as 0, which the kernel skips); reads bridge only ``max_read_gap_words``
(default 0, adjacent words), because the kernel checks every frame a read covers and walks the
rmap of each one still idle.

When the io is a plain :class:`FileIO` (the real bitmap), the whole step runs in C
(:mod:`damoncore.linux._frames`: same syscalls, no Python per word); other io objects (test
fixtures with kernel-like semantics) take the Python path.
"""

from __future__ import annotations

import errno
import os

import numpy as np

from damoncore.arrays import unique
from damoncore.errors import FeatureMissing, SyscallError
from damoncore.linux import _frames

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
    p = unique(np.asarray(pfns, dtype=np.uint64))
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


class _Layout:
    """Where the words of a set of PFNs go, for a batch of pread/pwrite calls over one buffer.

    ``pfns``: sorted, unique; ``pfns[word_start[j]:word_start[j + 1]]`` share bitmap word j of
    the distinct words touched.  Words within ``max_gap_words`` of each other form one span,
    one syscall; the spans are laid out back to back in one buffer of ``nr_buf_words`` words,
    distinct word j at buffer word ``buf_pos[j]``.  Few numpy calls: each costs microseconds,
    which matters at 10 frames a sample.
    """

    def __init__(self, pfns, max_gap_words: int):
        p = self.pfns = unique(np.asarray(pfns, dtype=np.uint64))
        w = (p >> np.uint64(6)).astype(np.int64)
        self.word_start = np.flatnonzero(np.concatenate(([1], w[1:] - w[:-1])))
        words = w[self.word_start]
        step = words[1:] - words[:-1]
        gap = step > max_gap_words + 1
        step[gap] = 1                       # a new span starts right after the previous one
        self.buf_pos = np.concatenate(([0], np.cumsum(step)))
        lo = np.flatnonzero(np.concatenate(([True], gap)))
        hi = np.concatenate((lo[1:], [words.size])) - 1
        self.first = words[lo]
        self.buf_lo = self.buf_pos[lo]
        self.buf_hi = self.buf_pos[hi] + 1
        self.nr_buf_words = int(self.buf_hi[-1]) if words.size else 0

    def calls(self):
        """``(file_offset, buf_byte_lo, buf_byte_hi)`` lists, one entry per syscall."""
        return ((self.first * WORD_BYTES).tolist(), (self.buf_lo * WORD_BYTES).tolist(),
                (self.buf_hi * WORD_BYTES).tolist())


def _word_spans(words, max_gap_words):
    """``[first, last]`` word spans over sorted distinct ``words`` (Python ints)."""
    spans = []
    for w in words:
        if spans and w - spans[-1][1] <= max_gap_words + 1:
            spans[-1][1] = w
        else:
            spans.append([w, w])
    return spans


def _small_write_plan(pfns, max_gap_words):
    """Offsets and buffers of the pwrites marking ``pfns`` (a list), in plain Python: at tens
    of frames a handful of numpy calls costs more than the syscalls."""
    bits = {}
    for f in pfns:
        bits[f >> 6] = bits.get(f >> 6, 0) | 1 << (f & 63)
    spans = _word_spans(sorted(bits), max_gap_words)
    return ([first * WORD_BYTES for first, _ in spans],
            [b"".join(bits.get(w, 0).to_bytes(WORD_BYTES, "little") for w in range(first, last + 1))
             for first, last in spans])


class PageIdle:
    """The idle page bitmap; a context manager.

    Args:
        path: the bitmap file (a parameter so tests can use a fixture file).
        max_gap_words: words of gap (64 PFNs each) bridged within one pwrite (gap words are
            written as 0, which the kernel skips cheaply).
        max_read_gap_words: the same for preads; small, because the kernel checks every frame
            a read covers and does an rmap walk for each one still idle.
        io: an object with ``pread(nbytes, offset)``, ``pwrite(data, offset)`` and ``close()``;
            defaults to the file at ``path``.
    Attributes:
        nr_syscalls: pread/pwrite calls issued so far (for cost accounting).
        small_batch: up to this many frames a call is planned in plain Python, above it with
            numpy (each numpy call costs microseconds; the two plans issue the same syscalls).
    """

    small_batch = 64

    def __init__(self, path: str = BITMAP_PATH, max_gap_words: int = 16, io=None,
                 max_read_gap_words: int = 0):
        self.io = io if io is not None else FileIO(path)
        self.max_gap_words = max_gap_words
        self.max_read_gap_words = max_read_gap_words
        self.nr_syscalls = 0
        # a subclass may change the semantics (test fixtures): only a plain FileIO goes to C
        self._in_c = type(self.io) is FileIO

    @property
    def raw_fd(self):
        """The bitmap's fd when C loops may use it (a plain :class:`FileIO`: the real bitmap,
        or a file with its syscalls), else None (an io with other semantics); the native sample
        path (ops/native.py) needs it."""
        return self.io.fd if self._in_c else None

    def mark_idle(self, pfns) -> None:
        """Mark every page frame in ``pfns`` idle (clears its young bits in the kernel)."""
        q = np.asarray(pfns, dtype=np.uint64).ravel()
        if self._in_c:
            try:
                self.nr_syscalls += _frames.idle_mark(self.io.fd, q, self.max_gap_words)
            except OSError as err:
                raise self._error(err, "pwrite") from err
            return
        if q.size <= self.small_batch:
            self._pwrite_all(*_small_write_plan(q.tolist(), self.max_gap_words))
            return
        lay = _Layout(q, self.max_gap_words)
        bits = np.left_shift(np.uint64(1), lay.pfns & np.uint64(PFNS_PER_WORD - 1))
        buf = np.zeros(lay.nr_buf_words, dtype="<u8")
        buf[lay.buf_pos] = np.bitwise_or.reduceat(bits, lay.word_start)
        mv = memoryview(buf).cast("B")
        offs, los, his = lay.calls()
        self._pwrite_all(offs, [mv[lo:hi] for lo, hi in zip(los, his)])

    def read_idle(self, pfns) -> np.ndarray:
        """Bool per entry of ``pfns`` (original order): the page is still idle.

        Frames past the end of the bitmap read as not idle.
        """
        q = np.asarray(pfns, dtype=np.uint64)
        if self._in_c:
            flat = np.ascontiguousarray(q.ravel())
            out = np.empty(flat.size, dtype=np.uint8)
            try:
                self.nr_syscalls += _frames.idle_read(self.io.fd, flat, out,
                                                      self.max_read_gap_words)
            except OSError as err:
                raise self._error(err, "pread") from err
            return out.view(bool).reshape(q.shape)
        if q.size <= self.small_batch:
            return self._read_idle_small(q)
        lay = _Layout(q, self.max_read_gap_words)
        offs, los, his = lay.calls()
        chunks = self._pread_all(offs, [hi - lo for lo, hi in zip(los, his)])
        raw = b"".join(chunks)
        if len(raw) != lay.nr_buf_words * WORD_BYTES:
            # a short read at the end of memory: the missing words read as not idle
            raw = b"".join(c.ljust(hi - lo, b"\0") for c, lo, hi in zip(chunks, los, his))
        words = np.repeat(np.frombuffer(raw, dtype="<u8")[lay.buf_pos],
                          np.diff(lay.word_start, append=lay.pfns.size))
        idle = (words >> (lay.pfns & np.uint64(PFNS_PER_WORD - 1))) & np.uint64(1) != 0
        return idle[np.searchsorted(lay.pfns, q)]

    def _read_idle_small(self, q):
        qs = q.ravel().tolist()
        spans = _word_spans(sorted({f >> 6 for f in qs}), self.max_read_gap_words)
        chunks = self._pread_all([first * WORD_BYTES for first, _ in spans],
                                 [(last - first + 1) * WORD_BYTES for first, last in spans])
        value = {}
        for (first, _), raw in zip(spans, chunks):
            for i in range(len(raw) // WORD_BYTES):
                value[first + i] = int.from_bytes(raw[i * WORD_BYTES:(i + 1) * WORD_BYTES],
                                                  "little")
        return np.array([value.get(f >> 6, 0) >> (f & 63) & 1 for f in qs],
                        dtype=bool).reshape(q.shape)

    def _pwrite_all(self, offsets, buffers):
        # a short write goes on where it stopped, as in _frames (kernfs takes at most
        # PAGE_SIZE bytes of a sysfs bin file per call); ENXIO there is the end of memory
        pwrite, done = self.io.pwrite, 0
        try:
            for off, buf in zip(offsets, buffers):
                pos, size = 0, len(buf)
                while pos < size:
                    try:
                        put = pwrite(buf[pos:] if pos else buf, off + pos)
                    except OSError as err:
                        if not pos or err.errno != errno.ENXIO:
                            raise
                        done += 1
                        break
                    done += 1
                    if not put:
                        break
                    pos += put
        except OSError as err:
            raise self._error(err, "pwrite") from err
        finally:
            self.nr_syscalls += done

    def _pread_all(self, offsets, sizes):
        # a short read goes on where it stopped (see _pwrite_all); nothing returned ends it
        pread, chunks, done = self.io.pread, [], 0
        try:
            for off, size in zip(offsets, sizes):
                chunk = pread(size, off)
                done += 1
                while 0 < len(chunk) < size:
                    more = pread(size - len(chunk), off + len(chunk))
                    done += 1
                    if not more:
                        break
                    chunk += more
                chunks.append(chunk)
        except OSError as err:
            raise self._error(err, "pread") from err
        finally:
            self.nr_syscalls += done
        return chunks

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
