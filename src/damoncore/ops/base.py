"""The ops contract: every hook the core may call on an address-space backend.

Mirrors the kernel's ``struct damon_operations`` (include/linux/damon.h): one table, each
hook with a default here, overridden by a backend where it has something to add.  The core
(:mod:`damoncore.core`, :mod:`damoncore.schemes`) calls these and nothing else: it never
probes a backend for attributes by name and never asks which backend it is.  The backends
(:mod:`~damoncore.ops.sim`, ``paddr``, ``vaddr``, ``perf``) sit above the core; this module
sits with it (the kernel's header), importing only the core's own layer and below.

Callbacks, in the order the monitoring loop calls them (:class:`~damoncore.core.Kdamond`):

=========================  =======================================  ============================
hook                       called                                   default
=========================  =======================================  ============================
``init(ctx)``              once, before the first sample: give      nothing (targets keep the
                           targets their ranges (``t.ranges``)      ranges the user gave)
``update(ctx)``            every ``Attrs.ops_update_us``: refresh   nothing
                           target ranges (vaddr: /proc/PID/maps)
``prepare_access_checks``  start of every sample (``page_table``    nothing
``(ctx)``                  primitive), after the core picked
                           ``regions.sampling_addr``: clear their
                           accessed state (mkold, mark idle)
``check_accesses(ctx)``    end of every sample: per target, a       nothing was accessed (a
                           uint8 array, 1 per region whose          backend fed only by access
                           sampling address was accessed            reports)
``target_valid(target)``   before each sample's checks; False ends  True
                           monitoring of the target
``get_scheme_score(ctx,``  when a scheme has a quota: per region,   damon_hot_score() for
``target, scheme)``        0..MAX_SCORE, how much the scheme        actions on hot memory,
                           should act there first (uint8 array)     damon_cold_score() for
                                                                    cold ones, else MAX_SCORE
``apply_scheme(ctx,``      when a scheme acts on a target: the      nothing applied
``target, scheme, starts,  quota-trimmed, core-filtered ranges
ends, ops_filters)``       (bytes); evaluate the ops filters page
                           by page, act on what passes
``apply_time_ns(``         after each ``apply_scheme``: the time    the wall time measured
``sz_tried, measured_ns)`` it charges to a time quota               around the call
``node_bytes(ctx, target,`` for ``node_eligible_mem_bp`` goals:      summed from ``node_ranges``
``starts, ends)``          ``{nid: bytes}`` of the ranges' present  (None: cannot tell)
                           memory by the node holding it
``metric(name, nid,``      when a quota goal or watermark needs     the host's /proc and /sys
``memcg_path)``            its current value                        under this backend's roots
``translate_reports(pid,`` when a reporter (perf) hands in faults   the identity (targets are
``addrs)``                 at virtual addresses of process ``pid``  virtual address spaces)
``cleanup(ctx)``           once, when monitoring ends               nothing
=========================  =======================================  ============================

Queries a policy may make (never called by the core; the defaults say "unknown"):

=========================  =======================================  ============================
``node_ranges(ctx,``       which node holds each present part of    None (cannot tell)
``target, starts, ends)``  the ranges: ``(s, e, node)`` arrays
``page_keys(ctx, target,`` a stable identity of the page at each    None (cannot tell)
``addrs)``                 address, the same after the page
                           migrates (``KEY_NONE`` where unknown)
=========================  =======================================  ============================

Attributes the core reads (class attributes; a backend may set them per instance):

- ``name``: for messages only (never dispatched on).
- ``space``: the kernel's ``damon_ops_id`` spelled as damo's ``ops`` (``"paddr"``,
  ``"vaddr"``, ``"fvaddr"``): the address space the targets' addresses are in.
- ``supported_actions`` (:class:`~damoncore.vocab.Action`\\ s) and ``supported_filters``
  (ops :class:`~damoncore.vocab.FilterType`\\ s it evaluates): a scheme asking for
  anything else is refused when it is installed.
- ``page_size``: bytes per page of the address space: the default ``min_region`` and the
  unit of page counts (migrated pages).
- ``clock``: ``now_us()`` and ``sleep_us(us)``; a simulated backend brings its virtual
  clock, real ones keep :class:`RealClock`.
- ``procfs_root``, ``sysfs_root``, ``cgroupfs_root``: where this backend reads the system
  (fixture trees in tests); the default :meth:`Operations.metric` reads there too.
- ``translates_reports``: :meth:`translate_reports` maps addresses after the access, so a
  reporter must drop reports whose address was mapped anew in between (perf records new
  mappings for that).

Native sample path (default: not offered): ``native_sampler(ctx)``, called at every sample
begin on a real clock, returns None or an object whose ``run(ctx, targets, max_ends,
until_us, wake_fd, end_due, due_us, rows)`` does in C what ``prepare_access_checks``, the
wait and ``check_accesses`` + the counter update do, for up to ``max_ends`` samples in a row,
and returns a :class:`NativeRun` (or None: use the generic path this time).  It leaves one
sample begun for the generic ``check_accesses`` to end, or, with ``end_due``, ends that one
too (``NativeRun.ended``) for the core to finish.  ``rows`` (None, or per target of
``targets`` a :class:`~damoncore.core.adaptation.SampleRows`): at every sample it ends, it
writes the sampling addresses and accessed flags into row ``k`` of each (while ``k`` is
under the buffer's length) and advances ``k``, as the adaptation's ``sampled`` hook would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..arrays import unique
from ..linux.system import PAGE_SIZE
from ..schemes.metrics import HostMetrics
from ..schemes.quota import action_scores
from ..vocab import Action, FilterType

#: a page key the backend could not tell (:meth:`Operations.page_keys`)
KEY_NONE = (1 << 64) - 1


class RealClock:
    """Wall-clock time (CLOCK_MONOTONIC); sleeping really sleeps."""

    @staticmethod
    def now_us() -> int:
        return time.monotonic_ns() // 1000

    @staticmethod
    def sleep_us(us: int) -> None:
        if us > 0:
            time.sleep(us / 1e6)


@dataclass
class ApplyResult:
    """What one ``apply_scheme`` call did.

    ``sz_applied``: bytes the action really took effect on (pages actually migrated, not
    tried).  ``sz_ops_filter_passed``: bytes that passed the backend's (ops) filters.
    ``migrated``: {(src_nid, dst_nid): bytes} actually moved, for promote/demote accounting.
    ``nr_failed``: {reason: pages} for pages the kernel (or simulation) refused to act on.
    ``region_sz_applied``: optional per-range bytes applied (same order as the ``starts``
    passed in), so the per-region ``nr_applied`` counter is exact; when left None, every
    range counts as applied if ``sz_applied`` > 0.
    """

    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    migrated: dict = field(default_factory=dict)
    nr_failed: dict = field(default_factory=dict)
    region_sz_applied: object = None

    def add(self, other: "ApplyResult") -> None:
        self.sz_applied += other.sz_applied
        self.sz_ops_filter_passed += other.sz_ops_filter_passed
        for k, v in other.migrated.items():
            self.migrated[k] = self.migrated.get(k, 0) + v
        for k, v in other.nr_failed.items():
            self.nr_failed[k] = self.nr_failed.get(k, 0) + v


@dataclass
class NativeRun:
    """What one native run did (see ``Operations.native_sampler``).

    ``nr_ends``: samples ended (counters updated) in C.  ``begin_us``/``deadline_us``: when
    the sample it left begun started, and when that sample ends.  ``check_us``: when the last
    native end started (no access report was pending then).  ``max_nr_accesses``: the max
    over the targets after the last native end.  ``ended``: the run's last step was an end
    (of a sample with Python-side work due); no sample is begun.
    """

    nr_ends: int
    begin_us: int
    deadline_us: int
    check_us: int = 0
    max_nr_accesses: int = 0
    ended: bool = False


class Operations:
    """Base class of the ops backends: the table above, every hook at its default.

    Subclasses override what they implement; the core calls every hook of this class
    directly, so a backend never needs to provide more than it has.
    """

    name = "none"
    space = "paddr"
    supported_actions: frozenset = frozenset({Action.STAT})
    supported_filters: frozenset = frozenset()
    page_size: int = PAGE_SIZE
    clock = RealClock()
    procfs_root = "/proc"
    sysfs_root = "/sys"
    cgroupfs_root = "/sys/fs/cgroup"
    translates_reports = False

    # --- monitoring ----------------------------------------------------------------------
    def init(self, ctx) -> None:
        """Before the first sample: give each target without regions its ``ranges``."""

    def update(self, ctx) -> None:
        """Every ops update interval: refresh the targets' ranges."""

    def prepare_access_checks(self, ctx) -> None:
        """Start of a sample: clear the accessed state of every ``sampling_addr``."""

    def check_accesses(self, ctx) -> list:
        """End of a sample: per target (``ctx.targets`` order), a uint8 array with 1 for
        each region whose sampling address was accessed since the prepare.  Default:
        nothing was accessed (a backend fed only by access reports)."""
        return [np.zeros(t.regions.nr, dtype=np.uint8) for t in ctx.targets]

    def target_valid(self, target) -> bool:
        """False once the target is gone (its process exited); it is then dropped."""
        return True

    def cleanup(self, ctx) -> None:
        """When monitoring ends: release what ``init`` and the samples opened."""

    # --- schemes -------------------------------------------------------------------------
    def get_scheme_score(self, ctx, target, scheme) -> np.ndarray:
        """Per region of ``target``, 0..MAX_SCORE (uint8): how much ``scheme`` should act
        there before elsewhere when its quota is short.  Default: damon_hot_score() for
        actions on hot memory (migrate_hot, lru_prio, willneed, hugepage),
        damon_cold_score() for actions on cold memory (migrate_cold, pageout, cold,
        lru_deprio, nohugepage), MAX_SCORE for the rest (stat)."""
        return action_scores(ctx, scheme, target.regions)

    def apply_scheme(self, ctx, target, scheme, starts, ends,
                     ops_filters=None) -> ApplyResult:
        """Act on the pages of ``[starts[i], ends[i])`` (bytes, uint64 arrays, one target's
        quota-trimmed ranges the core filters let through, in address order) that pass
        the ops filters: ``ops_filters`` (:class:`~damoncore.schemes.scheme.Filter`\\ s of
        ``supported_filters``) when given, else ``scheme.ops_filters``.  The core gives an
        empty list for ranges a core filter allowed, whose pages the kernel does not filter
        again (``core_filters_allowed``).  Nothing outside the ranges may be touched.
        Default: nothing applied."""
        return ApplyResult()

    def apply_time_ns(self, sz_tried: int, measured_ns: int) -> int:
        """The time one ``apply_scheme`` call charges to a time quota (``quota.time_ms``):
        by default the wall time measured around it; a backend that only models its
        actions (a replay) returns its model's time for ``sz_tried`` bytes instead."""
        return measured_ns

    def node_bytes(self, ctx, target, starts, ends):
        """``{nid: bytes}`` of the present memory of ``target``'s ranges ``[starts, ends)``
        by the node holding it (``node_eligible_mem_bp`` goals).  Default: summed from
        :meth:`node_ranges`; None when that cannot tell."""
        got = self.node_ranges(ctx, target, starts, ends)
        if got is None:
            return None
        s, e, node = (np.asarray(x) for x in got)
        sz = e.astype(np.uint64) - s.astype(np.uint64)
        return {int(n): int(sz[node == n].sum()) for n in unique(node)}

    # --- queries for policies (the core never calls these) -------------------------------
    def node_ranges(self, ctx, target, starts, ends):
        """Which node holds the memory of ``target``'s ranges ``[starts, ends)`` (bytes,
        sorted, disjoint): ``(s, e, node)`` arrays (uint64, uint64, int64) of the present
        parts, in address order, each on one node; pages not present are left out.
        Default None: the backend cannot tell."""
        return None

    def page_keys(self, ctx, target, addrs):
        """A key (uint64) per address of ``target`` naming the page there, unchanged when
        the page migrates (a physical target: its owner and virtual page; a virtual one:
        the virtual page); ``KEY_NONE`` where unknown.  Keys count pages: the next page of
        the owner's address space has the next key.  Default None: the backend cannot
        tell (a policy's per-address history then restarts at a migrated page's new
        frame)."""
        return None

    # --- system --------------------------------------------------------------------------
    def metric(self, name, nid=None, memcg_path=None) -> int:
        """Current value of a quota goal or watermark metric (a
        :class:`~damoncore.vocab.GoalMetric` or ``free_mem_rate``): basis points for the
        ``*_bp`` ones, permil for ``free_mem_rate``; also ``node_mem_total_bytes`` (bytes)
        and ``some_mem_psi_total_us`` (the running PSI total; each goal keeps its own last
        total, so ``some_mem_psi_us`` is that goal's delta, as in the kernel).  Default:
        the host, read under this backend's ``sysfs_root``/``procfs_root``/
        ``cgroupfs_root``."""
        return HostMetrics(self.sysfs_root, self.procfs_root,
                           self.cgroupfs_root).metric(name, nid=nid, memcg_path=memcg_path)

    def translate_reports(self, pid, addrs):
        """``(addrs, kept)`` for access reports at virtual addresses ``addrs`` (uint64) of
        processes ``pid`` (int array, same length): the reports' addresses in this
        backend's target address space and a bool mask of those it could translate.
        Default: the identity."""
        addrs = np.asarray(addrs, np.uint64)
        return addrs, np.ones(len(addrs), bool)

    # --- optional native sample path -----------------------------------------------------
    def native_sampler(self, ctx):
        """The native sample path for ``ctx``, or None: not offered (the default; Python
        backends such as sim and perf keep the generic per-sample path)."""
        return None
