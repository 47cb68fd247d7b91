"""The ops protocol: what an address-space backend provides to the core.

Mirrors the kernel's ``struct damon_operations`` (include/linux/damon.h).  The core
(:mod:`damoncore.core.context`) calls these, in this order, from its monitoring loop:

- ``init(ctx)`` once, before the first sample: give every target its initial regions
  (``target.set_regions(...)``) unless the user already did.
- ``update(ctx)`` every ops update interval: refresh target ranges (vaddr: /proc/PID/maps).
- ``prepare_access_checks(ctx)`` at the start of every sample interval: the core has already
  picked ``regions.sampling_addr`` for every target; the backend clears the accessed state of
  those addresses (mkold / mark idle).
- ``check_accesses(ctx)`` at the end of every sample interval: returns, per target (in
  ``ctx.targets`` order), a ``numpy.uint8`` array with one entry per region, 1 if the
  region's sampling address was accessed since ``prepare_access_checks``.
- ``apply_scheme(ctx, target, scheme, starts, ends)`` when a scheme acts on regions: the
  arrays hold the (already quota-trimmed, core-filtered) ranges of one target; returns an
  :class:`ApplyResult`.  Ops filters (anon, young, ...) are the backend's job.
- ``target_valid(target)`` before each sample: False ends monitoring of that target.
- ``cleanup(ctx)`` once, when monitoring ends.

Queries policies may make (never called by the core; defaults say "unknown"):

- ``node_ranges(ctx, target, starts, ends)``: which node holds each part of the ranges.
- ``page_keys(ctx, target, addrs)``: a stable identity of the page at each address, the
  same after the page migrates (so a policy's history of a page survives its move).

Optional attributes the core looks for:

- ``clock``: an object with ``now_us()`` and ``sleep_us(us)``.  The simulated backend
  provides a virtual clock so simulations run faster than real time; real backends leave it
  out and the core uses :class:`RealClock`.
- ``supported_actions``: a set of action names; a scheme with another action is refused at
  install time (:class:`damoncore.errors.ActionNotSupported`).
- ``metric(name, nid=None, memcg_path=None)``: current value of a DAMOS quota goal metric,
  so that goals read the backend's own memory (the simulated machine reports its own node
  usage).  Returns an int (basis points, or microseconds for ``some_mem_psi_us``).

Native sample path (declared below, default: not offered):

- ``native_sampler(ctx)`` at every sample begin on a real clock: None, or an object whose
  ``run(ctx, targets, max_ends, until_us, wake_fd, end_due, due_us)`` does in C what
  ``prepare_access_checks``, the wait and ``check_accesses`` + the counter update do, for up
  to ``max_ends`` samples in a row, and returns a :class:`NativeRun` (or None: use the generic
  path this time).  It leaves one sample begun for the generic ``check_accesses`` to end, or,
  with ``end_due``, ends that one too (``NativeRun.ended``) for the core to finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


#: a page key the backend could not tell (:meth:`Operations.page_keys`)
KEY_NONE = (1 << 64) - 1


class RealClock:
    """Wall-clock time; sleeping really sleeps."""

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
    """Base class for ops backends; every callback defaults to doing nothing.

    Subclasses set ``name`` (``"sim"``, ``"paddr"``, ``"vaddr"``, ``"perf"``) and override
    what they implement.  The core never imports a backend: it only calls this interface.
    """

    name = "none"
    supported_actions: frozenset = frozenset({"stat"})

    def init(self, ctx) -> None:
        pass

    def update(self, ctx) -> None:
        pass

    def prepare_access_checks(self, ctx) -> None:
        pass

    def check_accesses(self, ctx) -> list:
        """Default: nothing was accessed (a backend fed only by access reports)."""
        return [np.zeros(t.regions.nr, dtype=np.uint8) for t in ctx.targets]

    def apply_scheme(self, ctx, target, scheme, starts, ends) -> ApplyResult:
        return ApplyResult()

    def target_valid(self, target) -> bool:
        return True

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

    def cleanup(self, ctx) -> None:
        pass

    def native_sampler(self, ctx):
        """The native sample path for ``ctx``, or None: not offered (the default; Python
        backends such as sim and perf keep the generic per-sample path)."""
        return None
