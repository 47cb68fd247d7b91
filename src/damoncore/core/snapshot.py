"""What the core hands to callbacks at every aggregation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TargetSnapshot:
    """One target's regions at an aggregation end (copies; safe to keep).

    ``nr_reports``: access reports kept for the target during the aggregation interval,
    per region (counted by their address; uint64), or None without the ``page_fault``
    primitive.  ``nr_accesses`` says in how many samples a region was accessed at all;
    ``nr_reports`` says how much: one report and ten thousand look the same to the former.
    ``report_addrs``: the addresses of those reports, sorted (uint64; None without the
    ``page_fault`` primitive): which pages were accessed, for policies that act on the
    pages a report named rather than on whole regions.  ``nr_accesses_bp``: the moving sum
    (uint32 basis points) where it matters, in :attr:`Snapshot.schemes_view` (None:
    ``nr_accesses * 10000``, as after the kernel's merge).
    """

    target_idx: int
    pid: object
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray
    nr_reports: np.ndarray | None = None
    report_addrs: np.ndarray | None = None
    nr_accesses_bp: np.ndarray | None = None


@dataclass
class Snapshot:
    """A context's monitoring result for one aggregation interval.

    Times are the context clock's microseconds: the aggregation interval is ``[start_us,
    end_us)``, from one aggregation's last sample boundary to the next, and the access
    reports counted in it are those made in it.  ``sample_us``/``aggr_us`` are the
    intervals in force (after auto-tuning); ``max_nr_accesses`` is ``aggr_us // sample_us``.

    ``targets`` are the regions at the aggregation's end, after the schemes applied (the
    kernel's ``damon_aggregated``: quota splits done, ages of regions acted upon reset).
    ``schemes_view``: when schemes applied at this aggregation, the regions as they saw them
    (after the merge, before any scheme; with ``nr_accesses_bp``), else None: what a replay
    of the schemes needs (:mod:`damoncore.replay`).  ``scheme_stats``: per scheme of the
    context, its cumulative counters at this snapshot, where a record carried them.
    ``schemes_committed``: where a record carried it, the last online commit (``tune``)
    since the previous snapshot: ``{"time_us", "sample_intervals"}`` (the context's clock
    and passed sample intervals when it ran) and ``"schemes"`` (kdamonds JSON), the schemes
    that applied at this aggregation.
    """

    start_us: int
    end_us: int
    sample_us: int
    aggr_us: int
    max_nr_accesses: int
    targets: list
    schemes_view: list | None = None
    scheme_stats: list | None = None
    schemes_committed: list | None = None

    def hot_bytes(self, min_nr_accesses: int) -> int:
        return int(sum(((t.end - t.start)[t.nr_accesses >= min_nr_accesses]).sum()
                       for t in self.targets))
