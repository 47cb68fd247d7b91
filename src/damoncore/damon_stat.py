"""DAMON_STAT's summary of a monitoring result (mm/damon/stat.c, kernel 6.17).

The kernel's DAMON_STAT module monitors all system RAM and exposes two numbers a fleet can
aggregate and compare; :func:`summarize` computes them, as stat.c does, from one
aggregation's regions (any context's: a snapshot, a record, a live context):

- ``estimated_memory_bandwidth`` (bytes per second): the bytes the sampled accesses stand
  for, ``sum(size * nr_accesses) * 1e6 / aggr_interval_us``
  (``damon_stat_set_estimated_memory_bandwidth()``);
- ``memory_idle_ms_percentiles`` (101 values, ms): each region's idle time is ``age + 1``
  aggregations when it was not accessed, ``-(age + 1)`` when it was (how long it has been
  hot, as a negative number); regions sorted by it, percentile ``p`` is the idle time of the
  region at which the accounted bytes reach ``p`` percent of the total
  (``damon_stat_set_idletime_percentiles()``; integer arithmetic as the kernel's, the ms
  conversion truncating toward zero);
- ``aggr_interval_us``: the aggregation interval the values come from (6.18 exports it,
  since intervals auto-tuning changes it).

stat.c refreshes these at most every 5 s from whatever sample the kdamond is at; over a
record each snapshot's complete aggregation is summarized instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidConfig

USEC_PER_MSEC = 1000
USEC_PER_SEC = 1000 * USEC_PER_MSEC
NR_PERCENTILES = 101


@dataclass
class StatSummary:
    """The DAMON_STAT module parameters for one aggregation."""

    estimated_memory_bandwidth: int
    memory_idle_ms_percentiles: list
    aggr_interval_us: int


def _div_trunc(a: int, b: int) -> int:
    """C's signed division (toward zero), as stat.c's ``long`` arithmetic does."""
    q = abs(a) // b
    return -q if a < 0 else q


def summarize(targets, aggr_us: int) -> StatSummary:
    """The summary of the regions of ``targets`` (objects with ``start``, ``end``,
    ``nr_accesses``, ``age`` arrays: :class:`~damoncore.core.snapshot.TargetSnapshot` or
    :class:`~damoncore.core.regions.Regions`), monitored with aggregation interval
    ``aggr_us`` (microseconds)."""
    if aggr_us <= 0:
        raise InvalidConfig(f"aggregation interval {aggr_us} us: must be above 0")
    starts = [np.asarray(t.start, np.uint64) for t in targets]
    if not starts or not sum(len(s) for s in starts):
        raise InvalidConfig("no region to summarize")
    start = np.concatenate(starts)
    end = np.concatenate([np.asarray(t.end, np.uint64) for t in targets])
    nr = np.concatenate([np.asarray(t.nr_accesses, np.int64) for t in targets])
    age = np.concatenate([np.asarray(t.age, np.int64) for t in targets])
    size = (end - start).astype(object)            # exact: sizes * counts can pass 2^64
    access_bytes = int(np.dot(size, nr.astype(object)))
    bandwidth = access_bytes * USEC_PER_SEC // aggr_us
    idle = np.where(nr > 0, -(age + 1), age + 1)
    order = np.argsort(idle, kind="stable")
    total = int(size.sum())
    out, accounted, nxt = [], 0, 0
    for i in order:
        accounted += int(size[i])
        while nxt < NR_PERCENTILES and nxt <= accounted * 100 // total:
            out.append(_div_trunc(int(idle[i]) * aggr_us, USEC_PER_MSEC))
            nxt += 1
    return StatSummary(bandwidth, out, aggr_us)


def summarize_snapshots(snapshots) -> StatSummary:
    """The summary of one aggregation given as snapshots of its targets (a record keeps
    one per target); their aggregation interval is the first's."""
    snaps = list(snapshots)
    return summarize([t for s in snaps for t in s.targets], snaps[0].aggr_us)
