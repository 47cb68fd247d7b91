"""The monitoring context and its loop (the kernel's ``damon_ctx`` and ``kdamond_fn``).

Everything is scheduled in sample intervals, as in the kernel: every sample the core picks a
sampling address per region, lets the ops backend clear and later check its accessed state
(or consumes access reports), and feeds the result to the region columns; at each
aggregation boundary it merges, applies schemes, auto-tunes the intervals, hands a snapshot
to callbacks, resets and splits.
"""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np

from .. import _regions
from ..errors import (ActionNotSupported, AdaptationError, DamonError, FilterNotSupported,
                      InvalidConfig)
from ..feedback import feed_loop_next_input
from ..ops.base import Operations, RealClock
from ..schemes.apply import apply_schemes
from ..units import BP
from .adaptation import Adaptation, KernelAdaptation
from .adaptations import TRUSTED
from .attrs import Attrs
from .regions import count_in_regions, even_regions, shares_by_size
from .reports import ReportBuffer, SampleFilter, filters_keep
from .snapshot import Snapshot, TargetSnapshot
from .target import Target

PRIMITIVES = ("page_table", "page_fault")


class Context:
    """A monitoring context: attributes, targets, schemes and one ops backend.

    ``primitives``: which access sources feed the regions: ``"page_table"`` (the ops
    backend's access checks) and/or ``"page_fault"`` (reports pushed through
    :meth:`report_access`, e.g. by a perf page-fault sampler).  ``sample_filters`` select
    reports (:class:`SampleFilter`).  ``min_region``: smallest region size in bytes (the
    kernel's DAMON_MIN_REGION; default: the backend's page size).  ``seed`` makes the
    random sampling reproducible.  ``pause`` (kernel 7.1): a paused context keeps its
    regions, their history and its schemes' state, and does no sampling, aggregation,
    scheme application or ops update until it is resumed; its targets are still checked,
    so a paused context whose targets all exit ends.  Change it between samples
    (:meth:`set_pause` from a callback or :meth:`Kdamond.call`, or a commit).
    """

    def __init__(self, ops: Operations, targets=(), attrs: Attrs | None = None, schemes=(),
                 primitives=("page_table",), sample_filters=(), min_region: int | None = None,
                 seed: int = 0, name: str | None = None, adaptation: Adaptation | None = None,
                 pause: bool = False):
        if not isinstance(ops, Operations):
            raise InvalidConfig(f"ops must be an Operations backend, got {type(ops).__name__}")
        self.ops = ops
        self.targets = list(targets)
        for t in self.targets:
            if not isinstance(t, Target):
                raise InvalidConfig(f"targets must be Target objects, got {type(t).__name__}")
        self._attrs = attrs if attrs is not None else Attrs()
        self._attrs.validate()
        self.primitives = tuple(primitives)
        for p in self.primitives:
            if p not in PRIMITIVES:
                raise InvalidConfig(f"unknown sample primitive {p!r} (known: page_table, page_fault)")
        if not self.primitives:
            raise InvalidConfig("at least one sample primitive is needed")
        self.sample_filters = list(sample_filters)
        for f in self.sample_filters:
            if not isinstance(f, SampleFilter):
                raise InvalidConfig("sample_filters must be SampleFilter objects")
        if min_region is None:
            min_region = ops.page_size
        if min_region < 1:
            raise InvalidConfig(f"min_region must be >= 1, got {min_region}")
        self.min_region = int(min_region)
        self.name = name
        self.set_adaptation(adaptation if adaptation is not None else KernelAdaptation())
        self.schemes = []
        for s in schemes:
            self.add_scheme(s)
        self.clock = ops.clock
        self.rng = np.array([(int(seed) * 0x9E3779B97F4A7C15 + 1) % (1 << 64)], dtype=np.uint64)
        self.reports = ReportBuffer()
        self.callbacks = []
        self.passed_sample_intervals = 0
        self.nr_aggregations = 0
        self.nr_commits = 0             # online commits taken (core.commit.commit_ctx)
        self.last_commit = None         # (clock us, passed sample intervals) of the last
        self.next_aggregation_sis = 0
        self.next_ops_update_sis = 0
        self.next_intervals_tune_sis = 0
        self._max_nr_accesses = 0
        self._sz_limit = min_region
        self._start_us = 0
        self._sample_due_us = None     # when the sample begun last ends (clock time)
        self._sample_begun = False     # False: the due time is a paused context's tick
        self._aggr_start_us = 0
        self._aggr_reports = {}       # target index -> [addresses of kept reports]
        self.started = False
        self.stopped = threading.Event()
        self._wake = None             # eventfd that ends a native run's wait (issue 13)
        self.pause = bool(pause)
        self._paused_at_us = None     # when the running context was paused
        self.call_pending = threading.Event()   # a Kdamond.call waits for the next boundary

    # --- configuration -------------------------------------------------------------------
    @property
    def attrs(self) -> Attrs:
        return self._attrs

    def set_attrs(self, attrs: Attrs) -> None:
        """Change attributes online; region counters are rescaled to the new intervals.

        damon_set_attrs() + damon_update_monitoring_results(): nr_accesses is converted
        through its ratio to the max, age through the ratio of aggregation intervals.
        """
        attrs.validate()
        old = self._attrs
        if self.started and (old.sample_us, old.aggr_us) != (attrs.sample_us, attrs.aggr_us):
            old_max, new_max = old.aggr_samples, attrs.aggr_samples
            for t in self.targets:
                r = t.regions
                nr = (r.nr_accesses.astype(np.uint64) * BP // old_max) * new_max // BP
                r.nr_accesses[:] = nr
                r.nr_accesses_bp[:] = nr * BP
                r.age[:] = r.age.astype(np.uint64) * old.aggr_us // attrs.aggr_us
        self._attrs = attrs
        if self.started:
            self.next_aggregation_sis = self.passed_sample_intervals + attrs.aggr_samples
            # Keep the wall-clock due time of ops updates and scheme applications.  The
            # kernel restarts their countdown here (damos_set_next_apply_sis()), so with
            # intervals auto-tuning every few aggregations a 1 s apply interval can be
            # postponed forever; rescaling the remaining samples avoids that starvation.
            p = self.passed_sample_intervals
            rescale = lambda due: p + max(1, (due - p) * old.sample_us // attrs.sample_us)
            self.next_ops_update_sis = rescale(self.next_ops_update_sis)
            for s in self.schemes:
                if s.apply_interval_us:
                    s.next_apply_sis = rescale(s.next_apply_sis)
                else:
                    # "every aggregation" stays on the aggregations (damos_set_next_apply_sis()
                    # with the aggregation interval); rescaled, it would fall between two
                    s.next_apply_sis = self.next_aggregation_sis
                    s.next_apply_us = self.clock.now_us() + attrs.aggr_us

    def set_adaptation(self, adaptation: Adaptation) -> None:
        """Use ``adaptation`` for the next merges and splits."""
        if not isinstance(adaptation, Adaptation):
            raise InvalidConfig(f"adaptation must be an Adaptation, got "
                                f"{type(adaptation).__name__}")
        self.adaptation = adaptation
        # adaptation hook (issue 14): sampled() only when overridden, so the default pays nothing
        self._sampled_hook = (adaptation.sampled if type(adaptation).sampled
                              is not Adaptation.sampled else None)
        # ... and its rows for the native sample path (sample_rows), when it offers them
        self._rows_hook = (adaptation.sample_rows if self._sampled_hook is not None
                           and type(adaptation).sample_rows is not Adaptation.sample_rows
                           else None)

    def set_pause(self, pause: bool) -> None:
        """Pause or resume (kernel 7.1's ``pause``); call it between samples.

        While paused the sample counters stand still, so the sample-counted schedules
        (aggregation, apply, ops update) resume where they stopped; the clock-side due times
        of the schemes move on by the time spent paused, and access reports made meanwhile
        are dropped (the kernel counts only reports of the samples it takes).
        """
        pause = bool(pause)
        if pause == self.pause:
            return
        self.pause = pause
        if not self.started:
            return
        now = self.clock.now_us()
        if pause:
            self._paused_at_us = now
            return
        paused_us = now - (self._paused_at_us if self._paused_at_us is not None else now)
        self._paused_at_us = None
        for s in self.schemes:
            if s.next_apply_us is not None:
                s.next_apply_us += paused_us
        self.reports.take_before(now)
        self._sample_end_us = now

    def pause_tick(self) -> None:
        """Wait one sampling interval paused: the next due time is a tick, not a sample's
        end."""
        self._sample_due_us = self.clock.now_us() + self.attrs.sample_us
        self._sample_begun = False

    def paused_tick_end(self) -> None:
        """A paused context's tick: only the targets are checked (the kernel's paused loop
        still ends when every target is gone)."""
        for t in self.targets:
            if not t.obsolete and not self.ops.target_valid(t):
                t.obsolete = True
        if not self.active_targets:
            self.stop()

    @property
    def sample_begun(self) -> bool:
        """A sample is begun (its end is due at :attr:`sample_due_us`); False: a paused
        context's tick is."""
        return self._sample_begun

    def add_scheme(self, scheme) -> None:
        """Install a scheme; refused if the backend cannot do its action or evaluate one of
        its ops filters."""
        self.check_scheme(scheme)
        self.schemes.append(scheme)

    def check_scheme(self, scheme) -> None:
        """Raise :class:`ActionNotSupported` (or :class:`FilterNotSupported`) if the backend
        cannot do ``scheme``'s action or evaluate one of its ops filters."""
        supported = self.ops.supported_actions
        if scheme.action not in supported:
            raise ActionNotSupported(
                f"ops backend {self.ops.name!r} cannot do action {scheme.action!r} "
                f"(it supports: {', '.join(sorted(supported))})")
        filters = self.ops.supported_filters
        for f in scheme.ops_filters:
            if f.filter_type not in filters:
                raise FilterNotSupported(
                    f"ops backend {self.ops.name!r} cannot evaluate filter "
                    f"{f.filter_type!r} (it evaluates: {', '.join(sorted(filters)) or 'none'})")

    def apply_scheme_at_next_sample(self, scheme) -> None:
        """Let ``scheme`` act at the end of the next sample instead of waiting for its
        apply interval (a policy that just changed its filters wants them used at once);
        its regular schedule resumes from there."""
        if scheme not in self.schemes:
            raise InvalidConfig(f"{scheme!r} is not a scheme of this context")
        scheme.next_apply_sis = self.passed_sample_intervals + 1

    def add_callback(self, fn) -> None:
        """``fn(ctx, snapshot)`` runs at every aggregation; returning True stops the context."""
        self.callbacks.append(fn)

    # --- access reports ------------------------------------------------------------------
    def report_access(self, addr, size=1, cpu=-1, tid=-1, is_write=False, pid=-1,
                      time_us=None) -> None:
        """Report accesses (scalars or equal-length arrays); thread-safe.

        ``addr``/``size``: bytes, in the targets' address space.  ``time_us``: when the
        access happened on this context's clock (default: now).  A report counts for the
        sample interval it falls in, for the region that fully contains it, if the sample
        filters keep it.
        """
        if time_us is None:
            time_us = self.clock.now_us()
        self.reports.push(addr, size, cpu, tid, pid, is_write, time_us)
        if "page_fault" in self.primitives:
            self._wake_native()           # a native run ends at the sample boundary

    # --- the loop ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current sample (callable from any thread)."""
        self.stopped.set()
        self._wake_native()

    def run(self, duration_us: int | None = None, cleanup: bool = True) -> None:
        """Monitor until ``duration_us`` passes (clock time), stop() or all targets end
        (see :meth:`Kdamond.run`)."""
        Kdamond([self]).run(duration_us, cleanup)

    @property
    def active_targets(self):
        return [t for t in self.targets if not t.obsolete]

    def start(self) -> None:
        """Initial regions and schedule (kdamond_fn's prologue)."""
        if self.started:
            return
        if not self.targets:
            raise InvalidConfig("a context needs at least one target")
        self.ops.init(self)
        fresh = [t for t in self.targets if t.regions.nr == 0]
        for t in fresh:
            if not t.ranges:
                raise InvalidConfig(f"target {t!r} has no address ranges")
        if fresh:
            # damon_apply_min_nr_regions(): min_nr_regions pieces over all fresh targets
            sizes = [sum(b - a for a, b in t.ranges) for t in fresh]
            for t, n in zip(fresh, shares_by_size(sizes, self.attrs.min_nr_regions)):
                t.regions = even_regions(t.ranges, n, self.min_region)
        self._sz_limit = self.region_sz_limit()
        a = self.attrs
        self.next_aggregation_sis = a.aggr_samples
        self.next_ops_update_sis = max(1, a.ops_update_us // a.sample_us)
        self.next_intervals_tune_sis = a.aggr_samples * a.intervals_goal.aggrs
        for s in self.schemes:
            s.reschedule(self)
        self._aggr_start_us = self._start_us = self._sample_end_us = self.clock.now_us()
        self.started = True
        if self.pause:
            self._paused_at_us = self._aggr_start_us

    @property
    def sz_limit(self) -> int:
        """The merge size limit in use (``region_sz_limit()`` at the last start/ops update)."""
        return self._sz_limit

    def region_sz_limit(self) -> int:
        """damon_region_sz_limit(): total monitored size / min_nr_regions, >= min_region."""
        sz = sum(t.regions.total_size() for t in self.active_targets)
        sz //= self.attrs.min_nr_regions
        return max(sz, self.min_region)

    def nr_regions(self) -> int:
        return sum(t.regions.nr for t in self.active_targets)

    def sample_begin(self) -> None:
        """Pick sampling addresses, let the backend clear their accessed state; the sample
        ends one sampling interval from now."""
        for t in self.active_targets:
            r = t.regions
            _regions.pick_sampling_addrs(r.start, r.end, r.sampling_addr, self.rng)
        if "page_table" in self.primitives:
            self.ops.prepare_access_checks(self)
        self._sample_due_us = self.clock.now_us() + self.attrs.sample_us
        self._sample_begun = True

    def drop_sample(self) -> None:
        """Forget the sample in flight (its backend was cleaned up): the next run begins a
        fresh one."""
        self._sample_due_us = None
        self._sample_begun = False

    @property
    def sample_due_us(self) -> int | None:
        """Clock time at which the current sample ends (None before the first one)."""
        return self._sample_due_us

    # --- native sample path (issue 13) ----------------------------------------------------
    def begin_samples(self, until_us: int | None = None) -> int | None:
        """Begin the next sample; return its deadline (clock time, us), or None if the
        context stopped on the way.

        Where the backend offers a native sample path (``Operations.native_sampler``) and the
        clock is real, the backend's C loop begins it and goes on through every following
        sample whose end needs nothing Python-side (see :meth:`native_max_ends`), then ends
        the one that does too, unless a deadline lies after ``until_us`` or something wakes
        it (:meth:`stop`, an access report, an exiting target); the Python-side work of that
        end (:meth:`sample_end_due`) runs here and the loop goes on.  It leaves one sample
        begun, whose end :meth:`sample_end` does.  Otherwise :meth:`sample_begin`.
        """
        sampler = None
        # an adaptation that watches every sample's checks (Adaptation.sampled) keeps the
        # generic path unless it gives the native one rows to write them to (sample_rows)
        if ("page_table" in self.primitives and isinstance(self.clock, RealClock)
                and (self._sampled_hook is None or self._rows_hook is not None)):
            sampler = self.ops.native_sampler(self)
        while sampler is not None:
            targets = self.active_targets
            if not targets:
                break
            wake = self._wake_fd()
            try:
                os.eventfd_read(wake)         # consume old wakeups; their causes are seen below
            except BlockingIOError:
                pass
            free = self.native_max_ends()
            rows = None
            if self._rows_hook is not None:     # per-sample rows of the adaptation (issue 14)
                rows = [r for r, t in zip(self._rows_hook(self), self.targets)
                        if not t.obsolete]
            run = sampler.run(self, targets, max(free, 0), until_us, wake, end_due=free >= 0,
                              due_us=self.native_due_us(), rows=rows)
            if run is None:
                break
            self.passed_sample_intervals += run.nr_ends
            if run.nr_ends:
                self._max_nr_accesses = run.max_nr_accesses
                # the boundary of the last sample ended in C: later reports count next
                self._sample_end_us = run.check_us
            if not run.ended:
                self._sample_due_us = run.deadline_us
                self._sample_begun = True
                return run.deadline_us
            self.sample_end_due()
            if self.stopped.is_set():
                return None
            sampler = self.ops.native_sampler(self)
        self.sample_begin()
        return self._sample_due_us

    def native_max_ends(self) -> int:
        """How many sample ends in a row need nothing Python-side: those before the next
        aggregation, scheme apply or ops update; -1 (not even the due one may end natively)
        while a stop or access reports are pending."""
        if self.stopped.is_set() or self.call_pending.is_set() or \
                ("page_fault" in self.primitives and self.reports.pending()):
            return -1
        due = min([self.next_aggregation_sis, self.next_ops_update_sis]
                  + [s.next_apply_sis for s in self.schemes])
        return max(0, due - self.passed_sample_intervals - 1)

    def native_due_us(self) -> int | None:
        """When Python-side work comes due by the clock (a scheme's apply is due by sample
        count or by the clock, whichever comes first): a native sample end at or after it
        is left to :meth:`sample_end_due`; None: nothing is."""
        due = [s.next_apply_us for s in self.schemes if s.next_apply_us is not None]
        return min(due) if due else None

    def _wake_fd(self) -> int:
        if self._wake is None:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            weakref.finalize(self, os.close, fd)
            self._wake = fd
        return self._wake

    def _wake_native(self) -> None:
        if self._wake is not None:
            os.eventfd_write(self._wake, 1)

    def sample_end(self) -> None:
        """Everything kdamond_fn does after the sleep of one sample interval."""
        self._sample_begun = False
        # the sample's boundary: reports made before it count now, later ones next time,
        # whenever a reporter hands them in
        self._sample_end_us = self.clock.now_us()
        self.passed_sample_intervals += 1
        for t in self.targets:
            if not t.obsolete and not self.ops.target_valid(t):
                t.obsolete = True
        targets = self.active_targets
        if not targets:
            self.stop()
            return
        checked = self.ops.check_accesses(self)
        accessed = self._accessed_flags(checked)
        if self._sampled_hook is not None:          # adaptation hook (issue 14)
            self._sampled_hook(self, accessed)
        a = self.attrs
        mx = 0
        for t, acc in zip(self.targets, accessed):
            if t.obsolete:
                continue
            r = t.regions
            mx = max(mx, _regions.update_accesses(r.nr_accesses, r.nr_accesses_bp,
                                                  r.last_nr_accesses, acc, a.aggr_samples))
        self._max_nr_accesses = mx
        self.sample_end_due()

    def sample_end_due(self) -> None:
        """The part of a sample's end after the counter update: what is due at this sample
        (merge, schemes, aggregation, ops update); the native path calls it alone."""
        aggregating = self.passed_sample_intervals >= self.next_aggregation_sis
        if aggregating:
            self._adapt("merge", self._max_nr_accesses // 10)
        view = None
        if self.schemes:
            def take_view():            # the regions as the schemes see them (replay)
                nonlocal view
                view = self._schemes_view()
            apply_schemes(self, take_view if aggregating and self.callbacks else None)
        if aggregating:
            self._aggregation_end(view)
        if self.passed_sample_intervals >= self.next_ops_update_sis:
            self.next_ops_update_sis += max(1, self.attrs.ops_update_us // self.attrs.sample_us)
            self.ops.update(self)
            self._sz_limit = self.region_sz_limit()

    def _accessed_flags(self, checked):
        """Per target uint8 arrays: accessed-bit checks OR'ed with kept access reports."""
        out = []
        for i, t in enumerate(self.targets):
            if checked is not None and "page_table" in self.primitives and checked[i] is not None:
                out.append(np.ascontiguousarray(checked[i], dtype=np.uint8).copy())
            else:
                out.append(np.zeros(t.regions.nr, dtype=np.uint8))
            if len(out[-1]) != t.regions.nr:
                raise RuntimeError(f"ops {self.ops.name!r} returned {len(out[-1])} access "
                                   f"flags for {t.regions.nr} regions")
        # every report made before this sample's end counts in it, however late its
        # reporter handed it in: those of the previous sample's tail included (the kernel
        # takes only the sample's own interval; a user-space reporter drains its rings
        # later than the faults happen); reports made after the end wait for the next
        # sample, and those from before monitoring started are dropped
        batch = self.reports.take_before(self._sample_end_us)
        if "page_fault" in self.primitives and len(batch):
            batch = batch.select(batch.time_us >= self._start_us)
            keep = filters_keep(self.sample_filters, batch).astype(np.uint8)
            for i, (t, acc) in enumerate(zip(self.targets, out)):
                if t.obsolete:
                    continue
                k = keep
                if t.pid is not None:
                    k = keep & ((batch.pid == -1) | (batch.pid == t.pid)).astype(np.uint8)
                r = t.regions
                _regions.mark_reported(r.start, r.end, batch.addr, batch.size, k, acc)
                self._aggr_reports.setdefault(i, []).append(batch.addr[k.view(bool)])
        return out

    def _adapt(self, step: str, *args) -> None:
        """Run the adaptation's ``merge`` or ``split``; check a custom one's result."""
        ad = self.adaptation
        run = ad.merge if step == "merge" else ad.split
        if type(ad) in TRUSTED:
            run(self, *args)
            return
        before = [(t, t.regions.covered()) for t in self.active_targets]
        run(self, *args)
        for t, cov in before:
            err = t.regions.invariant_error()
            if err is None and t.regions.covered() != cov:
                err = "the regions no longer cover the bytes they covered"
            if err is not None:
                raise AdaptationError(f"adaptation {ad.name!r} ({type(ad).__name__}) broke "
                                      f"the regions of {t!r} in {step}: {err}")

    def _schemes_view(self) -> list:
        """Copies of the active targets' regions (with the moving sum) for a snapshot."""
        return [TargetSnapshot(i, t.pid, t.regions.start.copy(), t.regions.end.copy(),
                               t.regions.nr_accesses.copy(), t.regions.age.copy(),
                               nr_accesses_bp=t.regions.nr_accesses_bp.copy())
                for i, t in enumerate(self.targets) if not t.obsolete]

    def _aggregation_end(self, schemes_view=None) -> None:
        # the interval ends at its last sample's boundary: the reports counted in it are
        # exactly those made in [start_us, end_us)
        now = self._sample_end_us
        a = self.attrs
        self.nr_aggregations += 1
        counted = "page_fault" in self.primitives
        reports, self._aggr_reports = self._aggr_reports, {}

        def nr_reports(i, r):
            if not counted:
                return None
            got = reports.get(i)
            if not got:
                return np.zeros(r.nr, np.uint64)
            return count_in_regions(r.start, r.end, np.concatenate(got))

        def report_addrs(i, r):
            """The kept reports' addresses inside the target's regions, sorted."""
            if not counted:
                return None
            got = reports.get(i)
            addrs = np.concatenate(got) if got else np.zeros(0, np.uint64)
            k = np.searchsorted(r.start, addrs, side="right") - 1
            ok = k >= 0
            ok[ok] = addrs[ok] < r.end[k[ok]]
            return np.sort(addrs[ok])
        snap = Snapshot(self._aggr_start_us, now, a.sample_us, a.aggr_us, a.aggr_samples,
                        [TargetSnapshot(i, t.pid, t.regions.start.copy(), t.regions.end.copy(),
                                        t.regions.nr_accesses.copy(), t.regions.age.copy(),
                                        nr_reports(i, t.regions), report_addrs(i, t.regions))
                         for i, t in enumerate(self.targets) if not t.obsolete],
                        schemes_view=schemes_view)
        for cb in self.callbacks:
            if cb(self, snap):
                self.stop()
        self._aggr_start_us = now
        next_aggr = self.next_aggregation_sis
        if a.intervals_goal.enabled and self.passed_sample_intervals >= self.next_intervals_tune_sis:
            self.next_intervals_tune_sis += a.aggr_samples * a.intervals_goal.aggrs
            self.tune_intervals()
        self.next_aggregation_sis = next_aggr + self.attrs.aggr_samples
        for t in self.active_targets:
            _regions.reset_aggregated(t.regions.nr_accesses, t.regions.last_nr_accesses)
        self._adapt("split")

    def intervals_score_bp(self) -> int:
        """damon_get_intervals_score(): observed access events vs. the goal, in bp."""
        a = self.attrs
        events = 0
        max_events = 0
        for t in self.active_targets:
            sz = t.regions.sizes()
            events += int(np.dot(sz, t.regions.nr_accesses.astype(np.uint64)))
            max_events += int(sz.sum()) * a.aggr_samples
        target = max_events * a.intervals_goal.access_bp // BP or 1
        return events * BP // target

    def tune_intervals(self) -> None:
        """kdamond_tune_intervals(): scale the sampling interval toward the access goal."""
        a = self.attrs
        g = a.intervals_goal
        adaptation_bp = feed_loop_next_input(BP * BP, self.intervals_score_bp()) // BP
        if adaptation_bp <= BP:
            adaptation_bp = BP // 2 + adaptation_bp // 2
        sample = min(g.max_sample_us, a.sample_us * adaptation_bp // BP)
        sample = max(g.min_sample_us, sample)
        if sample != a.sample_us:
            # keep the ratio; set_attrs reschedules from "now" like damon_set_attrs()
            nas = self.next_aggregation_sis
            self.set_attrs(a.with_sample_us(sample))
            self.next_aggregation_sis = nas


class CallCanceled(DamonError):
    """A :meth:`Kdamond.call` that never ran: the kdamond was not running, or ended first."""


class _Call:
    __slots__ = ("fn", "done", "result", "error", "canceled")

    def __init__(self, fn):
        self.fn = fn
        self.done = threading.Event()
        self.result = self.error = None
        self.canceled = False


class Kdamond:
    """Runs one or more contexts on one clock, each at its own sampling interval.

    The user-space analogue of a kdamond thread: contexts are stepped in order of their
    next sample deadline, so two contexts with different intervals interleave correctly on
    a real or a simulated clock.  Other threads reach the running contexts only through
    :meth:`call` (the kernel's damon_call()) and :meth:`commit`.
    """

    def __init__(self, contexts):
        self.contexts = list(contexts)
        if not self.contexts:
            raise InvalidConfig("a kdamond needs at least one context")
        self.clock = self.contexts[0].clock
        for c in self.contexts:
            if c.clock is not self.clock and not (isinstance(c.clock, RealClock)
                                                  and isinstance(self.clock, RealClock)):
                raise InvalidConfig("contexts of one kdamond must share one clock")
        self._stop = threading.Event()
        self._calls = []
        self._calls_lock = threading.Lock()
        self._thread = None           # the thread in run(), while it runs

    def stop(self) -> None:
        self._stop.set()
        for c in self.contexts:
            c.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # --- calls from other threads (damon_call()) -----------------------------------------
    def call(self, fn, timeout: float | None = None):
        """Run ``fn()`` in the monitoring thread after the current sample (before the next
        one begins) and return what it returns, or raise what it raised.

        From the monitoring thread itself (a callback) ``fn`` runs at once.  Raises
        :class:`CallCanceled` if the kdamond is not running or ends before the call ran, and
        ``TimeoutError`` (the call withdrawn) if ``timeout`` seconds pass first.
        """
        if threading.current_thread() is self._thread:
            return fn()
        req = _Call(fn)
        with self._calls_lock:
            if self._thread is None:
                raise CallCanceled("the kdamond is not running")
            self._calls.append(req)
        for c in self.contexts:
            c.call_pending.set()
            c._wake_native()              # a native run ends at the next sample boundary
        if not req.done.wait(timeout):
            with self._calls_lock:
                if req in self._calls:
                    self._calls.remove(req)
                    raise TimeoutError(f"the kdamond did not reach a sample boundary within "
                                       f"{timeout} s")
            req.done.wait()
        if req.canceled:
            raise CallCanceled("the kdamond ended before the call ran")
        if req.error is not None:
            raise req.error
        return req.result

    def _run_calls(self, cancel: bool = False) -> None:
        """kdamond_call(): run (or, at the end, cancel) the calls waiting."""
        with self._calls_lock:
            calls, self._calls = self._calls, []
            for c in self.contexts:
                c.call_pending.clear()
        for req in calls:
            if cancel:
                req.canceled = True
            else:
                try:
                    req.result = req.fn()
                except Exception as e:        # handed to the caller's thread
                    req.error = e
            req.done.set()

    def commit(self, new_contexts, goals_only: bool = False, timeout: float | None = None,
               then=None):
        """Commit ``new_contexts`` (one per context, in order; built, not started) to the
        contexts with damon_commit_ctx()'s semantics (:mod:`damoncore.core.commit`).

        Everything is checked first and nothing changes if a check fails
        (:class:`InvalidConfig`); then the commit runs between two samples, all contexts at
        once, followed by ``then()`` if given (its result is returned).  A kdamond that is
        not running is committed to directly.
        """
        from .commit import check_commit, commit_ctx
        new_contexts = list(new_contexts)
        if len(new_contexts) != len(self.contexts):
            raise InvalidConfig(f"{len(new_contexts)} contexts given for the kdamond's "
                                f"{len(self.contexts)}")
        for i, (dst, src) in enumerate(zip(self.contexts, new_contexts)):
            try:
                check_commit(dst, src, goals_only)
            except (InvalidConfig, ActionNotSupported) as e:
                raise type(e)(f"context {i}: {e}") from e

        def apply():
            for dst, src in zip(self.contexts, new_contexts):
                commit_ctx(dst, src, goals_only)
            return then() if then is not None else None
        if self._thread is None:
            return apply()
        return self.call(apply, timeout)

    # --- the loop ------------------------------------------------------------------------
    def run(self, duration_us: int | None = None, cleanup: bool = True) -> None:
        """Run for ``duration_us`` of clock time (None: until every context stopped).

        A call picks up where the previous one left off: each context keeps its sample
        schedule (the sample begun last ends when it was due), so a long simulation can be
        driven in slices of any length, even shorter than a sampling interval, and the
        samples fall where one long call would have put them.  The call returns at
        exactly ``duration_us`` after it began (the clock is advanced there; a real clock
        waits), or earlier when every context stopped or :meth:`stop` was called.
        ``cleanup=False`` leaves the ops backends set up for the next slice.
        """
        clock = self.clock
        end = None if duration_us is None else clock.now_us() + int(duration_us)
        try:
            with self._calls_lock:
                self._thread = threading.current_thread()
            for c in self.contexts:
                if not c.started:
                    c.start()
                if c.sample_due_us is None and not c.stopped.is_set():
                    # alone, a context may run samples natively from the start (issue 13)
                    self._schedule(c, end if len(self.contexts) == 1 else 0)
            while not self._stop.is_set():
                live = [c for c in self.contexts if not c.stopped.is_set()]
                if not live:
                    break
                c = min(live, key=lambda x: x.sample_due_us)
                due = c.sample_due_us
                if end is not None and due > end:
                    self._wait_until(end)
                    break
                if self._wait_until(due):
                    break
                if c.sample_begun:
                    c.sample_end()
                else:
                    c.paused_tick_end()
                if self._calls:
                    self._run_calls()
                if c.stopped.is_set():
                    continue
                # native samples may not pass another context's turn or the end (issue 13)
                until = [x.sample_due_us - 1 for x in live
                         if x is not c and x.sample_due_us is not None]
                until = min(until + ([end] if end is not None else []), default=None)
                self._schedule(c, until)
        finally:
            with self._calls_lock:
                self._thread = None
            self._run_calls(cancel=True)
            if cleanup or self._stop.is_set():
                for c in self.contexts:
                    c.ops.cleanup(c)
                    c.drop_sample()

    @staticmethod
    def _schedule(c, until) -> None:
        """Begin ``c``'s next sample, or, while it is paused, its next tick."""
        if c.pause:
            c.pause_tick()
        else:
            c.begin_samples(until)

    def _wait_until(self, t_us: int) -> bool:
        """Advance to clock time ``t_us``; True if :meth:`stop` was called meanwhile."""
        wait = t_us - self.clock.now_us()
        if wait > 0:
            if isinstance(self.clock, RealClock):
                return self._stop.wait(wait / 1e6)
            self.clock.sleep_us(wait)
        return self._stop.is_set()
