"""Page-fault access reports from perf: an ops backend wrapping another one.

:class:`PerfOps` delegates every ops callback to ``base_ops`` (vaddr by default) and feeds
the context's ``page_fault`` primitive: samples of a :class:`PageFaultSampler` become
``ctx.report_access(addr, size=1, cpu, tid, pid, is_write, time_us)`` reports.  Rings are
drained at every ``check_accesses`` (once per sample interval, before the core consumes the
reports) and, between checks, by a thread that sleeps in poll() until a ring reaches its
watermark (a quarter ring), so long sample intervals do not overflow the rings.  Times are
CLOCK_MONOTONIC, the core's real clock (``monotonic_ns() // 1000``).

Fault addresses are virtual: the base backend's ``translate_reports`` hook puts them in its
targets' address space at drain time (a vaddr base keeps them, the core matching ``pid``; a
paddr base reads /proc/PID/pagemap), and faults it cannot translate (pages no longer
present) are dropped, counted in ``nr_untranslated``.  A base that ``translates_reports``
after the fact also gets the processes' new mappings recorded (PERF_RECORD_MMAP): a fault
whose address was mapped anew between the fault and the drain would translate to a frame
it never touched (freed memory reused by another allocation, maybe on another node), so it
is dropped, counted in ``nr_remapped`` (see :func:`~damoncore.linux.perf.remapped_after`); a
mapping is recorded on the CPU that made it, so with ``cpus`` a subset of the online CPUs,
mmap-only (dummy) events cover the others.
Page faults only happen on first touch, after
reclaim, migration or NUMA hinting: a page touched steadily reports nothing.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..errors import InvalidConfig
from ..linux.perf import (DEFAULT_SAMPLE_PERIOD, PERF_COUNT_SW_DUMMY, PageFaultSampler,
                          online_cpus, remapped_after)
from .base import KEY_NONE, Operations
from .vaddr import VaddrOps


def clock_offset_us(clock) -> int:
    """What to add to a CLOCK_MONOTONIC time (us) to get ``clock``'s time.

    The clock is read between two monotonic reads: a clock inside that bracket is the
    monotonic clock itself, offset 0.  (Subtracting one read from the other would be off
    by one microsecond whenever the microsecond ticks between them, and move a sample
    made at an aggregation's edge into the aggregation before.)"""
    m0 = time.monotonic_ns() // 1000
    c = clock.now_us()
    m1 = time.monotonic_ns() // 1000
    return 0 if m0 <= c <= m1 else c - m1


class PerfOps(Operations):
    """Ops backend ``base_ops`` plus perf page-fault reports.

    ``pid``: process to sample (default: the pid of each target, one sampler each; neither
    pid nor target pids: ``cgroup`` or the whole system).  ``cpus``: CPUs to open events on
    (default all).  ``sample_period``: faults per sample (default 3: sampling every fault
    slows a fault-bound process ~28% here, every 3rd 12.7%).  ``event``: ``"page-faults"`` (the
    software event) or ``"tracepoint"`` (exceptions:page_fault_user, which tells writes).
    ``ring_pages``: data pages per CPU ring.  ``drain_thread``: drain on watermark wakeups
    between checks.  ``taps``: callables receiving each raw sample dict (for recording).
    ``exclude_self``: drop the faults of this (the monitoring) process, counted in
    ``nr_self_dropped``; default (None): unless this process is one sampled by pid.  Its
    numpy arrays come and go all the time: with a system-wide or cgroup scope their faults
    would make regions hot that nobody else uses (in the 4-node guest they dragged another
    thread's pages to the other socket).

    ``lost`` (samples the kernel dropped on full rings) and ``throttled`` (PERF_RECORD_THROTTLE
    records) count over the whole run and stay readable after cleanup.
    """

    name = "perf"

    def __init__(self, base_ops=None, pid=None, cgroup=None, cpus=None,
                 sample_period=DEFAULT_SAMPLE_PERIOD,
                 event="page-faults", ring_pages=256, drain_thread=True, procfs_root="/proc",
                 sysfs_root="/sys", exclude_self=None):
        if event not in ("page-faults", "tracepoint"):
            raise InvalidConfig(f"perf event must be page-faults or tracepoint, got {event!r}")
        self.base = base_ops if base_ops is not None else VaddrOps(procfs_root, sysfs_root)
        self.pid, self.cgroup, self.cpus = pid, cgroup, cpus
        self.sample_period, self.event, self.ring_pages = sample_period, event, ring_pages
        self.drain_thread, self.procfs_root, self.sysfs_root = drain_thread, procfs_root, sysfs_root
        self.samplers = []
        self.mmap_trackers = []   # dummy events on the CPUs the samplers leave out
        self.taps = []
        self.nr_samples = 0
        self.nr_untranslated = 0
        self.nr_remapped = 0
        self.nr_self_dropped = 0
        self.exclude_self = exclude_self
        self._self_pid = None
        self._prev_mmaps = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._ctx = None
        self._clock_offset_us = 0
        self._lost_closed = 0
        self._keys = (np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
        self._key_batches = []
        self._nr_key_batched = 0
        self._throttled_closed = 0

    # --- the base's address space and limits -----------------------------------------------
    @property
    def space(self):
        return self.base.space

    @property
    def supported_actions(self):
        return self.base.supported_actions

    @property
    def supported_filters(self):
        return self.base.supported_filters

    @property
    def page_size(self):
        return self.base.page_size

    @property
    def clock(self):
        return self.base.clock

    @property
    def lost(self) -> int:
        """Samples the kernel dropped (full rings), over all samplers, for the whole run."""
        return self._lost_closed + sum(s.lost for s in self.samplers)

    @property
    def throttled(self) -> int:
        """PERF_RECORD_THROTTLE records seen, over all samplers, for the whole run."""
        return self._throttled_closed + sum(s.throttled for s in self.samplers)

    # --- lifecycle -----------------------------------------------------------------------
    def _sampler(self, **scope):
        kw = dict(cpus=self.cpus, sample_period=self.sample_period, ring_pages=self.ring_pages,
                  procfs_root=self.procfs_root, sysfs_root=self.sysfs_root,
                  track_mmaps=self.base.translates_reports)
        if self.event == "tracepoint":
            return PageFaultSampler.tracepoint(**scope, **kw)
        return PageFaultSampler(**scope, **kw)

    def init(self, ctx) -> None:
        if "page_fault" not in ctx.primitives:
            raise InvalidConfig("PerfOps feeds the page_fault primitive; create the context "
                                "with primitives=('page_fault',) (or both)")
        self.base.init(ctx)
        self._ctx = ctx
        self._clock_offset_us = clock_offset_us(ctx.clock)
        if self.pid is not None:
            scopes = [{"pid": self.pid}]
        elif self.cgroup is None and any(t.pid is not None for t in ctx.targets):
            scopes = [{"pid": p} for p in sorted({t.pid for t in ctx.targets
                                                   if t.pid is not None})]
        else:
            scopes = [{"cgroup": self.cgroup}] if self.cgroup is not None else [{}]
        me = os.getpid()
        exclude = self.exclude_self
        if exclude is None:
            exclude = all(sc.get("pid") != me for sc in scopes)
        self._self_pid = me if exclude else None
        try:
            for sc in scopes:
                self.samplers.append(self._sampler(**sc).open())
            if self.base.translates_reports and self.cpus is not None:
                others = sorted(set(online_cpus(self.sysfs_root)) - set(self.cpus))
                for sc in scopes if others else ():
                    self.mmap_trackers.append(PageFaultSampler(
                        **sc, cpus=others, config=PERF_COUNT_SW_DUMMY, sample_period=1,
                        ring_pages=self.ring_pages, procfs_root=self.procfs_root,
                        sysfs_root=self.sysfs_root, track_mmaps=True).open())
        except BaseException:
            self._close_samplers()
            raise
        if self.drain_thread:
            self._stop.clear()
            self._thread = threading.Thread(target=self._drain_loop, name="perf-drain",
                                            daemon=True)
            self._thread.start()

    def cleanup(self, ctx) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.drain()
        self._close_samplers()
        self.base.cleanup(ctx)

    def _close_samplers(self):
        for s in self.samplers:
            self._lost_closed += s.lost
            self._throttled_closed += s.throttled
            s.close()
        for s in self.mmap_trackers:
            s.close()
        self.samplers, self.mmap_trackers = [], []

    # --- draining ------------------------------------------------------------------------
    def _drain_loop(self):
        while not self._stop.is_set():
            woke = any(s.wait(0.05) for s in self.samplers[:1]) or \
                any(s.wait(0) for s in self.samplers[1:])
            if woke:
                self.drain()

    def drain(self) -> int:
        """Move every pending sample into the context's reports; returns the count."""
        ctx = self._ctx
        if ctx is None:
            return 0
        n = 0
        with self._lock:
            reads = [s.read() for s in self.samplers]
            mmaps = None
            if any(s.track_mmaps for s in self.samplers):
                # after the samples: a mapping made before the last sample read is seen
                for s in self.mmap_trackers:
                    s.read()
                parts = [s.take_mmaps() for s in self.samplers + self.mmap_trackers]
                mmaps = {k: np.concatenate([m[k] for m in parts]) for k in parts[0]}
                # and the previous drain's: a fault written to its ring just after that
                # drain read the ring may predate a mapping the drain read on another CPU
                prev, self._prev_mmaps = self._prev_mmaps, mmaps
                if prev is not None:
                    mmaps = {k: np.concatenate([prev[k], mmaps[k]]) for k in mmaps}
            for got in reads:
                if not len(got["addr"]):
                    continue
                for tap in self.taps:
                    tap(got)
                n += len(got["addr"])
                if self._self_pid is not None:
                    mine = got["pid"] == self._self_pid
                    if mine.any():
                        self.nr_self_dropped += int(mine.sum())
                        got = {k: v[~mine] for k, v in got.items()}
                if mmaps is not None:
                    stale = remapped_after(got, mmaps)
                    if stale.any():
                        self.nr_remapped += int(stale.sum())
                        got = {k: v[~stale] for k, v in got.items()}
                addr, keep = self._translate(got)
                t_us = (got["time_ns"] // 1000).astype(np.int64) + self._clock_offset_us
                ctx.report_access(addr, 1, cpu=got["cpu"][keep], tid=got["tid"][keep],
                                  pid=got["pid"][keep], is_write=got["is_write"][keep],
                                  time_us=t_us[keep])
            self.nr_samples += n
        return n

    def _translate(self, got):
        """Fault addresses in the base's target space (kept mask), by its hook."""
        addr, keep = self.base.translate_reports(got["pid"], got["addr"])
        addr, keep = np.asarray(addr, np.uint64), np.asarray(keep, bool)
        self.nr_untranslated += int((~keep).sum())
        if self.base.translates_reports:
            ps = np.uint64(self.page_size)
            self._remember_keys(addr[keep] // ps, got["pid"][keep], got["addr"][keep] // ps)
        return addr[keep], keep

    #: translations kept for :meth:`page_keys`
    KEYS_KEPT = 1 << 20

    def _remember_keys(self, pfn, pid, vpage) -> None:
        """Queue PFN -> (pid << 36 | virtual page) of a drain's translations (merged by
        :meth:`_merged_keys`, at the next page_keys call or when too many queue up)."""
        key = (pid.astype(np.uint64) << np.uint64(36)) | vpage.astype(np.uint64)
        self._key_batches.append((pfn.astype(np.uint64), key))
        self._nr_key_batched += len(pfn)
        if self._nr_key_batched > self.KEYS_KEPT:
            self._merged_keys()

    def _merged_keys(self):
        """The newest ``KEYS_KEPT`` translations, sorted by PFN (the newest wins for a PFN
        translated twice): ``(pfn, key, seq)``."""
        batches, self._key_batches, self._nr_key_batched = self._key_batches, [], 0
        if not batches:
            return self._keys
        kp, kk, ks = self._keys
        seq0 = int(ks.max(initial=0)) + 1
        # newest first, so that np.unique's first index is the newest translation
        pf = np.concatenate([b[0][::-1] for b in reversed(batches)] + [kp])
        ky = np.concatenate([b[1][::-1] for b in reversed(batches)] + [kk])
        sq = np.concatenate([np.full(len(b[0]), seq0 + i, np.int64)
                             for i, b in reversed(list(enumerate(batches)))] + [ks])
        pf, first = np.unique(pf, return_index=True)
        ky, sq = ky[first], sq[first]
        if len(pf) > self.KEYS_KEPT:
            keep = np.sort(np.argsort(-sq, kind="stable")[:self.KEYS_KEPT])
            pf, ky, sq = pf[keep], ky[keep], sq[keep]
        self._keys = (pf, ky, sq)
        return self._keys

    # --- delegated callbacks -------------------------------------------------------------
    def update(self, ctx) -> None:
        self.base.update(ctx)

    def prepare_access_checks(self, ctx) -> None:
        self.base.prepare_access_checks(ctx)

    def check_accesses(self, ctx) -> list:
        self.drain()
        return self.base.check_accesses(ctx)

    def get_scheme_score(self, ctx, target, scheme):
        return self.base.get_scheme_score(ctx, target, scheme)

    def apply_scheme(self, ctx, target, scheme, starts, ends, ops_filters=None):
        return self.base.apply_scheme(ctx, target, scheme, starts, ends, ops_filters)

    def node_ranges(self, ctx, target, starts, ends):
        return self.base.node_ranges(ctx, target, starts, ends)

    def page_keys(self, ctx, target, addrs):
        """A base that translates fault addresses (paddr): the (pid, virtual page) each
        physical page had when a fault on it was translated (the last ``KEYS_KEPT``
        translations); else the base's answer."""
        if not self.base.translates_reports:
            return self.base.page_keys(ctx, target, addrs)
        pfn = np.asarray(addrs, np.uint64) // np.uint64(self.page_size)
        with self._lock:
            kp, kk, _ = self._merged_keys()
        out = np.full(len(pfn), KEY_NONE, np.uint64)
        if len(kp):
            j = np.minimum(np.searchsorted(kp, pfn), len(kp) - 1)
            hit = kp[j] == pfn
            out[hit] = kk[j[hit]]
        return out

    def target_valid(self, target) -> bool:
        return self.base.target_valid(target)

    def metric(self, name, nid=None, memcg_path=None) -> int:
        return self.base.metric(name, nid=nid, memcg_path=memcg_path)

    def translate_reports(self, pid, addrs):
        return self.base.translate_reports(pid, addrs)
