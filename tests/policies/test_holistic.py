"""Holistic NUMA migration on the simulated seed topology (virtual time, fixed seeds)."""

import numpy as np
import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.ops.sim import SimOps
from damoncore.policies.evaluation import holistic as ev
from damoncore.policies.holistic import (PageHistory, arbitrate, subtract_ranges,
                                         weighted_median)
from damoncore.schemes.scheme import AccessPattern, Filter, Quota, Scheme
from damoncore.sim import Mapping, Process, Stream, Workload
from damoncore.sim.extents import key_of
from damoncore.sim.presets import tiering_machine

MiB = 1 << 20
SCALE = 0.125                     # 16 MiB private ranges, 64 MiB DRAM nodes


def setup(phase_us=60_000_000, cfg=None, scale=SCALE, seed=0, report_period=None):
    m = ev.machine(False, scale, seed)
    m.add_workload(ev.workload(False, phase_us, scale))
    return m, ev.holistic(m, cfg or ev.default_config(), seed, report_period)


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

    def reports_in(snap, name):
        ps, pe, node = phys(m, *r[name])
        assert (node == 0).all()
        got = snap.targets[0].report_addrs
        return int(sum(((got >= a) & (got < b)).sum() for a, b in zip(ps, pe)))

    # priv1 is touched by the CPU1 thread only, priv2 by the CPU2 thread only: each
    # context's reports name its own thread's pages, never the other's
    n1, n2 = (len(snaps[c].targets[0].report_addrs) for c in ("cpu1", "cpu2"))
    assert reports_in(snaps["cpu1"], "priv1") > 0.7 * n1 and n1 > 1000
    assert reports_in(snaps["cpu1"], "priv2") == 0
    assert reports_in(snaps["cpu2"], "priv2") > 0.7 * n2 and n2 > 1000
    assert reports_in(snaps["cpu2"], "priv1") == 0
    # and the regions' report counts add up to the reports the snapshot names
    for c in ("cpu1", "cpu2"):
        t = snaps[c].targets[0]
        assert int(t.nr_reports.sum()) == len(t.report_addrs)


def test_arbitrate_table():
    """Weighted cost over every accessor, the cheapest reachable node with room, and the
    gain margin for shared pieces only."""
    cost = np.array([[10, 20, 50, 60], [50, 60, 10, 20]], float)
    w = np.ones(2)
    dens = np.array([[0.9, 0.0],      # accessor 0's, on node 2: to node 0
                     [0.8, 0.8],      # equal, on node 0: no gain anywhere, stays
                     [1.0, 0.3],      # on node 2, mostly accessor 0's: to node 0 (40% gain)
                     [0.5, 0.4],      # on node 2: node 0 gains 13% only: stays
                     [0.3, 1.0]])     # on node 2 already best: nobody moves it
    cur = np.array([2, 0, 2, 2, 2])
    shared = np.array([False, True, True, True, True])
    reach = np.ones((5, 4), bool)
    room = np.ones(4, bool)
    dst, c, best, ok = arbitrate(dens, w, cost, cur, reach, room, 2000, shared)
    assert ok.tolist() == [True, False, True, False, False]
    assert dst[ok].tolist() == [0, 0]
    assert c[1] == best[1] == pytest.approx(48.0)
    # without the gain margin the small gain is taken
    assert arbitrate(dens, w, cost, cur, reach, room, 0, shared)[3][3]
    # an accessor weight tips an equal split
    d, _, _, o = arbitrate(dens[1:2], np.array([1.0, 2.0]), cost, cur[1:2], reach[1:2],
                           room, 2000, shared[1:2])
    assert o.tolist() == [True] and d.tolist() == [2]
    # a full node is no destination: the next cheapest with room, if it still gains
    room0 = np.array([False, True, True, True])
    d, _, _, o = arbitrate(dens[:1], w, cost, cur[:1], reach[:1], room0, 2000, shared[:1])
    assert d.tolist() == [1] and o.tolist() == [True]
    # and only where some scheme can take the piece
    d, _, _, o = arbitrate(dens[:1], w, cost, cur[:1], np.array([[False, False, True, True]]),
                           room, 2000, shared[:1])
    assert o.tolist() == [False]


def test_weighted_median_and_subtract_ranges():
    assert weighted_median([1, 5, 9], [1, 1, 10]) == 9
    assert weighted_median([1, 5, 9], [10, 1, 1]) == 1
    assert weighted_median([], []) == 0.0
    s, e = subtract_ranges([0, 200], [100, 300], [10, 15, 50, 250], [20, 30, 60, 260])
    assert list(zip(s.tolist(), e.tolist())) == [(0, 10), (30, 50), (60, 100), (200, 250),
                                                 (260, 300)]


def test_page_history_follows_a_page_to_its_new_frame():
    """History is keyed by the page, not the frame: a page the policy moved keeps its
    averages and counts the move once it is reported at its new address; a report at the
    old frame right after the approval predates the move and does not relocate it."""
    node_of = lambda a: (np.asarray(a, np.uint64) >= np.uint64(1 << 30)).astype(np.int64)
    h = PageHistory(2, node_of)
    k = np.array([7, 8], np.uint64)
    old = np.array([4096, 8192], np.uint64)
    for r in (1, 2, 3):
        h.decay()
        h.add(k, old, 0, r)
    assert h.ema[0, 0] == pytest.approx(1 - 0.75 ** 3)
    h.approved(np.array([0]), 3)                     # page 7 is to move
    assert h.loc[0] == PageHistory.NOWHERE and h.located(0, 1 << 40)[1].tolist() == [8192]
    h.decay()
    h.add(k[:1], old[:1], 0, 4)                      # a report from before the move
    assert h.loc[0] == PageHistory.NOWHERE and h.moves[0] == 0
    h.decay()
    new = np.array([(1 << 30) + 4096], np.uint64)
    h.add(k[:1], new, 1, 5)                          # at its new frame, on node 1
    assert h.loc[0] == new[0] and h.moves[0] == 1 and h.moved_at[0] == 5
    assert h.ema[0, 0] > 0.5 and h.ema[0, 1] == pytest.approx(0.25)   # history kept
    # a move that failed: reported at the old frame later, the page is where it was
    h.approved(np.array([1]), 5)
    for r in (6, 7):
        h.decay()
        h.add(k[1:], old[1:], 0, r)
    assert h.loc[1] == old[1] and h.moves[1] == 0
    # keyed by address (a backend without page keys), a moved page starts over
    h2 = PageHistory(1, node_of, by_address=True)
    h2.add(np.array([1], np.uint64), np.array([4096], np.uint64), 0, 1)
    h2.approved(np.array([0]), 1)
    assert len(h2) == 0


def _snap(ti, regions, reports, max_nr=20):
    """A snapshot of target ``ti``: regions [((start, end), nr_accesses)] and the report
    addresses."""
    from damoncore.core.snapshot import Snapshot, TargetSnapshot
    st = np.array([a for (a, _), _ in regions], np.uint64)
    en = np.array([b for (_, b), _ in regions], np.uint64)
    nr = np.array([x for _, x in regions], np.uint32)
    addrs = np.sort(np.asarray(reports, np.uint64))
    cnt = np.array([((addrs >= a) & (addrs < b)).sum() for a, b in zip(st, en)], np.uint64)
    return Snapshot(0, 100_000, 5_000, 100_000, max_nr,
                    [TargetSnapshot(ti, None, st, en, nr, np.zeros(len(st), np.uint32), cnt,
                                    addrs)])


def _approved(pol, a, ti):
    return [f.address_range for t, s in pol.promotes[a] if t == ti for f in s.filters
            if f.filter_type == "addr"]


def test_only_reported_pages_move_cold_neighbours_stay():
    """A 4 MiB region on CXL1 in which CPU2 touches every 4th page: its promotion's allow
    filters (to node 2) are exactly those pages; the region's other pages, never reported,
    stay."""
    cfg = ev.default_config()
    cfg.min_age_aggrs = 1
    m, pol = setup(cfg=cfg)
    ti, base = pol.ti[1], m.node_range(1)[0]
    region = ((base, base + 4 * MiB), 20)
    hot = base + np.arange(0, 4 * MiB, 4 * 4096, dtype=np.uint64)
    pol.decide([_snap(ti, [region], []), _snap(ti, [region], hot)])
    got = _approved(pol, 1, ti)
    assert sorted(got) == [(int(a), int(a) + 4096) for a in hot]
    assert [s.name for t, s in pol.promotes[1] if t == ti
            and any(f.filter_type == "addr" for f in s.filters)] == ["cpu2:promote 1->2"]
    assert _approved(pol, 0, ti) == []


@pytest.mark.parametrize("min_reports", [0.0, 16.0])
def test_one_stray_report_moves_one_page_at_most(min_reports):
    """The guest failure: one fault of CPU1's in a 20 MiB region on node 1 (CPU1's CXL)
    that holds CPU2's hot pages made the whole region hot for CPU1, and its promotion took
    CPU2's pages to node 0.  Now hotness is per page and so are the moves: CPU2's pages go
    to node 2; CPU1's stray report can move its one page at most, and with
    ``min_reports_per_mib`` not even that (its piece is far too sparse)."""
    cfg = ev.default_config()
    cfg.min_age_aggrs, cfg.min_reports_per_mib = 1, min_reports
    m, pol = setup(cfg=cfg)
    ti, base = pol.ti[1], m.node_range(1)[0]
    big = ((base, base + 20 * MiB), 20)
    b_pages = base + np.arange(0, 10 * MiB, 4096, dtype=np.uint64)     # CPU2's half
    stray = np.array([base + 15 * MiB], np.uint64)
    pol.decide([_snap(ti, [big], stray), _snap(ti, [big], b_pages)])
    cpu1, cpu2 = _approved(pol, 0, ti), _approved(pol, 1, ti)
    assert sum(b - a for a, b in cpu2) == 10 * MiB
    assert min(a for a, _ in cpu2) == base and max(b for _, b in cpu2) == base + 10 * MiB
    if min_reports:
        assert cpu1 == [] and pol.nr_sparse_rejected >= 1
    else:
        # node 0 (CPU1's DRAM) is full here, so even that page stays
        assert cpu1 in ([], [(int(stray[0]), int(stray[0]) + 4096)])


def test_largest_runs_coalesce_and_keep_the_largest():
    from damoncore.policies.holistic import largest_runs
    assert largest_runs([8192, 0, 4096, 20480], [12288, 4096, 8192, 24576], 8) == [
        (0, 12288), (20480, 24576)]
    assert largest_runs([0, 8192, 20480], [4096, 16384, 24576], 1) == [(8192, 16384)]
    assert largest_runs([], [], 4) == []


def test_private_hot_data_goes_to_its_sockets_dram():
    m, pol = setup()
    assert share_on(m, "priv2", 0) == 1.0            # first touch put it on socket 1
    pol.run(3_000_000)
    assert share_on(m, "priv1", 0) > 0.97
    assert share_on(m, "priv2", 2) > 0.97
    # the shared range is hot for both at equal rates: no cost gain, it stays put
    assert share_on(m, "shared", 0) > 0.99
    st = pol.stats()
    assert st["cpu2"]["migrated"].get((0, 2), 0) >= 0.97 * 16 * MiB
    assert st["cpu1"]["sz_promoted"] <= 0.01 * 16 * MiB
    # each page of priv2 moved once; besides, only what node 0 (full at the start) had to
    # give to reach its 0.5% free goal (0.32 MiB, in 256 KiB pieces) was demoted
    assert m.acct.moves.max_count == 1
    mig = m.stats()["migrated"]
    assert mig.get((0, 2)) == 16 * MiB and mig.get((0, 1), 0) <= 0.5 * MiB
    assert sum(mig.values()) == mig.get((0, 2)) + mig.get((0, 1), 0)


def alternating(period_us, n):
    m = ev.machine(False, SCALE)
    s, e = ev.DEFAULT_BASE, ev.DEFAULT_BASE + 8 * MiB
    proc = Process(ev.PID, (Mapping(s, e, node=1),), node=0)
    phases = [(i * period_us, [Stream(ev.CPU1 if i % 2 == 0 else ev.CPU2, ev.PID, s, e, 300.0)])
              for i in range(n)]
    m.add_workload(Workload([proc], phases))
    return m


@pytest.mark.parametrize("period_ms", [200, 2000])
def test_moves_follow_lasting_changes_only(period_ms):
    """Two threads on different sockets take turns on one 8 MiB range first-touched on
    CXL1: every 200 ms, the range must not chase them (it may leave CXL once); every 2 s
    the change is real and lasting, and the range follows each of the four owners (CPU1,
    CPU2, CPU1, CPU2) to its socket's DRAM, once each."""
    m = alternating(period_ms * 1000, 8000 // period_ms + 1)
    pol = ev.holistic(m, ev.default_config())
    pol.run(8_000_000)
    moved = sum(v for (a, b), v in m.stats()["migrated"].items()) / (8 * MiB)
    if period_ms == 200:
        assert moved <= 1.05
    else:
        assert moved >= 3.95 and m.acct.moves.max_count == 4


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
    # every access reported (NUMA hint faults report every page they touch): every page
    # of the burst is named by a report, so every page moves
    pol = ev.holistic(m, cfg, report_period=1)
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
    """The benchmark's claims on 2 x 5 s instead of 2 x 20 s: the two transitions (about
    0.5-1 s each at 2-4x the steady cost) weigh 4x more, so the oracle margin is 20% here
    (10% in benchmarks/eval_holistic.py); the moves are as in the benchmark."""
    r = ev.evaluate("two-socket", phase_us=5_000_000, scale=0.25,
                    policies=("single-path TPP", "holistic", "oracle"))
    assert r["holistic"]["cost"] <= 1.20 * r["oracle"]["cost"]
    assert r["holistic"]["cost"] <= 0.85 * r["single-path TPP"]["cost"]
    assert r["holistic"]["local"] > r["single-path TPP"]["local"] + 0.2
    assert ev.check(r, oracle_margin=1.20) == []


def test_three_accessors_share_a_range_and_it_moves_once():
    """The three-accessor workload at a quarter of its size, 2 x 6 s: the range cpu0 and
    the GPU both read leaves GPU memory once, for node 0 (weighted cost 70 against 100),
    and stays; nothing moves more than twice (cpu2's second hot set may pass through CXL
    first); bytes moved within 1.3x of the minimum."""
    r = ev.evaluate("three-accessor", phase_us=6_000_000, scale=0.25,
                    policies=("holistic", "oracle"))
    mv = r["holistic"]["moves"]
    assert mv["shared"].max_moves == 1
    assert mv["shared"].moved >= 0.97 * 8 * MiB
    assert mv["cpu0"].moved == 0 and mv["all"].max_moves <= 2
    assert ev.check(r, oracle_margin=1.20, tpp_margin=None) == []


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
