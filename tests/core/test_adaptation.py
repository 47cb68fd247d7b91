"""Pluggable region adaptation: the kernel's merge/split by default, a fixed-granularity
baseline, custom ones checked by the core (simulated memory, real core loop)."""

import numpy as np
import pytest

from damoncore.core import Adaptation, Attrs, Context, FixedRegions, KernelAdaptation, Target
from damoncore.errors import AdaptationError, InvalidConfig
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.presets import GiB, MiB, tiering_machine
from damoncore.sim.workloads import DEFAULT_BASE as BASE

ATTRS = Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=64, max_nr_regions=1000)
SIZE, HOT = 1 * GiB, 64 * MiB


def _run(adaptation, seconds=2.0, seed=3):
    m = tiering_machine(2 * GiB, 2 * GiB, seed=seed)
    m.add_workload(Workload.hot_cold(SIZE, 256 * MiB, HOT, hot_rate=500.0, cold_rate=0.1))
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)], ATTRS, seed=seed,
                  adaptation=adaptation)
    snaps = []
    ctx.add_callback(lambda c, s: snaps.append(s.targets[0]))
    ctx.run(int(seconds * 1e6))
    return ctx, snaps


def _hot_share(t):
    """Share of the hot range inside regions with nr_accesses >= half of the maximum."""
    lo, hi = BASE + 256 * MiB, BASE + 256 * MiB + HOT
    hot = t.nr_accesses >= max(1, t.nr_accesses.max()) // 2
    ov = np.clip(np.minimum(t.end, hi).astype(np.int64) - np.maximum(t.start, lo).astype(np.int64),
                 0, None)
    return ov[hot].sum() / HOT


def test_default_is_the_kernel_algorithm():
    _, a = _run(None)
    _, b = _run(KernelAdaptation())
    assert len(a) == len(b) >= 15
    for x, y in zip(a, b):
        assert x.start.tolist() == y.start.tolist()
        assert x.nr_accesses.tolist() == y.nr_accesses.tolist()
    # the kernel's algorithm adapts: fewer regions than the 64 it started with, hot found
    assert len(a[-1].start) != 64 and _hot_share(a[-1]) >= 0.9


def test_fixed_regions_keep_the_initial_boundaries():
    ctx, snaps = _run(FixedRegions())
    first = snaps[0].start.tolist()
    assert len(first) == 64
    assert all(s.start.tolist() == first for s in snaps)
    assert all(s.end.tolist() == snaps[0].end.tolist() for s in snaps)
    # sampling still runs: the 4 regions over the 64 MiB hot range read hot
    assert _hot_share(snaps[-1]) == 1.0
    ctx.active_targets[0].regions.check_invariants([(BASE, BASE + SIZE)])


class HalveLargest(Adaptation):
    """A custom one: no merge, split the largest region in two each aggregation."""

    name = "halve-largest"

    def split(self, ctx):
        for t in ctx.active_targets:
            r = t.regions
            k = int(np.argmax(r.end - r.start))
            mid = (r.start[k] + (r.end[k] - r.start[k]) // 2) // 4096 * 4096
            r.split_at(np.array([k]), np.array([mid], np.uint64))


def test_custom_adaptation_runs_in_the_loop():
    _, snaps = _run(HalveLargest(), seconds=1.0)
    counts = [len(s.start) for s in snaps]
    assert counts == list(range(64, 64 + len(counts))), counts


class Broken(Adaptation):
    def __init__(self, how):
        self.how, self.name = how, f"broken-{how}"

    def merge(self, ctx, threshold):
        r = ctx.active_targets[0].regions
        if self.how == "drop":            # loses the last region's bytes
            r.truncate(r.nr - 1)
        elif self.how == "overlap":
            r.start[1] = r.start[0]
        elif self.how == "ragged":        # a column left behind
            r.age = r.age[:-1]


@pytest.mark.parametrize("how,msg", [("drop", "no longer cover"),
                                     ("overlap", "overlap or are unsorted"),
                                     ("ragged", "different lengths")])
def test_a_custom_adaptation_that_breaks_regions_is_named(how, msg):
    with pytest.raises(AdaptationError, match=f"broken-{how}.*in merge: .*{msg}"):
        _run(Broken(how), seconds=0.2)


def test_adaptation_must_be_an_adaptation():
    m = tiering_machine(GiB, GiB)
    with pytest.raises(InvalidConfig, match="adaptation must be an Adaptation, got str"):
        Context(SimOps(m), [Target(ranges=[(0, GiB)])], adaptation="kernel")


class SplitTooFine(KernelAdaptation):
    """A subclass of the kernel's that breaks a rule is checked like any custom one."""

    name = "kernel-but-broken"

    def split(self, ctx):
        super().split(ctx)
        r = ctx.active_targets[0].regions
        r.end[0] = r.start[0]


def test_subclass_of_the_kernel_adaptation_is_checked_too():
    with pytest.raises(AdaptationError, match="kernel-but-broken.*in split: empty or inverted"):
        _run(SplitTooFine(), seconds=0.2)
