"""Holistic NUMA migration on the simulated seed topology (virtual time, fixed seeds)."""

import os
import sys

import numpy as np
import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.ops.sim import SimOps
from damoncore.policies.holistic import HolisticConfig, arbitrate, select_ranges
from damoncore.schemes.scheme import AccessPattern, Filter, Quota, Scheme
from damoncore.sim import Mapping, Process, Stream, Workload
from damoncore.sim.extents import key_of
from damoncore.sim.presets import tiering_machine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import eval_holistic as ev  # noqa: E402

MiB = 1 << 20
SCALE = 0.125                     # 16 MiB private ranges, 64 MiB DRAM nodes


def setup(phase_us=60_000_000, cfg=None, scale=SCALE, seed=0):
    m = ev.machine(False, scale, seed)
    m.add_workload(ev.workload(False, phase_us, scale))
    return m, ev.holistic(m, cfg or ev.default_config(), seed)


def phys(m, start, end):
    """[(pstart, pend, node)] behind virtual [start, end) of the workload's process."""
    k = m.pidx(ev.PID)
    lo, hi, ps, node = m.segments(key_of(k, [start]), key_of(k, [end]))
    return ps, ps + (hi - lo), node


def share_on(m, name, nid, scale=SCALE):
    s, e = ev.ranges(False, scale)[name]
    ps, pe, node = phys(m, s, e)
    return float((pe - ps)[node == nid].sum()) / (e - s)


def test_contexts_see_only_their_accessors_reports():
    cfg = ev.default_config()
    cfg.min_age_aggrs = 10_000          # monitor only: nothing is ever approved to move
    m, pol = setup(cfg=cfg)
    assert [c.primitives for c in pol.contexts] == [("page_fault",)] * 2
    assert [set(c.sample_filters[0].cpus) for c in pol.contexts] == [{0}, {2}]
    snaps = {}
    for c in pol.contexts:
        c.add_callback(lambda ctx, snap: snaps.__setitem__(ctx.name, snap))
    pol.run(1_000_000)
    assert m.stats()["migrated"] == {}
    r = ev.ranges(False, SCALE)

    def mean_rate(snap, name):
        # points in the middle 80% of the range's physical pages (all on node 0, target 0):
        # regions still straddle the edges to the neighbouring ranges
        ps, pe, node = phys(m, *r[name])
        assert (node == 0).all()
        pts = np.concatenate([np.linspace(a + (b - a) // 10, b - (b - a) // 10, 16)
                              for a, b in zip(ps.astype(np.int64), pe.astype(np.int64))])
        t = snap.targets[0]
        k = np.searchsorted(t.start, pts.astype(np.uint64), side="right") - 1
        return float(t.nr_accesses[k].mean()) / snap.max_nr_accesses

    # priv1 is touched by the CPU1 thread only, priv2 by the CPU2 thread only
    assert mean_rate(snaps["cpu1"], "priv1") > 0.8
    assert mean_rate(snaps["cpu1"], "priv2") < 0.1
    assert mean_rate(snaps["cpu2"], "priv2") > 0.8
    assert mean_rate(snaps["cpu2"], "priv1") < 0.1


def test_arbitrate_table():
    cost = np.array([[10, 20, 50, 60], [50, 60, 10, 20]], float)
    top, w = np.array([0, 2]), np.ones(2)
    hot = np.array([[0.9, 0.0],      # private to accessor 0: free for all
                    [0.8, 0.8],      # equal: no gain anywhere, stays
                    [1.0, 0.3],      # on node 2, mostly accessor 0's: accessor 0 takes it
                    [0.5, 0.4],      # on node 2: gain (26 vs 30) below 20%: stays
                    [0.3, 1.0]])     # on node 2 already best: nobody moves it
    cur = np.array([0, 0, 2, 2, 2])
    got = arbitrate(hot, w, cost, top, cur, 0.25, 2000)
    assert got.tolist() == [[True, True], [False, False], [True, False], [False, False],
                            [False, False]]
    # without the gain margin the small gain is taken
    assert arbitrate(hot, w, cost, top, cur, 0.25, 0)[3].tolist() == [True, False]
    # an accessor weight tips an equal split
    assert arbitrate(hot[1:2], np.array([1.0, 2.0]), cost, top, cur[1:2], 0.25,
                     2000).tolist() == [[False, True]]


def test_a_piece_hot_on_average_for_its_owner_is_not_free_for_a_passer_by():
    """A region of CPU1's on node 2 (CPU2's DRAM) straddles CPU2's pages: hot for CPU1 in
    every aggregation (30%: it covers a few of CPU1's pages too) but under the threshold
    on average, while CPU2 finds it hot throughout.  Arbitration must weigh CPU1 against
    CPU2 (CPU2 wins, the piece stays) rather than see one accessor hot on average and leave
    the piece free for all: CPU1 would take CPU2's pages to node 0 (the phase-2 drift of
    benchmarks/eval_holistic.py).  Next to it, a piece only CPU1 touches is approved after
    the dwell."""
    from damoncore.core.snapshot import Snapshot, TargetSnapshot
    m, pol = setup()
    ti, base = pol.ti[2], m.node_range(2)[0]
    straddle, own = (base, base + MiB), (base + MiB, base + 2 * MiB)

    def snap(regions):
        s = np.array([a for (a, _), _ in regions], np.uint64)
        e = np.array([b for (_, b), _ in regions], np.uint64)
        n = np.array([x for _, x in regions], np.uint32)
        return Snapshot(0, 100_000, 5_000, 100_000, 20,
                        [TargetSnapshot(ti, None, s, e, n, np.zeros(len(s), np.uint32))])

    cpu1 = snap([(straddle, 6), (own, 6)])          # 30% of the samples
    cpu2 = snap([(straddle, 20), (own, 0)])
    proms = [s for t, s in pol.promotes[0] if t == ti]
    assert proms
    for r in range(1, 7):
        pol.decide([cpu1, cpu2])
        for s in proms:
            got = [f.address_range for f in s.filters if f.filter_type == "addr"]
            assert got == ([own] if r >= 3 else []), (r, s.name, got)


@pytest.mark.parametrize("min_reports", [0.0, 16.0])
def test_one_stray_report_does_not_make_a_large_region_hot(min_reports):
    """The guest failure: one fault of CPU1's in a 20 MiB region on node 1 (CPU1's CXL)
    made the whole region hot for CPU1 (nr_accesses saturates at one report per sample);
    CPU2's thread faulted thousands of times on its pages in half of it, but the tie went
    to CPU1, whose promotion took CPU2's pages to node 0.  With ``min_reports_per_mib`` the
    sparse region counts as not accessed: CPU2 alone promotes its half."""
    from damoncore.core.snapshot import Snapshot, TargetSnapshot
    cfg = ev.default_config()
    cfg.min_age_aggrs, cfg.hot_percent, cfg.min_reports_per_mib = 1, 1, min_reports
    m, pol = setup(cfg=cfg)
    ti, base = pol.ti[1], m.node_range(1)[0]
    big = (base, base + 20 * MiB)
    b_half = (base, base + 10 * MiB)

    def snap(regions):
        s = np.array([a for (a, _), _, _ in regions], np.uint64)
        e = np.array([b for (_, b), _, _ in regions], np.uint64)
        n = np.array([x for _, x, _ in regions], np.uint32)
        r = np.array([x for _, _, x in regions], np.uint64)
        return Snapshot(0, 1_000_000, 1_000_000, 1_000_000, 1,
                        [TargetSnapshot(ti, None, s, e, n, np.zeros(len(s), np.uint32), r)])

    cpu1 = snap([(big, 1, 1)])                                     # one stray fault
    cpu2 = snap([(b_half, 1, 2560), ((b_half[1], big[1]), 0, 0)])  # one per page
    pol.decide([cpu1, cpu2])
    approved = [[f.address_range for s in (x for t, x in pol.promotes[a] if t == ti)
                 for f in s.filters if f.filter_type == "addr"] for a in (0, 1)]
    if min_reports:
        assert not approved[0] and approved[1] and set(approved[1]) == {b_half}
        assert pol.nr_sparse_rejected == 2        # both pieces of the big region, for CPU1
    else:
        assert approved[0] and not approved[1], approved     # the failure this guards against


def test_select_ranges_budget_priority_and_coalescing():
    b = np.array([0, 4096, 8192, 16384, 20480], np.uint64)
    mask = np.array([True, True, False, True])
    assert select_ranges(b, mask, [1, 1, 0, 1], 1 << 20, 8) == [(0, 8192), (16384, 20480)]
    # budget of 1.5 pages: the hottest piece whole, the next cut to whole pages (none)
    assert select_ranges(b, mask, [1, 2, 0, 3], 6144, 8) == [(16384, 20480)]
    assert select_ranges(b, mask, [1, 2, 0, 3], 8192, 8) == [(4096, 8192), (16384, 20480)]
    assert select_ranges(b, mask, [1, 1, 0, 1], 1 << 20, 1) == [(0, 8192)]


def test_private_hot_data_goes_to_its_sockets_dram():
    m, pol = setup()
    assert share_on(m, "priv2", 0) == 1.0            # first touch put it on socket 1
    pol.run(3_000_000)
    assert share_on(m, "priv1", 0) > 0.97
    assert share_on(m, "priv2", 2) > 0.97
    # the shared range is hot for both at equal rates: no cost gain, it stays put
    assert share_on(m, "shared", 0) > 0.9
    st = pol.stats()
    assert st["cpu2"]["migrated"].get((0, 2), 0) >= 0.97 * 16 * MiB
    assert st["cpu1"]["sz_promoted"] <= 0.01 * 16 * MiB


def alternating(period_us, n):
    m = ev.machine(False, SCALE)
    s, e = ev.DEFAULT_BASE, ev.DEFAULT_BASE + 8 * MiB
    proc = Process(ev.PID, (Mapping(s, e, node=1),), node=0)
    phases = [(i * period_us, [Stream(ev.CPU1 if i % 2 == 0 else ev.CPU2, ev.PID, s, e, 300.0)])
              for i in range(n)]
    m.add_workload(Workload([proc], phases))
    return m


@pytest.mark.parametrize("hysteresis", [True, False])
def test_no_ping_pong_when_two_accessors_alternate(hysteresis):
    """Two threads on different sockets take turns on one range every 200 ms."""
    m = alternating(200_000, 40)
    cfg = ev.default_config()
    if not hysteresis:
        cfg.min_age_aggrs, cfg.min_gain_bp = 1, 0
    ev.holistic(m, cfg).run(8_000_000)
    moved = sum(v for (a, b), v in m.stats()["migrated"].items()) / (8 * MiB)
    if hysteresis:
        # it may leave the CXL node once; then it must stay
        assert moved <= 1.05
    else:
        # the same run without the dwell and gain rules chases the accessors
        assert moved >= 3


def burst(start_us, length_us):
    """An 8 MiB range on CXL1 (node 1) that the CPU1 thread touches only in
    [start_us, start_us + length_us), like one scan's worth of NUMA hint faults."""
    m = ev.machine(False, SCALE)
    s, e = ev.DEFAULT_BASE, ev.DEFAULT_BASE + 8 * MiB
    proc = Process(ev.PID, (Mapping(s, e, placement=((1, e - s),)),), node=0)
    m.add_workload(Workload([proc], [(0, []), (start_us, [Stream(ev.CPU1, ev.PID, s, e, 300.0)]),
                                     (start_us + length_us, [])]))
    return m


def share_on_node(m, s_e, nid):
    ps, pe, node = phys(m, *s_e)
    return float((pe - ps)[node == nid].sum()) / (s_e[1] - s_e[0])


@pytest.mark.parametrize("min_age", [1, 2])
def test_burst_hot_in_one_aggregation_is_enough(min_age):
    """The coordinator approves at the end of aggregation N, the schemes act at the end of
    N + 1: the approval must hold although the range is idle in N + 1.  The dwell rule
    stays the coordinator's: with min_age 2 one hot aggregation moves nothing."""
    m = burst(120_000, 40_000)          # inside the 2nd 100 ms aggregation only
    cfg = ev.default_config()
    cfg.hot_percent, cfg.min_age_aggrs = 10, min_age
    pol = ev.holistic(m, cfg)
    assert share_on_node(m, s_e=(ev.DEFAULT_BASE, ev.DEFAULT_BASE + 8 * MiB), nid=1) == 1.0
    kd = pol.kdamond()
    # decided at the end of the 2nd aggregation (200 ms), applied at the next sample
    kd.run(230_000, cleanup=False)
    assert m.stats()["migrated"].get((1, 0), 0) == (8 * MiB if min_age == 1 else 0)
    kd.run(770_000)
    moved = m.stats()["migrated"].get((1, 0), 0)
    if min_age == 1:
        assert moved >= 0.97 * 8 * MiB, m.stats()["migrated"]
        assert pol.stats()["cpu1"]["migrated"].get((1, 0), 0) == moved
        assert share_on_node(m, (ev.DEFAULT_BASE, ev.DEFAULT_BASE + 8 * MiB), 0) >= 0.97
    else:
        assert moved == 0, m.stats()["migrated"]


def test_small_evaluation_inequality():
    """The benchmark's claim on 2 x 5 s instead of 2 x 20 s: the two transitions (about
    0.5 s each at 2-4x the steady cost) weigh 4x more, so the oracle margin is 20% here
    (10% in benchmarks/eval_holistic.py)."""
    r = ev.evaluate(False, phase_us=5_000_000, scale=0.25,
                    policies=("single-path TPP", "holistic", "oracle"))
    assert r["holistic"]["cost"] <= 1.20 * r["oracle"]["cost"]
    assert r["holistic"]["cost"] <= 0.85 * r["single-path TPP"]["cost"]
    assert r["holistic"]["local"] > r["single-path TPP"]["local"] + 0.2


# --- regressions for problems this policy's author found in the code it builds on -------

def test_quota_histogram_ignores_core_filtered_regions():
    from fakes import HotRangeOps, VirtualClock
    ops = HotRangeOps(hot=[(0, 64 * MiB)], p_hot=1.0, p_cold=0.0, clock=VirtualClock())
    # target 0: 64 MiB hot for long (high score), rejected by the scheme's target filter;
    # target 1 becomes hot later (younger, lower score) and is what the scheme may act on
    t0, t1 = Target(ranges=[(0, 64 * MiB)]), Target(ranges=[(64 * MiB, 72 * MiB)])
    s = Scheme(AccessPattern(min_nr_accesses=1), "migrate_hot", target_nid=0,
               quota=Quota(sz_bytes=8 * MiB, reset_interval_ms=100, weight_nr_accesses=1,
                           weight_age=1),
               filters=[Filter("target", matching=False, allow=False, target_idx=1)])
    ctx = Context(ops, [t0, t1], Attrs(min_nr_regions=3, max_nr_regions=10), schemes=[s])
    ctx.run(3_000_000)
    ops.hot.append((64 * MiB, 72 * MiB))
    ctx.run(1_000_000)
    assert any(ti == 1 for ti, *_ in ops.applied)


def test_sim_page_fault_context_runs_in_slices():
    m = tiering_machine(64 * MiB, 64 * MiB)
    m.add_workload(Workload.hot_cold(32 * MiB, 0, 4 * MiB))
    ctx = Context(SimOps(m, space="paddr"), [Target(ranges=[(0, 128 * MiB)])], Attrs(),
                  primitives=("page_fault",))
    ctx.run(200_000)
    ctx.run(200_000)
