"""Online commits (damon_commit_ctx() semantics), pause (kernel 7.1) and Kdamond.call.

What the kernel keeps across a commit is kept here: scheme stats, the quota's charge state
(effective size, feedback state, window, resume point), the next apply time and the regions
with their history; so a new size quota takes effect when the charge window ends.
"""

import copy
import threading

import numpy as np
import pytest

from damoncore import Attrs, Context, InvalidConfig, Target
from damoncore.core.context import CallCanceled, Kdamond
from damoncore.errors import ActionNotSupported
from damoncore.schemes.scheme import AccessPattern, Quota, QuotaGoal, Scheme
from fakes import HotRangeOps, VirtualClock

MiB, GiB = 1 << 20, 1 << 30
ATTRS = Attrs(sample_us=1000, aggr_us=10_000, ops_update_us=1_000_000)


def scheme(sz=4 * MiB, reset_ms=100, goals=()):
    return Scheme(AccessPattern(min_nr_accesses=1), "pageout",
                  quota=Quota(sz_bytes=sz, reset_interval_ms=reset_ms, goals=list(goals)))


def context(ops=None, schemes=None, nr_targets=1, attrs=ATTRS, pause=False):
    ops = ops or HotRangeOps(hot=[(0, 8 * GiB)], p_hot=1.0)
    targets = [Target(ranges=[(i * GiB, i * GiB + 256 * MiB)]) for i in range(nr_targets)]
    return Context(ops, targets, attrs, [scheme()] if schemes is None else schemes,
                   pause=pause)


def spec(**kw):
    """A new (unstarted) context to commit: the stand-in for a parsed tune."""
    return context(ops=HotRangeOps(), **kw)


def test_commit_keeps_state_and_a_new_quota_counts_from_the_next_window():
    ctx = context()
    s = ctx.schemes[0]
    kd = Kdamond([ctx])
    rows, at = [], {}

    def cb(c, snap):
        now = c.clock.now_us()
        if "t" not in at and now >= 250_000:
            before = (copy.deepcopy(s.stats), copy.deepcopy(s.quota_state), s.next_apply_sis,
                      [t.regions.copy() for t in c.targets])
            kd.commit([spec(schemes=[scheme(sz=1 * MiB)])])
            at.update(t=now, before=before, window=s.quota_state.charged_from_us)
        rows.append((now, s.quota_state.charged_from_us, s.quota_state.esz, s.stats.sz_tried))
    ctx.add_callback(cb)
    kd.run(600_000)
    stats, qstate, next_apply, regions = at["before"]
    # the commit itself changed no run-time state (checked right after it, in the callback)
    assert s.quota.sz_bytes == 1 * MiB and ctx.schemes[0] is s
    assert stats.sz_tried > 0 and qstate.esz == 4 * MiB
    after = [r for r in rows if r[0] >= at["t"]]
    first = after[0]
    assert first[2] == qstate.esz and first[3] == stats.sz_tried
    assert next_apply > 0 and len(regions[0].start) > 0
    # per charge window: what was tried (every window uses its whole quota: all is hot)
    windows = {}
    for now, start, esz, tried in rows:
        windows.setdefault(start, []).append((esz, tried))
    starts = sorted(windows)
    tried_in = {w: windows[w][-1][1] - windows[prev][-1][1]
                for prev, w in zip(starts, starts[1:])}
    assert all(esz == 4 * MiB for esz, _ in windows[at["window"]])     # the commit's window
    later = [w for w in starts if w > at["t"]]
    assert len(later) >= 2
    for w in later:
        assert all(esz == 1 * MiB for esz, _ in windows[w])
        assert tried_in[w] == 1 * MiB
    for w in starts[1:]:
        if w < at["window"]:
            assert tried_in[w] == 4 * MiB


def test_commit_keeps_regions_and_their_history():
    ctx = context()
    kd = Kdamond([ctx])
    kd.run(200_000)
    t = ctx.targets[0]
    before = t.regions.copy()
    kd.commit([spec()])
    for col in ("start", "end", "nr_accesses", "last_nr_accesses", "age"):
        assert np.array_equal(getattr(t.regions, col), getattr(before, col))
    # new ranges: kept regions are fitted (damon_set_regions()), their counters kept
    new = spec()
    new.targets[0].ranges = [(0, 128 * MiB)]
    kd.commit([new])
    r = t.regions
    assert int(r.start[0]) == 0 and int(r.end[-1]) == 128 * MiB
    keep = before.end <= 128 * MiB
    assert np.array_equal(r.age[:keep.sum()], before.age[keep])


def test_commit_adds_and_drops_schemes_and_copies_goals():
    ctx = context()
    kd = Kdamond([ctx])
    kd.run(200_000)
    s0 = ctx.schemes[0]
    tried = s0.stats.sz_tried
    extra = scheme(sz=2 * MiB, goals=[QuotaGoal("user_input", 100, current_value=7)])
    kd.commit([spec(schemes=[scheme(), extra])])
    assert ctx.schemes[0] is s0 and s0.stats.sz_tried == tried
    assert ctx.schemes[1] is extra and extra.stats.sz_tried == 0
    assert extra.next_apply_sis > ctx.passed_sample_intervals      # scheduled from now
    # goals by index: a user_input's current value is the user's; other metrics' are not
    g = extra.quota.goals[0]
    kd.commit([spec(schemes=[scheme(), scheme(goals=[QuotaGoal("user_input", 50,
                                                               current_value=9)])])])
    assert ctx.schemes[1].quota.goals[0] is g and (g.target_value, g.current_value) == (50, 9)
    g.metric, g.current_value = "node_mem_used_bp", 1234
    kd.commit([spec(schemes=[scheme(), scheme(goals=[QuotaGoal("node_mem_used_bp", 9000,
                                                               current_value=1, nid=0)])])])
    assert (g.target_value, g.current_value) == (9000, 1234)
    kd.commit([spec(schemes=[])])
    assert ctx.schemes == []


def test_obsolete_target_is_removed_and_resume_points_follow():
    ctx = context(nr_targets=3)
    kd = Kdamond([ctx])
    kd.run(100_000)
    t0, t1, t2 = ctx.targets
    st = ctx.schemes[0].quota_state
    st.charge_target_from, st.charge_addr_from = 2, GiB * 2 + 4096
    new = spec(nr_targets=3)
    new.targets[0].obsolete = True
    kd.commit([new])
    assert ctx.targets == [t1, t2]
    assert (st.charge_target_from, st.charge_addr_from) == (1, GiB * 2 + 4096)
    new = spec(nr_targets=2)
    new.targets[1].obsolete = True             # the target the resume point is in
    kd.commit([new])
    assert ctx.targets == [t1] and st.charge_target_from is None
    kd.run(100_000)                            # monitoring goes on with the rest
    assert ctx.nr_regions() == t1.regions.nr > 0


@pytest.mark.parametrize("how", ["obsolete_beyond", "all_obsolete", "new_target",
                                 "action", "attrs", "primitives"])
def test_refused_commit_changes_nothing(how):
    ctx = context(nr_targets=2)
    kd = Kdamond([ctx])
    kd.run(100_000)
    before = (ctx.attrs, [copy.deepcopy(vars(s.quota)) for s in ctx.schemes],
              list(ctx.targets), ctx.schemes[0].action)
    new = spec(nr_targets=2, schemes=[scheme(sz=1 * MiB)])
    if how == "obsolete_beyond":
        new = spec(nr_targets=3, schemes=[scheme(sz=1 * MiB)])
        new.targets[2].obsolete = True
    elif how == "all_obsolete":
        for t in new.targets:
            t.obsolete = True
    elif how == "new_target":
        new = spec(nr_targets=3, schemes=[scheme(sz=1 * MiB)])
    elif how == "action":
        new.schemes[0].action = "lru_prio"      # HotRangeOps cannot do it
    elif how == "attrs":
        bad = copy.copy(new.attrs)             # what damon_set_attrs() refuses
        object.__setattr__(bad, "min_nr_regions", 1)
        new._attrs = bad
    else:
        new.primitives = ("page_fault",)
    with pytest.raises((InvalidConfig, ActionNotSupported)) as e:
        kd.commit([new])
    assert "context 0" in str(e.value)
    assert before == (ctx.attrs, [vars(s.quota) for s in ctx.schemes], ctx.targets,
                      ctx.schemes[0].action)


class CountingOps(HotRangeOps):
    def __init__(self, clock=None, alive_until_us=None):
        super().__init__(hot=[(0, 8 * GiB)], p_hot=1.0, clock=clock)
        self.prepared = self.checked = 0
        self.alive_until_us = alive_until_us

    def prepare_access_checks(self, ctx):
        self.prepared += 1

    def check_accesses(self, ctx):
        self.checked += 1
        return super().check_accesses(ctx)

    def target_valid(self, target):
        return self.alive_until_us is None or self.clock.now_us() < self.alive_until_us


def test_a_paused_context_keeps_its_state_and_does_nothing_until_resumed():
    clock = VirtualClock()
    a = context(ops=CountingOps(clock))
    b = context(ops=CountingOps(clock), schemes=[])
    kd = Kdamond([a, b])
    seen = {}

    def pause_a(ctx, snap):
        if not a.pause and "resumed" not in seen and clock.t >= 200_000:
            a.set_pause(True)          # takes effect once this sample's work is done
    a.add_callback(pause_a)

    def watch_a(ctx, snap):
        state = (a.passed_sample_intervals, a.nr_aggregations,
                 copy.deepcopy(a.schemes[0].stats), a.ops.checked,
                 a.schemes[0].next_apply_us, a.targets[0].regions.copy())
        if a.pause and "paused" not in seen:
            seen["paused"] = (clock.t,) + state
        elif a.pause and clock.t >= 600_000:
            seen["frozen"] = state
            seen["resumed"] = clock.t
            a.set_pause(False)
            seen["next_apply_us"] = a.schemes[0].next_apply_us
    b.add_callback(watch_a)
    kd.run(1_000_000)
    t, sis, aggrs, stats, checked, next_apply_us, regions = seen["paused"]
    f_sis, f_aggrs, f_stats, f_checked, _, f_regions = seen["frozen"]
    assert (f_sis, f_aggrs, f_stats, f_checked) == (sis, aggrs, stats, checked)
    assert np.array_equal(f_regions.start, regions.start)
    assert np.array_equal(f_regions.nr_accesses_bp, regions.nr_accesses_bp)
    # resumed: the sample-counted schedule goes on where it stopped; the clock-side apply
    # due time moved on by the pause
    paused_for = seen["resumed"] - t          # t: the other context's first look (<= 1 aggr)
    assert paused_for <= seen["next_apply_us"] - next_apply_us <= paused_for + ATTRS.aggr_us
    assert a.passed_sample_intervals > sis + 300 and a.schemes[0].stats.sz_tried > \
        stats.sz_tried
    assert b.passed_sample_intervals >= 990          # the other context never paused


def test_a_context_can_start_paused_and_ends_when_its_targets_go():
    clock = VirtualClock()
    ops = CountingOps(clock, alive_until_us=300_000)
    ctx = context(ops=ops, pause=True)
    Kdamond([ctx]).run(1_000_000)
    assert ctx.targets[0].regions.nr >= ATTRS.min_nr_regions    # started: regions exist
    assert ctx.passed_sample_intervals == 0 and ops.checked == 0
    assert ctx.stopped.is_set() and 300_000 <= clock.t < 310_000


def test_call_runs_in_the_monitoring_thread_between_samples():
    ctx = context()
    kd = Kdamond([ctx])
    with pytest.raises(CallCanceled):
        kd.call(lambda: 1)                     # not running
    th = threading.Thread(target=kd.run, daemon=True)
    th.start()
    try:
        while not kd.running:
            pass
        got = kd.call(lambda: (threading.current_thread() is th,
                               ctx.passed_sample_intervals), timeout=30)
        assert got[0] is True
        with pytest.raises(ZeroDivisionError):
            kd.call(lambda: 1 // 0, timeout=30)
        # a commit from another thread: checked here, applied there
        kd.commit([spec(schemes=[scheme(sz=2 * MiB)])], timeout=30)
        assert ctx.schemes[0].quota.sz_bytes == 2 * MiB
        with pytest.raises(InvalidConfig):
            kd.commit([spec(nr_targets=2)], timeout=30)
    finally:
        kd.stop()
        th.join(30)
    assert not th.is_alive()
