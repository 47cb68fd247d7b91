"""Core filters as the kernel applies them: a region an addr/target filter allowed skips the
ops filters (``core_filters_allowed``), and addr filter edges cut regions only at
``min_region`` boundaries (``damos_filter_match()`` aligns them down)."""

import numpy as np

from damoncore import AccessPattern, ApplyResult, Attrs, Context, Filter, Scheme, Target
from damoncore.ops.sim import SimOps
from damoncore.sim.presets import tiering_machine
from damoncore.sim.workloads import Workload
from damoncore.vocab import OPS_FILTER_TYPES
from fakes import HotRangeOps

MiB = 1 << 20
PAGE = 4096


class FilterRecordingOps(HotRangeOps):
    """Evaluates nothing itself: records the ops filters it was given per range."""

    supported_filters = OPS_FILTER_TYPES

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def apply_scheme(self, ctx, target, scheme, starts, ends, ops_filters=None):
        filters = scheme.ops_filters if ops_filters is None else ops_filters
        self.calls.append((starts.copy(), ends.copy(), [f.filter_type for f in filters]))
        return ApplyResult(sz_applied=int((ends - starts).sum()))


def test_ranges_an_addr_filter_allowed_skip_the_ops_filters():
    ops = FilterRecordingOps(p_cold=1.0)
    lo, hi = 16 * MiB, 32 * MiB
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=10_000,
               filters=[Filter("addr", allow=True, address_range=(lo, hi)),
                        Filter("anon", allow=False)])
    ctx = Context(ops, [Target(ranges=[(0, 64 * MiB)])], Attrs(sample_us=5000, aggr_us=10_000),
                  schemes=[s])
    ctx.run(50_000)
    assert ops.calls
    inside = outside = 0
    for starts, ends, types in ops.calls:
        a_in = (starts >= lo) & (ends <= hi)
        assert a_in.all() or (~a_in).all(), "one call mixes allowed and filtered ranges"
        if a_in.all():
            assert types == [], "ops filters applied to ranges an addr filter allowed"
            inside += int((ends - starts).sum())
        else:
            assert types == ["anon"]
            outside += int((ends - starts).sum())
    assert inside > 0 and outside > 0


def test_addr_allow_then_anon_reject_acts_on_the_allowed_range():
    """[addr allow 16 MiB, anon reject] on a process whose memory is all anonymous: the
    kernel pages out the 16 MiB a core filter allowed (the anon filter is not asked for
    them) and nothing else.  dbaf4b9 acted on 0 MiB."""
    m = tiering_machine(256 * MiB, 256 * MiB, seed=1)
    m.add_workload(Workload.hot_cold(64 * MiB, 0, 8 * MiB, pid=7))
    (a, b), = m.mappings(7)
    lo = a + 16 * MiB
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=100_000,
               filters=[Filter("addr", allow=True, address_range=(lo, lo + 16 * MiB)),
                        Filter("anon", allow=False)])
    ctx = Context(SimOps(m, space="vaddr", pid=7), [Target(pid=7, ranges=[(a, b)])], Attrs(),
                  schemes=[s])
    ctx.run(300_000)
    assert s.stats.sz_applied == 16 * MiB


def test_addr_filter_edges_are_aligned_to_min_region():
    """An addr filter whose edges are not page aligned cuts regions at the page below each
    edge (dbaf4b9 cut at the byte: 1 KiB regions appeared), and decides with those edges."""
    ops = FilterRecordingOps(p_cold=1.0)
    f = Filter("addr", allow=True, address_range=(MiB + 1024, 3 * MiB + 3 * 1024))
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=10_000, filters=[f])
    ctx = Context(ops, [Target(ranges=[(0, 8 * MiB)])], Attrs(sample_us=5000, aggr_us=10_000),
                  schemes=[s])
    ctx.run(100_000)
    r = ctx.targets[0].regions
    assert ctx.min_region == PAGE == ops.page_size
    assert (r.start % PAGE == 0).all() and (r.end % PAGE == 0).all(), r.sizes().min()
    acted = [(int(a), int(b)) for starts, ends, _ in ops.calls for a, b in zip(starts, ends)]
    assert acted and all(MiB <= a and b <= 3 * MiB for a, b in acted)
    assert min(a for a, _ in acted) == MiB and max(b for _, b in acted) == 3 * MiB
