"""A scheme is due by sample count or by the clock: a sample loop slower than its interval
must not stretch the apply interval with it (the guest's TPP start-up, issue 13 item 4)."""

import time

import numpy as np

from damoncore.core import Attrs, Context, Target
from damoncore.ops.base import ApplyResult, Operations
from damoncore.schemes.scheme import AccessPattern, Scheme


class SlowSampleOps(Operations):
    """A backend whose access check takes 20 ms of real time (4x the 5 ms sample)."""

    name = "slow"
    supported_actions = frozenset({"stat", "pageout"})

    def __init__(self):
        self.applies = []

    def check_accesses(self, ctx):
        time.sleep(0.02)
        return [np.ones(t.regions.nr, np.uint8) for t in ctx.targets]

    def apply_scheme(self, ctx, target, scheme, starts, ends):
        self.applies.append(ctx.passed_sample_intervals)
        return ApplyResult()


def test_apply_comes_at_its_clock_time_when_samples_run_late():
    ops = SlowSampleOps()
    s = Scheme(AccessPattern(), action="pageout", apply_interval_us=100_000)
    ctx = Context(ops, targets=[Target(ranges=[(0, 1 << 30)])], schemes=[s],
                  attrs=Attrs(sample_us=5000, aggr_us=50_000, min_nr_regions=10))
    ctx.run(duration_us=400_000)
    # by sample count the first apply needs 20 samples (>= 500 ms at 25 ms each): it
    # would not have come at all; by the clock it is due after 100 ms
    assert ops.applies, "no apply in 400 ms"
    assert ops.applies[0] < 20
