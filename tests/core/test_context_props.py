"""Invariants of the monitoring loop, checked at every aggregation on random workloads."""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from damoncore import Attrs, Context, InvalidConfig, IntervalsGoal, Target
from damoncore import _regions
from damoncore.ops.base import Operations
from fakes import HotRangeOps, VirtualClock

PAGE = 4096


class Quiet(Operations):
    """No accessed-bit checks: the contexts see only what the test reports."""

    def __init__(self):
        self.clock = VirtualClock()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), min_nr=st.integers(3, 30), extra=st.integers(0, 300),
       nr_ranges=st.integers(1, 3), p_cold=st.sampled_from([0.0, 0.05, 0.5]),
       aggr_samples=st.integers(2, 30))
@example(seed=3, min_nr=3, extra=0, nr_ranges=3, p_cold=0.0, aggr_samples=2)
def test_regions_sorted_covering_bounded(seed, min_nr, extra, nr_ranges, p_cold, aggr_samples):
    g = np.random.default_rng(seed)
    max_nr = min_nr + extra
    nr_ranges = min(nr_ranges, min_nr)
    base, ranges = PAGE * 16, []
    for _ in range(nr_ranges):
        sz = int(g.integers(64, 4096)) * PAGE
        ranges.append((base, base + sz))
        base += sz + int(g.integers(1, 100)) * PAGE
    hs = ranges[0][0] + (ranges[0][1] - ranges[0][0]) // 4
    ops = HotRangeOps(hot=[(hs, hs + (ranges[0][1] - ranges[0][0]) // 8)], p_cold=p_cold, seed=seed)
    ctx = Context(ops, [Target(ranges=ranges)],
                  Attrs(sample_us=1000, aggr_us=1000 * aggr_samples, ops_update_us=10**6,
                        min_nr_regions=min_nr, max_nr_regions=max_nr), seed=seed)
    seen = []

    def check(c, snap):
        t = c.targets[0]
        r = t.regions
        r.check_invariants(ranges)
        assert min_nr <= r.nr, (r.nr, min_nr)
        if r.nr > max_nr:
            # like the kernel: min_nr_regions caps region sizes (total / min_nr), and merging
            # never goes past that cap, so uneven ranges can leave more than max_nr regions
            # (found by hypothesis: ranges of 3335, 787 and 795 pages, min = max = 3 gives
            # 4 regions); then no two adjacent regions may fit in the cap together
            sz = r.sizes()
            adj = r.end[:-1] == r.start[1:]
            assert not (adj & (sz[:-1] + sz[1:] <= c.region_sz_limit())).any(), (
                r.nr, min_nr, max_nr)
        s = snap.targets[0]
        assert np.all(s.nr_accesses <= aggr_samples)
        seen.append(r.nr)

    ctx.add_callback(check)
    ctx.run(30 * aggr_samples * 1000)
    assert len(seen) >= 29


@pytest.mark.parametrize("seed", range(5))
def test_moving_sum_tracks_nr_accesses(seed):
    """Between aggregations nr_accesses_bp stays within rounding of the moving sum; at the
    aggregation end (after merge) it is exactly nr_accesses * 10000."""
    g = np.random.default_rng(seed)
    n, w = 200, 20
    nr = np.zeros(n, np.uint32)
    bp = np.zeros(n, np.uint32)
    last = g.integers(0, w + 1, n).astype(np.uint32)
    bp[:] = last * 10000
    for _ in range(w):
        acc = (g.random(n) < 0.5).astype(np.uint8)
        _regions.update_accesses(nr, bp, last, acc, w)
    assert np.all(np.abs(bp.astype(np.int64) - nr.astype(np.int64) * 10000) <= w)


def test_snapshot_bp_equals_nr_after_merge():
    ops = HotRangeOps(hot=[(1 << 20, 2 << 20)], p_cold=0.1)
    ctx = Context(ops, [Target(ranges=[(0, 64 << 20)])],
                  Attrs(sample_us=1000, aggr_us=7000), seed=3)

    def check(c, snap):
        r = c.targets[0].regions
        assert np.array_equal(r.nr_accesses_bp, r.nr_accesses * 10000)

    ctx.add_callback(check)
    ctx.run(200_000)


def test_hot_range_found():
    hot = (256 << 20, 320 << 20)
    ops = HotRangeOps(hot=[hot], p_hot=0.95, p_cold=0.0, seed=1)
    ctx = Context(ops, [Target(ranges=[(0, 1 << 30)])], Attrs(), seed=1)
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s))
    ctx.run(3_000_000)
    s = snaps[-1].targets[0]
    hot_mask = s.nr_accesses >= 10
    got = [(a, b) for a, b in zip(s.start[hot_mask].tolist(), s.end[hot_mask].tolist())]
    covered = sum(max(0, min(b, hot[1]) - max(a, hot[0])) for a, b in got)
    extra = sum(b - a for a, b in got) - covered
    assert covered >= 0.9 * (hot[1] - hot[0])
    assert extra <= 0.05 * ((1 << 30) - (hot[1] - hot[0]))


@pytest.mark.parametrize("kw, word", [
    (dict(min_nr_regions=2), "min_nr_regions"),
    (dict(min_nr_regions=20, max_nr_regions=10), "min_nr_regions"),
    (dict(sample_us=200, aggr_us=100), "sample_us"),
    (dict(sample_us=0), "sample_us"),
    (dict(intervals_goal=IntervalsGoal(400, 3, 10_000, 5_000)), "min_sample_us"),
    (dict(intervals_goal=IntervalsGoal(0, 3, 1000, 5_000)), "access_bp"),
])
def test_attrs_validation(kw, word):
    with pytest.raises(InvalidConfig, match=word):
        Attrs(**kw)


def test_stop_from_another_thread():
    import threading
    from damoncore.ops.base import Operations

    ctx = Context(Operations(), [Target(ranges=[(0, 1 << 24)])],
                  Attrs(sample_us=1000, aggr_us=10000))
    threading.Timer(0.3, ctx.stop).start()
    import time
    t0 = time.monotonic()
    ctx.run()      # real clock, no duration: only stop() ends it
    assert 0.25 < time.monotonic() - t0 < 5


def test_target_exit_ends_monitoring():
    from damoncore.ops.base import Operations

    class Dies(Operations):
        def __init__(self):
            self.calls = 0
            from fakes import VirtualClock
            self.clock = VirtualClock()
            self.cleaned = False

        def target_valid(self, t):
            self.calls += 1
            return self.calls < 50

        def cleanup(self, ctx):
            self.cleaned = True

    ops = Dies()
    ctx = Context(ops, [Target(pid=1234, ranges=[(0, 1 << 24)])])
    ctx.run(10**9)
    assert ctx.targets[0].obsolete and ops.cleaned
    assert ops.clock.t < 10**6


def test_reports_between_samples_are_not_lost():
    """A report that arrives after one sample's check and before the next sample begins
    (while the loop does aggregation work) counts for the next sample."""
    ops = Quiet()
    ctx = Context(ops, [Target(ranges=[(0, 1 << 24)])], Attrs(sample_us=1000, aggr_us=10_000),
                  primitives=("page_fault",))
    ctx.start()
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ctx.sample_end()
    ops.clock.sleep_us(300)                        # busy between samples
    ctx.report_access(4096 * 5)                    # arrives before the next sample begins
    ops.clock.sleep_us(200)
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ctx.sample_end()
    r = ctx.targets[0].regions
    assert int(r.nr_accesses.sum()) == 1


def _count_ref(start, end, addrs):
    """Plain-Python reference of count_in_regions."""
    out = [0] * len(start)
    for a in addrs:
        for i, (s, e) in enumerate(zip(start, end)):
            if s <= a < e:
                out[i] += 1
    return out


@settings(max_examples=60, deadline=None)
@given(bounds=st.lists(st.integers(0, 1 << 20), min_size=2, max_size=30, unique=True),
       gaps=st.lists(st.booleans(), min_size=30, max_size=30),
       addrs=st.lists(st.integers(0, (1 << 20) + 10), max_size=200))
def test_count_in_regions_matches_reference(bounds, gaps, addrs):
    from damoncore.core.regions import count_in_regions
    b = sorted(bounds)
    # consecutive pairs as regions, some dropped to leave gaps between regions
    pairs = [(s, e) for (s, e), g in zip(zip(b, b[1:]), gaps) if not g] or [(b[0], b[1])]
    start = np.array([s for s, _ in pairs], np.uint64)
    end = np.array([e for _, e in pairs], np.uint64)
    got = count_in_regions(start, end, np.array(addrs, np.uint64))
    assert got.tolist() == _count_ref(start.tolist(), end.tolist(), addrs)


def test_snapshot_counts_kept_reports_per_region():
    """nr_accesses saturates at one per sample; nr_reports tells one report from many, and
    counts only the reports the sample filters keep."""
    from damoncore import SampleFilter

    ops = Quiet()
    ctx = Context(ops, [Target(ranges=[(0, 1 << 24)])],
                  Attrs(sample_us=1000, aggr_us=2000, min_nr_regions=10, max_nr_regions=10),
                  primitives=("page_fault",),
                  sample_filters=[SampleFilter("cpumask", allow=True, cpus={0})])
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s))
    ctx.start()
    r = ctx.targets[0].regions
    lo, hi = int(r.start[0]), int(r.start[1])
    for _ in range(2):
        ctx.sample_begin()
        ctx.report_access(np.full(500, lo + 4096, np.uint64), cpu=0)   # many in region 0
        ctx.report_access([hi + 4096], cpu=0)                           # one in region 1
        ctx.report_access(np.full(50, hi + 8192, np.uint64), cpu=1)    # filtered out
        ops.clock.sleep_us(1000)
        ctx.sample_end()
    (s,) = snaps
    t = s.targets[0]
    k0 = int(np.searchsorted(t.start, lo, side="right") - 1)
    k1 = int(np.searchsorted(t.start, hi + 4096, side="right") - 1)
    assert t.nr_accesses[k0] == t.nr_accesses[k1] == 2
    assert t.nr_reports[k0] == 1000 and t.nr_reports[k1] == 2
    assert int(t.nr_reports.sum()) == 1002
    # the next aggregation starts from zero
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ctx.sample_end()
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ctx.sample_end()
    assert int(snaps[-1].targets[0].nr_reports.sum()) == 0
