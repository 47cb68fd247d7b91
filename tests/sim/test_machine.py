"""The simulated machine: layout, first-touch, accessed-bit statistics, scans, reverse map,
accounting, process exit and the 1 TiB scale."""

import tracemalloc

import numpy as np
import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.errors import InvalidConfig
from damoncore.ops.sim import SimOps
from damoncore.sim import (Accessor, Mapping, Process, SimMachine, SimNode, SimOutOfMemory,
                           Stream, Workload)
from damoncore.sim.extents import key_of
from damoncore.sim.presets import GiB, MiB, demo, seed_machine, tiering_machine
from damoncore.sim.workloads import DEFAULT_BASE as BASE

PAGE = 4096


def test_node_ranges_are_consecutive_and_aligned():
    m = seed_machine(2 * GiB, 4 * GiB)
    assert [m.node_range(n) for n in range(4)] == [
        (0, 2 * GiB), (2 * GiB, 6 * GiB), (6 * GiB, 8 * GiB), (8 * GiB, 12 * GiB)]
    assert m.latency[0].tolist() == [10, 20, 50, 60]
    assert m.latency[2].tolist() == [50, 60, 10, 20]
    assert m.node_of(np.array([0, 2 * GiB - 1, 2 * GiB, 12 * GiB - 1], np.uint64)).tolist() == \
        [0, 0, 1, 3]


def test_first_touch_spills_to_the_nearest_node_by_latency():
    m = seed_machine(1 * GiB, 1 * GiB)
    m.add_workload(Workload.hot_cold(3 * GiB, 0, 64 * MiB, node=0))
    # node0 full, then CXL1 (20) before DRAM2 (50)
    assert [m.node_used(n) for n in range(4)] == [GiB, GiB, GiB, 0]
    with pytest.raises(SimOutOfMemory):
        m.add_workload(Workload.hot_cold(2 * GiB, 0, 64 * MiB, pid=7, node=2))


def test_workload_on_a_cpu_less_node_lands_there():
    # the CXL node's latency row copies node 0's: placement must still start on node 1
    m = tiering_machine(2 * GiB, 8 * GiB)
    m.add_workload(Workload.hot_cold(4 * GiB, 3 * GiB, 256 * MiB, node=1))
    assert [m.node_used(n) for n in range(2)] == [0, 4 * GiB]
    p = m.extents.lookup(key_of(m.pidx(1000), [BASE, BASE + 4 * GiB - PAGE]))
    assert m.node_of(p).tolist() == [1, 1]
    assert m.node_bytes(1000, BASE + 3 * GiB, BASE + 3 * GiB + 256 * MiB).tolist() == \
        [0, 256 * MiB, 0]                                 # per node, then swapped


def test_cpu_less_node_spills_by_its_own_row_after_itself():
    m = seed_machine(1 * GiB, 1 * GiB)
    assert m.fallback_order(1) == [1, 0, 2, 3]
    assert m.fallback_order(3) == [3, 2, 0, 1]
    assert m.fallback_order(2) == [2, 3, 0, 1]
    m.add_workload(Workload.hot_cold(3 * GiB, 0, 64 * MiB, node=3))
    # CXL2 full, then DRAM2 (its socket's row: 10), then DRAM1 (50)
    assert [m.node_used(n) for n in range(4)] == [GiB, 0, GiB, GiB]
    with pytest.raises(InvalidConfig, match="preferred node 4"):
        m.fallback_order(4)


def test_mapping_node_overrides_the_process_node():
    m = seed_machine(1 * GiB, 1 * GiB)
    proc = Process(5, (Mapping(BASE, BASE + 256 * MiB, node=1),
                       Mapping(BASE + GiB, BASE + GiB + 128 * MiB)), node=2)
    m.add_workload(Workload([proc], []))
    assert [m.node_used(n) for n in range(4)] == [0, 256 * MiB, 128 * MiB, 0]


def test_explicit_placement():
    m = tiering_machine(1 * GiB, 1 * GiB)
    proc = Process(1, (Mapping(BASE, BASE + 512 * MiB, placement=((1, 128 * MiB),)),), node=0)
    m.add_workload(Workload([proc], []))
    assert m.node_used(1) == 128 * MiB and m.node_used(0) == 384 * MiB
    p = m.extents.lookup(key_of(m.pidx(1), [BASE, BASE + 128 * MiB]))
    assert m.node_of(p).tolist() == [1, 0]


def _uniform(rate, size=64 * MiB, pid=1, extra=()):
    m = tiering_machine(1 * GiB, 1 * GiB, seed=5)
    acc = Accessor("cpu0", 0, cpu=0, tid=11)
    proc = Process(pid, (Mapping(BASE, BASE + size),))
    m.add_workload(Workload([proc], [(0, [Stream(acc, pid, BASE, BASE + size, rate), *extra])]))
    return m


def _keys(m, n, pid=1, size=64 * MiB):
    return key_of(m.pidx(pid), BASE + (np.arange(n, dtype=np.uint64) % (size // PAGE)) * PAGE)


@pytest.mark.parametrize("rate,dt_us", [(100.0, 5_000), (20.0, 5_000), (500.0, 1_000)])
def test_accessed_bit_probability_is_one_minus_exp(rate, dt_us):
    m = _uniform(rate)
    n = 40_000
    got = m.touched(_keys(m, n), 0, dt_us).mean()
    p = 1 - np.exp(-rate * dt_us / 1e6)
    assert abs(got - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_overlapping_streams_add_and_phases_integrate():
    acc = Accessor("cpu0", 0)
    m = _uniform(100.0, extra=[Stream(acc, 1, BASE, BASE + 64 * MiB, 100.0)])
    n = 40_000
    p = 1 - np.exp(-200.0 * 0.005)
    got = m.touched(_keys(m, n), 0, 5_000).mean()
    assert abs(got - p) < 5 * np.sqrt(p * (1 - p) / n)
    # a phase change inside the window: 2 ms at 200/s, then 3 ms at 0/s
    m2 = tiering_machine(1 * GiB, 1 * GiB, seed=1)
    w = Workload([Process(1, (Mapping(BASE, BASE + 64 * MiB),))],
                 [(0, [Stream(acc, 1, BASE, BASE + 64 * MiB, 200.0)]), (2_000, [])])
    m2.add_workload(w)
    p = 1 - np.exp(-200.0 * 0.002)
    got = m2.touched(_keys(m2, n), 0, 5_000).mean()
    assert abs(got - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_scan_touches_exactly_the_swept_pages():
    acc = Accessor("cpu0", 0)
    m = tiering_machine(1 * GiB, 1 * GiB)
    size = 1000 * PAGE
    w = Workload([Process(1, (Mapping(BASE, BASE + size),))],
                 [(0, [Stream(acc, 1, BASE, BASE + size, 1.0, "scan", period_us=1_000_000)])])
    m.add_workload(w)
    hit = m.touched(_keys(m, 1000, size=size), 200_000, 300_000)
    assert np.flatnonzero(hit).tolist() == list(range(200, 300))


def test_paddr_reverse_map_and_free_frames_never_accessed():
    m = _uniform(10_000.0)
    k = _keys(m, 1000)
    p = m.extents.lookup(k)
    assert np.array_equal(m.extents.reverse(p), k)
    free = np.arange(1000, dtype=np.uint64) * PAGE + np.uint64(512 * MiB)   # node0, unused
    assert not m.touched(m.extents.reverse(free), 0, 5_000).any()
    assert m.touched(m.extents.reverse(p), 0, 5_000).mean() > 0.99


def test_accounting_is_range_arithmetic_over_placement():
    rate, size = 10.0, 64 * MiB
    m = _uniform(rate, size)
    pages = size // PAGE
    m.clock.sleep_us(1_000_000)
    s = m.stats()["accessors"]["cpu0"]
    assert s["accesses"] == pytest.approx(pages * rate)
    assert s["cost"] == pytest.approx(pages * rate * 10)
    assert s["local_dram_share"] == pytest.approx(1.0)
    r = m.migrate(1, BASE, BASE + size // 2, 1)
    assert r.moved == {(0, 1): size // 2}
    m.clock.sleep_us(1_000_000)
    s = m.stats()["accessors"]["cpu0"]
    assert s["cost"] == pytest.approx(pages * rate * 10 + pages * rate * 15)
    assert s["local_dram_share"] == pytest.approx(0.75)
    assert m.stats()["migrated"] == {(0, 1): size // 2}


def test_process_exit_frees_its_memory():
    m = tiering_machine(1 * GiB, 1 * GiB)
    m.add_workload(Workload.hot_cold(256 * MiB, 0, 16 * MiB, exit_us=50_000))
    assert m.node_used(0) == 256 * MiB
    m.clock.sleep_us(40_000)
    assert m.alive(1000)
    m.clock.sleep_us(20_000)
    assert not m.alive(1000) and m.node_used(0) == 0 and len(m.extents) == 0


def test_one_tib_machine_stays_extent_sized():
    tracemalloc.start()
    m = seed_machine(256 * GiB, 256 * GiB, seed=3)
    assert m.total_bytes == 1 << 40
    m.add_workload(Workload.moving_hot(3 * GiB, 256 * MiB, [(0, 0), (500_000, GiB)]))
    m.add_workload(Workload.zipf(2 * GiB, pid=2000, node=2))
    ctx = Context(SimOps(m, space="paddr"), [Target()], Attrs(min_nr_regions=100), seed=1)
    ctx.run(2_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * MiB
    assert len(m.extents) < 10
    assert all(len(f.s) < 10 for f in m.free)
    assert len(m.ratemap().b) < 200
    assert m.now_us >= 2_000_000 - 5_000


def test_demo_scenario_shape():
    m, info = demo()
    assert m.alive(info["pid"]) and info["hot"][1][0] == 10_000_000
    hot0 = m.extents.lookup(key_of(m.pidx(info["pid"]), [info["hot"][0][1]]))
    assert m.node_of(hot0)[0] == info["demote_nid"]        # starts on CXL: worth promoting


def test_zipf_buckets_keep_the_mean_rate_and_decrease():
    from damoncore.sim import Stream
    size = 1 << 30
    s = Stream(Accessor("c", 0), 1, BASE, BASE + size, 50.0, "zipf", zipf_s=1.0)
    a, b, r = (np.asarray(x, float) for x in s.pieces(PAGE))
    assert a[0] == BASE and b[-1] == BASE + size and np.all(a[1:] == b[:-1])
    assert np.all(np.diff(r) < 0)
    assert ((b - a) / PAGE * r).sum() / (size / PAGE) == pytest.approx(50.0, rel=1e-9)
    assert r[0] / r[-1] > 1e4          # the head page is far hotter than the tail
