"""Every kept access report counts in exactly one sample, chosen by the report's time against
the sample boundaries, never by when its reporter handed it in (issue 11 item 7)."""

import numpy as np

from damoncore import Attrs, Context, Target
from damoncore.ops.base import Operations
from fakes import VirtualClock

PAGE = 4096


class LateReporter(Operations):
    """A reporter that drains its source only in check_accesses, like PerfOps: what it
    pushes there may be older than the previous boundary, or newer than this one."""

    def __init__(self):
        self.clock = VirtualClock()
        self.pending = []            # (addr, time_us) handed in at the next check

    def check_accesses(self, ctx):
        for addr, t in self.pending:
            ctx.report_access(addr, time_us=t)
        self.pending = []
        return super().check_accesses(ctx)


def _ctx():
    ops = LateReporter()
    ctx = Context(ops, [Target(ranges=[(0, 64 * PAGE)])],
                  Attrs(sample_us=1000, aggr_us=4000, min_nr_regions=4, max_nr_regions=4),
                  primitives=("page_fault",))
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s))
    ctx.start()
    return ops, ctx, snaps


def _sample(ops, ctx):
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ctx.sample_end()


def test_a_report_drained_after_the_boundary_it_predates_still_counts():
    """A fault of sample 1 that the reporter hands in only at sample 2's check (dbaf4b9
    dropped it: older than the previous drain) counts, in sample 2."""
    ops, ctx, snaps = _ctx()
    _sample(ops, ctx)                                    # boundary at t = 1000
    ops.pending = [(5 * PAGE, 999)]                      # made in sample 1, handed in late
    _sample(ops, ctx)
    r = ctx.targets[0].regions
    assert int(r.nr_accesses.sum()) == 1


def test_a_report_made_after_the_boundary_counts_in_the_next_sample():
    ops, ctx, snaps = _ctx()
    ctx.sample_begin()
    ops.clock.sleep_us(1000)
    ops.pending = [(5 * PAGE, 1000), (40 * PAGE, 999)]  # one at the boundary, one before
    ctx.sample_end()
    r = ctx.targets[0].regions
    k_early = int(np.searchsorted(r.start, 40 * PAGE, side="right") - 1)
    k_late = int(np.searchsorted(r.start, 5 * PAGE, side="right") - 1)
    assert r.nr_accesses[k_early] == 1 and r.nr_accesses[k_late] == 0
    _sample(ops, ctx)                                    # the later one counts now
    assert r.nr_accesses[k_late] == 1 and r.nr_accesses[k_early] == 1


def test_every_report_counts_once_whatever_the_hand_in_delays():
    """Reports at random times handed in at random later checks: the snapshots hold each of
    them exactly once, in the aggregation its time falls in."""
    g = np.random.default_rng(7)
    ops, ctx, snaps = _ctx()
    times = np.sort(g.integers(0, 12_000, 400))
    addrs = g.integers(0, 64, 400) * PAGE
    made = list(zip(addrs.tolist(), times.tolist()))
    for _ in range(12):
        ctx.sample_begin()
        ops.clock.sleep_us(1000)
        now = ops.clock.t
        late = np.array([t < now and g.random() < 0.6 for _, t in made], bool)  # some wait
        ops.pending = [x for x, d in zip(made, late) if d]
        made = [x for x, d in zip(made, late) if not d]
        ctx.sample_end()
    assert len(snaps) == 3
    assert sum(int(s.targets[0].nr_reports.sum()) for s in snaps) + len(made) == 400
