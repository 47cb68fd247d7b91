"""Snapshots name the pages reports hit (``TargetSnapshot.report_addrs``)."""

import numpy as np

from damoncore.core import Attrs, Context, Target
from damoncore.ops.base import Operations


class Clock:
    def __init__(self):
        self.t = 0

    def now_us(self):
        return self.t

    def sleep_us(self, us):
        self.t += us


class ReportOnly(Operations):
    """Reports pushed by the test, a virtual clock."""

    def __init__(self):
        self.clock = Clock()


def test_each_target_gets_its_own_reports_sorted():
    ops = ReportOnly()
    t0, t1 = Target(ranges=[(0, 1 << 20)]), Target(ranges=[(1 << 20, 2 << 20)])
    ctx = Context(ops, [t0, t1], Attrs(sample_us=1000, aggr_us=10_000, min_nr_regions=10),
                  primitives=("page_fault",))
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s))
    ctx.start()
    addrs = np.array([3 << 20, (1 << 20) + 8192, 4096, 4096, 100], np.uint64)   # one outside
    ctx.report_access(addrs, 1, time_us=0)
    for _ in range(10):
        ops.clock.sleep_us(1000)
        ctx.sample_end()
        ctx.sample_begin()
    s = snaps[0]
    a, b = (t.report_addrs.tolist() for t in s.targets)
    assert a == [100, 4096, 4096] and b == [(1 << 20) + 8192]
    assert [int(t.nr_reports.sum()) for t in s.targets] == [3, 1]


def test_no_report_addrs_without_the_page_fault_primitive():
    ops = ReportOnly()
    ctx = Context(ops, [Target(ranges=[(0, 1 << 20)])], Attrs(sample_us=1000, aggr_us=10_000))
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s))
    ctx.run(10_000)
    assert snaps[0].targets[0].report_addrs is None
