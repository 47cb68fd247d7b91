"""The ops contract (ops/base.py): every hook has a working default, the core calls the hooks
(not attributes it probes for), and PerfOps hands each one to its base explicitly."""

import inspect

import numpy as np
import pytest

from damoncore import (AccessPattern, ApplyResult, Attrs, Context, Filter, FilterNotSupported,
                       Operations, Quota, Scheme, Target)
from damoncore.ops.perf import PerfOps
from fakes import HotRangeOps, VirtualClock

MiB = 1 << 20
HOOKS = ("init", "update", "prepare_access_checks", "check_accesses", "target_valid",
         "cleanup", "get_scheme_score", "apply_scheme", "metric", "translate_reports",
         "native_sampler", "node_ranges", "page_keys")


def test_every_hook_is_declared_with_a_working_default():
    ops = Operations()
    ops.clock = VirtualClock()
    t = Target(ranges=[(0, 4 * MiB)])
    ctx = Context(ops, [t], Attrs(sample_us=1000, aggr_us=10_000))
    ctx.start()
    for name in HOOKS:
        assert callable(getattr(Operations, name)), name
    ops.update(ctx)
    ops.prepare_access_checks(ctx)
    (flags,) = ops.check_accesses(ctx)
    assert flags.dtype == np.uint8 and not flags.any() and len(flags) == t.regions.nr
    assert ops.target_valid(t) is True
    s = Scheme(AccessPattern(), "stat")
    scores = ops.get_scheme_score(ctx, t, s)
    assert scores.dtype == np.uint8 and (scores == 99).all()           # stat: MAX_SCORE
    assert ops.apply_scheme(ctx, t, s, t.regions.start, t.regions.end) == ApplyResult()
    addrs, kept = ops.translate_reports(np.array([1, 2]), np.array([10, 20], np.uint64))
    assert addrs.tolist() == [10, 20] and kept.all()
    assert ops.native_sampler(ctx) is None                           # not offered
    assert ops.node_ranges(ctx, t, t.regions.start, t.regions.end) is None   # cannot tell
    assert ops.page_keys(ctx, t, t.regions.start) is None
    assert 0 < ops.metric("node_mem_used_bp", nid=0) < 10000       # the host, under /sys
    ops.cleanup(ctx)
    assert ctx.min_region == ops.page_size                           # DAMON_MIN_REGION


class TopFirst(HotRangeOps):
    """Scores every region by its address (highest first), whatever the action."""

    def get_scheme_score(self, ctx, target, scheme):
        return np.linspace(0, 99, target.regions.nr).astype(np.uint8)


def test_the_core_asks_the_backend_for_scores():
    ops = TopFirst(p_cold=1.0)
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=10_000,
               quota=Quota(sz_bytes=4 * MiB, reset_interval_ms=1000))
    ctx = Context(ops, [Target(ranges=[(0, 64 * MiB)])],
                  Attrs(sample_us=1000, aggr_us=10_000, min_nr_regions=16, max_nr_regions=16),
                  schemes=[s])
    ctx.run(10_000)
    (_, _, starts, ends), = ops.applied
    assert int(ends[-1]) == 64 * MiB and int(starts[0]) >= 60 * MiB   # the best: the top


def test_a_bad_score_array_is_named():
    class Short(HotRangeOps):
        def get_scheme_score(self, ctx, target, scheme):
            return np.zeros(1, np.uint8)

    s = Scheme(AccessPattern(), "pageout", quota=Quota(sz_bytes=MiB, reset_interval_ms=10))
    ctx = Context(Short(), [Target(ranges=[(0, 16 * MiB)])], Attrs(sample_us=1000,
                                                                   aggr_us=2000), schemes=[s])
    with pytest.raises(RuntimeError, match="get_scheme_score returned 1 scores for"):
        ctx.run(10_000)


def test_an_ops_filter_the_backend_cannot_evaluate_is_refused_at_install():
    s = Scheme(AccessPattern(), "pageout", filters=[Filter("memcg", memcg_path="/a")])
    with pytest.raises(FilterNotSupported, match="cannot evaluate filter 'memcg'"):
        Context(HotRangeOps(), [Target(ranges=[(0, MiB)])], schemes=[s])
    # core filters are the core's: always accepted
    Context(HotRangeOps(), [Target(ranges=[(0, MiB)])],
            schemes=[Scheme(filters=[Filter("addr", address_range=(0, 4096))])])


def test_apply_at_the_next_sample():
    ops = HotRangeOps(p_cold=1.0)
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=1_000_000)
    ctx = Context(ops, [Target(ranges=[(0, 16 * MiB)])], Attrs(sample_us=1000, aggr_us=10_000),
                  schemes=[s])
    ctx.run(5_000, cleanup=False)
    assert not ops.applied
    ctx.apply_scheme_at_next_sample(s)
    ctx.run(1_000, cleanup=False)
    assert ops.applied
    with pytest.raises(Exception, match="not a scheme of this context"):
        ctx.apply_scheme_at_next_sample(Scheme())


class Recorder(Operations):
    """A base backend that records which hooks were called."""

    space, page_size = "fvaddr", 8192
    supported_actions = frozenset({"stat", "cold"})

    def __init__(self):
        self.calls = []
        self.clock = VirtualClock()

    def __getattribute__(self, name):
        if name in HOOKS:
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


def test_perf_ops_hands_every_hook_to_its_base_explicitly():
    assert "__getattr__" not in vars(PerfOps)
    base = Recorder()
    ops = PerfOps(base, drain_thread=False)
    assert (ops.space, ops.page_size, ops.clock) == ("fvaddr", 8192, base.clock)
    assert ops.supported_actions == base.supported_actions
    assert ops.supported_filters == base.supported_filters
    t = Target(ranges=[(0, MiB)])
    ctx = Context(ops, [t], primitives=("page_fault",))
    s = Scheme()
    for name, args in (("update", (ctx,)), ("prepare_access_checks", (ctx,)),
                       ("target_valid", (t,)), ("get_scheme_score", (ctx, t, s)),
                       ("apply_scheme", (ctx, t, s, np.zeros(1, np.uint64),
                                         np.ones(1, np.uint64))),
                       ("translate_reports", (np.zeros(1), np.zeros(1, np.uint64))),
                       ("node_ranges", (ctx, t, np.zeros(1, np.uint64), np.ones(1, np.uint64))),
                       ("page_keys", (ctx, t, np.zeros(1, np.uint64)))):
        base.calls.clear()
        getattr(ops, name)(*args)
        assert base.calls == [name], name
    base.calls.clear()
    with pytest.raises(Exception):
        ops.metric("node_mem_used_bp", nid=123456)       # the base's (host) answer: no node
    assert base.calls == ["metric"]
    # PerfOps declares each hook itself (no forwarding of unknown names)
    for name in HOOKS:
        if name != "native_sampler":                  # perf keeps the generic path
            assert name in vars(PerfOps), name
    assert inspect.signature(PerfOps.apply_scheme).parameters["ops_filters"].default is None
