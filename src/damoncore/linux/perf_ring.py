"""The perf mmap ring buffer and bulk parsing of its records (uapi linux/perf_event.h layouts).

The ring is one control page (``struct perf_event_mmap_page``; ``data_head`` at byte 1024,
``data_tail`` at 1032) followed by 2^n data pages.  The kernel writes records at ``data_head``;
we read ``data_head``, copy ``[data_tail, data_head)`` out, then store ``data_tail`` so the kernel
may reuse that space.  ``data_head`` is read with acquire and ``data_tail`` written with release
semantics (:mod:`damoncore.linux._syscalls`), the ordering the kernel documents (an smp_rmb
after reading data_head, an smp_mb before writing data_tail), on any CPU, not only x86's TSO.

Samples of one event all have the same size, so runs of them are viewed as a numpy structured
array without a per-record Python loop; other records (LOST, THROTTLE, MMAP) are walked one by
one.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

import numpy as np

from damoncore.linux import _syscalls
from damoncore.linux.system import PAGE_SIZE

PERF_RECORD_MMAP = 1
PERF_RECORD_LOST = 2
PERF_RECORD_THROTTLE = 5
PERF_RECORD_UNTHROTTLE = 6
PERF_RECORD_SAMPLE = 9

# attr.sample_type bits (enum perf_event_sample_format)
SAMPLE_IP = 1 << 0
SAMPLE_TID = 1 << 1
SAMPLE_TIME = 1 << 2
SAMPLE_ADDR = 1 << 3
SAMPLE_ID = 1 << 6
SAMPLE_CPU = 1 << 7
SAMPLE_PERIOD = 1 << 8
SAMPLE_STREAM_ID = 1 << 9
SAMPLE_RAW = 1 << 10
SAMPLE_WEIGHT = 1 << 14
SAMPLE_DATA_SRC = 1 << 15
SAMPLE_IDENTIFIER = 1 << 16
SAMPLE_PHYS_ADDR = 1 << 19

_HEAD_OFFSET = 1024
_TAIL_OFFSET = 1032
_HEADER = [("type", "<u4"), ("misc", "<u2"), ("size", "<u2")]
# Fixed-size fields in the order the kernel emits them (perf_output_sample).
_BEFORE_RAW = [
    (SAMPLE_IDENTIFIER, [("identifier", "<u8")]),
    (SAMPLE_IP, [("ip", "<u8")]),
    (SAMPLE_TID, [("pid", "<u4"), ("tid", "<u4")]),
    (SAMPLE_TIME, [("time", "<u8")]),
    (SAMPLE_ADDR, [("addr", "<u8")]),
    (SAMPLE_ID, [("id", "<u8")]),
    (SAMPLE_STREAM_ID, [("stream_id", "<u8")]),
    (SAMPLE_CPU, [("cpu", "<u4"), ("cpu_res", "<u4")]),
    (SAMPLE_PERIOD, [("period", "<u8")]),
]
_AFTER_RAW = [
    (SAMPLE_WEIGHT, [("weight", "<u8")]),
    (SAMPLE_DATA_SRC, [("data_src", "<u8")]),
    (SAMPLE_PHYS_ADDR, [("phys_addr", "<u8")]),
]
_SUPPORTED = 0
for _bit, _ in _BEFORE_RAW + _AFTER_RAW:
    _SUPPORTED |= _bit
_SUPPORTED |= SAMPLE_RAW


def sample_dtype(sample_type: int, raw_fields=(), record_size: int | None = None) -> np.dtype:
    """Structured dtype of one PERF_RECORD_SAMPLE for ``sample_type``.

    Args:
        sample_type: attr.sample_type; only fixed-size fields are supported.
        raw_fields: ``(name, numpy format, byte offset inside the raw data)`` to expose from a
            tracepoint's raw payload (offsets from its ``format`` file).
        record_size: the record's size in bytes (header.size); required with SAMPLE_RAW.
    """
    if sample_type & ~_SUPPORTED:
        raise ValueError(f"unsupported sample_type bits {sample_type & ~_SUPPORTED:#x}")
    after_raw = SAMPLE_WEIGHT | SAMPLE_DATA_SRC | SAMPLE_PHYS_ADDR
    if sample_type & SAMPLE_RAW and sample_type & after_raw:
        raise ValueError("fields after SAMPLE_RAW are not supported together with it")
    names, formats, offsets = [], [], []
    pos = 0

    def add(fields):
        nonlocal pos
        for name, fmt in fields:
            names.append(name)
            formats.append(fmt)
            offsets.append(pos)
            pos += np.dtype(fmt).itemsize

    add(_HEADER)
    for bit, fields in _BEFORE_RAW:
        if sample_type & bit:
            add(fields)
    if sample_type & SAMPLE_RAW:
        add([("raw_size", "<u4")])
        for name, fmt, off in raw_fields:
            names.append(name)
            formats.append(fmt)
            offsets.append(pos + off)
        if record_size is None:
            raise ValueError("record_size is needed with SAMPLE_RAW")
        pos = record_size
    for bit, fields in _AFTER_RAW:
        if sample_type & bit:
            add(fields)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})


def sample_id_time_from_end(sample_type: int) -> int | None:
    """Bytes from the end of a non-sample record back to its ``sample_id`` time (records
    carry ``sample_id`` with attr.sample_id_all: TID, TIME, ID, STREAM_ID, CPU, IDENTIFIER in
    that order, each present if sampled); None without SAMPLE_TIME."""
    if not sample_type & SAMPLE_TIME:
        return None
    after = (SAMPLE_ID, SAMPLE_STREAM_ID, SAMPLE_CPU, SAMPLE_IDENTIFIER)
    return 8 + 8 * sum(1 for b in after if sample_type & b)


def parse_records(buf: bytes, dtype_for_size, mmaps: list | None = None,
                  time_from_end: int | None = None) -> tuple[list[np.ndarray], dict[str, int]]:
    """Split a run of records into sample arrays and counters.

    Args:
        buf: whole records, as copied from the ring.
        dtype_for_size: callable giving the sample dtype for a record size in bytes.
        mmaps: if a list, every PERF_RECORD_MMAP is appended to it as ``(pid, start, end,
            time_ns)`` (time 0 unless ``time_from_end``, see :func:`sample_id_time_from_end`).
    Returns:
        ``(chunks, counts)``: structured arrays of samples (views into ``buf``), and counters
        ``lost`` (samples the kernel dropped), ``throttle``, ``unthrottle``, ``mmap``,
        ``other`` (records).
    """
    counts = {"lost": 0, "throttle": 0, "unthrottle": 0, "mmap": 0, "other": 0}
    chunks = []
    pos, end = 0, len(buf)
    hdr_dtype = np.dtype(_HEADER)
    while pos + 8 <= end:
        typ, _misc, size = struct.unpack_from("<IHH", buf, pos)
        if size < 8:
            break  # corrupt: never loop forever
        if typ == PERF_RECORD_SAMPLE:
            nmax = (end - pos) // size
            heads = np.ndarray((nmax,), dtype=hdr_dtype, buffer=buf, offset=pos, strides=(size,))
            same = (heads["type"] == PERF_RECORD_SAMPLE) & (heads["size"] == size)
            k = nmax if same.all() else int(np.argmin(same))
            chunks.append(np.ndarray((k,), dtype=dtype_for_size(size), buffer=buf, offset=pos))
            pos += k * size
            continue
        if typ == PERF_RECORD_LOST:
            counts["lost"] += struct.unpack_from("<Q", buf, pos + 16)[0]
        elif typ == PERF_RECORD_THROTTLE:
            counts["throttle"] += 1
        elif typ == PERF_RECORD_UNTHROTTLE:
            counts["unthrottle"] += 1
        elif typ == PERF_RECORD_MMAP:
            counts["mmap"] += 1
            if mmaps is not None and size >= 32:
                # struct { header; u32 pid, tid; u64 addr, len, pgoff; char filename[];
                #          struct sample_id }
                pid, _tid, addr, length = struct.unpack_from("<IIQQ", buf, pos + 8)
                t = (struct.unpack_from("<Q", buf, pos + size - time_from_end)[0]
                     if time_from_end and size >= 40 + time_from_end else 0)
                mmaps.append((pid, addr, addr + length, t))
        else:
            counts["other"] += 1
        pos += size
    return chunks, counts


class RingBuffer:
    """The mmap'd ring of one perf event fd.

    Args:
        fd: the perf event file descriptor (the output of any SET_OUTPUT followers).
        nr_data_pages: data pages, a power of two.
        page_size: bytes per page.
    """

    def __init__(self, fd: int, nr_data_pages: int, page_size: int = PAGE_SIZE):
        if nr_data_pages & (nr_data_pages - 1):
            raise ValueError("nr_data_pages must be a power of two")
        self.page_size = page_size
        self.data_size = nr_data_pages * page_size
        self._mm = mmap.mmap(fd, (1 + nr_data_pages) * page_size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        # the control page stays mapped while these exports live; the loads and the store
        # go through their addresses with acquire/release order
        self._head = ctypes.c_uint64.from_buffer(self._mm, _HEAD_OFFSET)
        self._tail = ctypes.c_uint64.from_buffer(self._mm, _TAIL_OFFSET)
        self._head_at = ctypes.addressof(self._head)
        self._tail_at = ctypes.addressof(self._tail)

    def drain(self) -> bytes:
        """Copy out every complete record the kernel has published, and free their space."""
        head = _syscalls.load_acquire_u64(self._head_at)
        tail = self._tail.value           # only we write it
        if head == tail:
            return b""
        start = self.page_size + tail % self.data_size
        n = head - tail
        first = min(n, self.page_size + self.data_size - start)
        data = self._mm[start : start + first]
        if first < n:
            data += self._mm[self.page_size : self.page_size + n - first]
        _syscalls.store_release_u64(self._tail_at, head)
        return data

    def close(self):
        if self._mm is not None:
            del self._head, self._tail  # release the buffer exports before unmapping
            self._mm.close()
            self._mm = None
