"""Access reports pushed by any reporter, and the sample filters that select them.

The user-space counterpart of the ``damon_report_access()`` RFC: perf page-fault samplers,
a GPU driver shim or a simulated workload push batches of (address, size, cpu, tid,
is_write, time); at the end of each sample interval the core takes the reports made before
that end (:meth:`ReportBuffer.take_before`), keeps those the sample filters allow, and
counts an access for every region that fully contains a kept report.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidConfig
from ..schemes.filters import filters_pass
from ..vocab import SampleFilterType


@dataclass(frozen=True)
class SampleFilter:
    """One sample filter (``damon_sample_filter``).

    ``filter_type``: ``cpumask`` (``cpus``), ``threads`` (``tids``) or ``write``.  A report
    matches when the test result equals ``matching``.  Filters are evaluated in order; the
    first that matches decides (``allow``); a report no filter matches gets the opposite of
    the last filter's ``allow``.
    """

    filter_type: SampleFilterType
    allow: bool = True
    matching: bool = True
    cpus: frozenset = frozenset()
    tids: frozenset = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "filter_type",
                           SampleFilterType.parse(self.filter_type, "sample filter type"))
        object.__setattr__(self, "cpus", frozenset(int(c) for c in self.cpus))
        object.__setattr__(self, "tids", frozenset(int(t) for t in self.tids))

    def has(self, batch: "ReportBatch") -> np.ndarray:
        """Per report: it has the filter's property (before ``matching``)."""
        if self.filter_type == SampleFilterType.CPUMASK:
            return np.isin(batch.cpu, np.fromiter(self.cpus, np.int64, len(self.cpus)))
        if self.filter_type == SampleFilterType.THREADS:
            return np.isin(batch.tid, np.fromiter(self.tids, np.int64, len(self.tids)))
        return batch.is_write.astype(bool)

    def matches(self, batch: "ReportBatch") -> np.ndarray:
        return self.has(batch) == self.matching


def filters_keep(filters, batch: "ReportBatch") -> np.ndarray:
    """Boolean mask of the reports the filters let through (first match wins, as for
    DAMOS filters)."""
    return filters_pass(filters, lambda f: f.has(batch), len(batch))


@dataclass
class ReportBatch:
    """Columns of access reports: byte address and size, cpu, tid, pid, write, time (us)."""

    addr: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    cpu: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    is_write: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    time_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self):
        return len(self.addr)

    def select(self, mask) -> "ReportBatch":
        return ReportBatch(*(getattr(self, c)[mask] for c in _COLS))

    @staticmethod
    def concat(batches) -> "ReportBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return ReportBatch()
        if len(batches) == 1:
            return batches[0]
        return ReportBatch(*(np.concatenate([getattr(b, c) for b in batches]) for c in _COLS))


_COLS = ("addr", "size", "cpu", "tid", "pid", "is_write", "time_us")


class ReportBuffer:
    """Thread-safe queue of report batches, drained once per sample interval."""

    def __init__(self, capacity: int = 1 << 22):
        self._lock = threading.Lock()
        self._batches = []
        self._nr = 0
        self.capacity = capacity
        self.nr_dropped = 0

    def push(self, addr, size=1, cpu=-1, tid=-1, pid=-1, is_write=False, time_us=0):
        addr = np.atleast_1d(np.asarray(addr, dtype=np.uint64))
        n = len(addr)

        def col(v, dt):
            a = np.asarray(v, dtype=dt)
            return np.full(n, a, dtype=dt) if a.ndim == 0 else a

        b = ReportBatch(addr, col(size, np.uint64), col(cpu, np.int64), col(tid, np.int64),
                        col(pid, np.int64), col(is_write, np.uint8), col(time_us, np.int64))
        for c in _COLS[1:]:
            if len(getattr(b, c)) != n:
                raise InvalidConfig(f"report column {c} has {len(getattr(b, c))} entries, "
                                    f"addr has {n}")
        with self._lock:
            if self._nr + n > self.capacity:
                # like the kernel's fixed report ring, an overflowing batch is dropped whole
                self.nr_dropped += n
                return
            self._batches.append(b)
            self._nr += n

    def pending(self) -> int:
        """Reports pushed and not drained yet."""
        return self._nr

    def drain(self) -> ReportBatch:
        """Every buffered report."""
        with self._lock:
            batches, self._batches, self._nr = self._batches, [], 0
        return ReportBatch.concat(batches)

    def take_before(self, time_us: int) -> ReportBatch:
        """The buffered reports made before ``time_us``; later ones stay buffered."""
        with self._lock:
            batch = ReportBatch.concat(self._batches)
            later = batch.time_us >= time_us
            if later.any():
                rest = batch.select(later)
                batch = batch.select(~later)
                self._batches, self._nr = [rest], len(rest)
            else:
                self._batches, self._nr = [], 0
        return batch
