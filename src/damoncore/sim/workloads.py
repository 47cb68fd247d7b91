"""Access model of the simulated machine: processes, accessors, access streams, phases.

A :class:`Workload` owns processes (pid, mappings, preferred node, optional exit time) and a
schedule of phases; each phase is a set of :class:`Stream`: one accessor touching one virtual
range at a mean rate (accesses per second per page) with a distribution over the range.
Overlapping streams add their rates.  Accesses are Poisson per page, except ``scan`` streams,
whose pointer sweeps the range once per ``period_us`` and touches exactly the pages it passes.

Times are microseconds relative to when the workload is added to a machine; sizes and
addresses are bytes and must be page aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidConfig

DEFAULT_BASE = 1 << 40          # first mapping of the builders, page and region aligned
DISTS = ("uniform", "zipf", "scan")
ZIPF_BUCKET_RATIO = 1.25        # zipf ranks are grouped in geometric buckets of this ratio


@dataclass(frozen=True)
class Accessor:
    """Something that touches memory: a CPU thread or a GPU-like device.

    ``node``: the NUMA node it runs on (its row of the latency matrix).  ``cpu``/``tid``
    are what its access reports carry.
    """

    name: str
    node: int
    cpu: int = -1
    tid: int = -1
    device: str = "cpu"


@dataclass(frozen=True)
class Stream:
    """``accessor`` touches ``[start, end)`` of process ``pid`` at ``rate`` accesses/s/page
    on average.  ``dist``: ``uniform``; ``zipf`` (page rank = order in the range, exponent
    ``zipf_s``, mean rate still ``rate``); ``scan`` (one sweep every ``period_us``).
    """

    accessor: Accessor
    pid: int
    start: int
    end: int
    rate: float
    dist: str = "uniform"
    zipf_s: float = 1.0
    period_us: int = 0

    def __post_init__(self):
        if self.dist not in DISTS:
            raise InvalidConfig(f"unknown stream distribution {self.dist!r} (known: {DISTS})")
        if self.end <= self.start or self.rate < 0:
            raise InvalidConfig(f"stream needs start < end and rate >= 0: {self}")
        if self.dist == "scan" and self.period_us <= 0:
            raise InvalidConfig("a scan stream needs period_us > 0")

    def pieces(self, page_size: int):
        """Piecewise-constant rate: ``(starts, ends, rates)``, bytes and accesses/s/page."""
        if self.dist != "zipf":
            return ([self.start], [self.end], [float(self.rate)])
        n = (self.end - self.start) // page_size
        k = np.arange(int(np.log(max(n, 1)) / np.log(ZIPF_BUCKET_RATIO)) + 2)
        edges = np.unique(np.minimum(np.round(ZIPF_BUCKET_RATIO ** k), n + 1).astype(np.int64))
        edges = np.unique(np.concatenate([[1], edges, [n + 1]]))
        mass = _zipf_mass(edges[:-1], edges[1:], self.zipf_s)
        total = _zipf_mass(np.array([1]), np.array([n + 1]), self.zipf_s)[0]
        npages = edges[1:] - edges[:-1]
        rates = self.rate * n * mass / total / npages
        starts = self.start + (edges[:-1] - 1) * page_size
        ends = self.start + (edges[1:] - 1) * page_size
        return starts.tolist(), ends.tolist(), rates.tolist()


def _zipf_mass(a, b, s):
    """Approximate sum of r**-s for ranks a <= r < b (midpoint integral)."""
    lo, hi = a - 0.5, b - 0.5
    if abs(s - 1.0) < 1e-9:
        return np.log(hi / lo)
    return (hi ** (1 - s) - lo ** (1 - s)) / (1 - s)


@dataclass(frozen=True)
class Mapping:
    """A virtual range ``[start, end)`` of a process.  ``node``: preferred node for
    first-touch (None: the process'); ``placement``: explicit ((nid, bytes), ...) filled in
    address order, the rest first-touch."""

    start: int
    end: int
    node: int | None = None
    placement: tuple = ()


@dataclass(frozen=True)
class Process:
    """A simulated process; ``exit_us``: when it exits (None: never); ``memcg``: its
    memory cgroup path (for memcg filters)."""

    pid: int
    mappings: tuple
    node: int = 0
    exit_us: int | None = None
    memcg: str = "/"


@dataclass
class Workload:
    """Processes plus a phase schedule ``[(time_us, streams), ...]`` sorted by time."""

    processes: list
    phases: list = field(default_factory=list)

    def __post_init__(self):
        self.phases = sorted(((int(t), tuple(s)) for t, s in self.phases), key=lambda p: p[0])
        maps = {p.pid: p.mappings for p in self.processes}
        for _, streams in self.phases:
            for s in streams:
                if not any(m.start <= s.start and s.end <= m.end for m in maps.get(s.pid, ())):
                    raise InvalidConfig(f"stream [{s.start:#x}, {s.end:#x}) of pid {s.pid} is "
                                        f"not inside one of its mappings")

    def __add__(self, other: "Workload") -> "Workload":
        """Run both (their phase schedules interleave; pids must differ or be shared)."""
        times = sorted({t for t, _ in self.phases} | {t for t, _ in other.phases})
        procs = {p.pid: p for p in list(self.processes) + list(other.processes)}
        return Workload(list(procs.values()),
                        [(t, self.streams_at(t) + other.streams_at(t)) for t in times])

    def streams_at(self, t_us: int) -> tuple:
        """Streams in force at ``t_us`` (relative time)."""
        cur = ()
        for t, s in self.phases:
            if t > t_us:
                break
            cur = s
        return cur

    # --- builders ------------------------------------------------------------------------
    @classmethod
    def hot_cold(cls, size, hot_start, hot_size, hot_rate=500.0, cold_rate=0.1, pid=1000,
                 base=DEFAULT_BASE, node=0, accessor=None, exit_us=None):
        """One process, one mapping of ``size`` bytes at ``base``; the whole mapping is
        touched at ``cold_rate`` and ``[base+hot_start, +hot_size)`` additionally at
        ``hot_rate`` (accesses/s/page).  ``node``: where its memory is first touched (a
        CPU-less node works) and, without ``accessor``, where the accessing thread runs."""
        return cls.moving_hot(size, hot_size, [(0, hot_start)], hot_rate, cold_rate, pid,
                              base, node, accessor, exit_us)

    @classmethod
    def moving_hot(cls, size, hot_size, moves, hot_rate=500.0, cold_rate=0.1, pid=1000,
                   base=DEFAULT_BASE, node=0, accessor=None, exit_us=None):
        """Like :meth:`hot_cold`, the hot range starting at offset ``off`` from ``t_us`` on,
        for each ``(t_us, off)`` of ``moves``."""
        acc = accessor or Accessor(f"cpu{node}", node, cpu=0, tid=pid)
        proc = Process(pid, (Mapping(base, base + size),), node=node, exit_us=exit_us)
        phases = []
        for t, off in moves:
            streams = [Stream(acc, pid, base + off, base + off + hot_size, hot_rate)]
            if cold_rate > 0:
                streams.append(Stream(acc, pid, base, base + size, cold_rate))
            phases.append((t, streams))
        return cls([proc], phases)

    @classmethod
    def uniform(cls, size, rate=0.1, pid=1000, base=DEFAULT_BASE, node=0, accessor=None):
        """One mapping of ``size`` bytes touched uniformly at ``rate`` (e.g. cold data
        filling a node)."""
        acc = accessor or Accessor(f"cpu{node}", node, cpu=0, tid=pid)
        proc = Process(pid, (Mapping(base, base + size),), node=node)
        return cls([proc], [(0, [Stream(acc, pid, base, base + size, rate)])])

    @classmethod
    def zipf(cls, size, rate=50.0, s=1.0, pid=1000, base=DEFAULT_BASE, node=0, accessor=None):
        """One mapping touched with Zipf(``s``) popularity by page order, mean ``rate``."""
        acc = accessor or Accessor(f"cpu{node}", node, cpu=0, tid=pid)
        proc = Process(pid, (Mapping(base, base + size),), node=node)
        return cls([proc], [(0, [Stream(acc, pid, base, base + size, rate, "zipf", s)])])

    @classmethod
    def multi(cls, accessors, private_size, shared_size, private_rate=200.0,
              shared_rate=50.0, pid=1000, base=DEFAULT_BASE):
        """One process used by several accessors (CPU threads, GPU-like devices): each gets
        a private range first-touched on its own node; all share one range first-touched on
        the first accessor's node."""
        maps, streams = [], []
        for i, a in enumerate(accessors):
            lo = base + i * private_size
            maps.append(Mapping(lo, lo + private_size, node=a.node))
            streams.append(Stream(a, pid, lo, lo + private_size, private_rate))
        lo = base + len(accessors) * private_size
        maps.append(Mapping(lo, lo + shared_size, node=accessors[0].node))
        streams += [Stream(a, pid, lo, lo + shared_size, shared_rate) for a in accessors]
        proc = Process(pid, tuple(maps), node=accessors[0].node)
        return cls([proc], [(0, streams)])
