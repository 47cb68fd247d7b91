"""Kdamond.run(duration) drivable in slices on a simulated clock: the schedule carries over
from call to call, and each call ends exactly at the requested time."""

import numpy as np

from damoncore import Attrs, Context, Kdamond, Target
from fakes import HotRangeOps, VirtualClock

MiB = 1 << 20
ATTRS = Attrs(sample_us=300_000, aggr_us=1_500_000, min_nr_regions=10, max_nr_regions=100)


def _kdamond(clock):
    ops = HotRangeOps(hot=[(8 * MiB, 16 * MiB)], p_hot=0.9, p_cold=0.05, seed=3, clock=clock)
    ctx = Context(ops, [Target(ranges=[(0, 64 * MiB)])], ATTRS, seed=5)
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append((s.end_us, s.targets[0].start.tolist(),
                                                s.targets[0].nr_accesses.tolist())))
    return Kdamond([ctx]), ctx, snaps


def test_fifty_short_slices_sample_like_one_long_run():
    """Fifty 100 ms slices of a 300 ms sampling interval run the 16 samples of 5 s (dbaf4b9
    restarted the schedule at every call and ran none), with the same results as one call."""
    clock = VirtualClock()
    kd, ctx, snaps = _kdamond(clock)
    ends = []
    for _ in range(50):
        kd.run(100_000, cleanup=False)
        ends.append(clock.t)
    assert ctx.passed_sample_intervals == 16
    assert ends == [(i + 1) * 100_000 for i in range(50)]    # each slice ends on time
    clock2 = VirtualClock()
    kd2, ctx2, snaps2 = _kdamond(clock2)
    kd2.run(5_000_000)
    assert clock2.t == 5_000_000
    assert ctx2.passed_sample_intervals == 16
    assert snaps == snaps2 and len(snaps) == 3


def test_a_slice_shorter_than_the_rest_of_a_sample_just_advances_the_clock():
    clock = VirtualClock()
    kd, ctx, _ = _kdamond(clock)
    kd.run(0, cleanup=False)
    assert clock.t == 0 and ctx.passed_sample_intervals == 0
    kd.run(299_999, cleanup=False)
    assert clock.t == 299_999 and ctx.passed_sample_intervals == 0
    kd.run(1, cleanup=False)
    assert clock.t == 300_000 and ctx.passed_sample_intervals == 1


def test_two_contexts_keep_their_own_schedules_across_slices():
    clock = VirtualClock()
    a = Context(HotRangeOps(clock=clock), [Target(ranges=[(0, 8 * MiB)])],
                Attrs(sample_us=3_000, aggr_us=30_000))
    b = Context(HotRangeOps(clock=clock), [Target(ranges=[(0, 8 * MiB)])],
                Attrs(sample_us=7_000, aggr_us=70_000))
    b.ops.clock = a.ops.clock = clock
    kd = Kdamond([a, b])
    for _ in range(100):
        kd.run(1_000, cleanup=False)
    assert clock.t == 100_000
    assert (a.passed_sample_intervals, b.passed_sample_intervals) == (33, 14)
    assert np.all(a.targets[0].regions.end > a.targets[0].regions.start)
