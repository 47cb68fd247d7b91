"""The simulated machine's bandwidth model: throughput, shares, loaded latency, traffic."""

import numpy as np
import pytest

from damoncore.errors import InvalidConfig
from damoncore.sim.bandwidth import (GB, BandwidthModel, interleave_placement, node_shares,
                                     node_traffic, sim_node_bytes)
from damoncore.sim.presets import seed_machine
from damoncore.sim.workloads import Accessor, Mapping, Process, Stream, Workload

GiB, MiB = 1 << 30, 1 << 20
BASE = 1 << 40


@pytest.mark.parametrize("seed", range(20))
def test_throughput_is_monotone_in_bandwidth_and_best_at_residual_shares(seed):
    rng = np.random.default_rng(seed)
    peak = rng.uniform(10, 200, 4) * GB
    bg = rng.uniform(0, 1, 4) * peak * 0.8
    shares = rng.dirichlet(np.ones(4))
    m = BandwidthModel(peak)
    t = m.throughput(shares, bg)
    more = peak.copy()
    more[rng.integers(4)] *= 1.5
    assert BandwidthModel(more).throughput(shares, bg) >= t
    assert m.throughput(shares, bg + rng.uniform(0, 1, 4) * GB) <= t
    best = m.best_shares(bg)
    assert m.throughput(best, bg) == pytest.approx((peak - bg).sum())
    assert t <= m.throughput(best, bg) * (1 + 1e-12)


def test_throughput_is_set_by_the_node_that_saturates_first():
    m = BandwidthModel([100 * GB, 30 * GB])
    assert m.throughput([1, 1]) == pytest.approx(60 * GB)         # CXL at 50%: 30/0.5
    assert m.throughput([10, 3]) == pytest.approx(130 * GB)
    assert m.throughput([1, 0]) == pytest.approx(100 * GB)
    assert m.throughput([10, 3], background=[60 * GB, 0]) == pytest.approx(40 / (10 / 13) * GB)
    assert m.throughput([0, 0]) == 0.0


def test_loaded_latency_rises_with_utilization_and_is_capped():
    m = BandwidthModel([100 * GB], [100.0], max_latency_factor=10)
    lat = [m.loaded_latency_ns([u * 100 * GB])[0] for u in (0, 0.5, 0.8, 0.95, 1.0, 2.0)]
    assert lat[:3] == pytest.approx([100, 200, 500])
    assert lat[3] == lat[4] == lat[5] == pytest.approx(1000)      # capped at 10x


def test_closed_loop_is_below_the_bound_and_grows_with_inflight_bytes():
    m = BandwidthModel([100 * GB, 30 * GB], [100.0, 200.0])
    got = [m.closed_loop_throughput([10, 3], c) for c in (1e3, 1e4, 1e5, 1e7)]
    assert all(a < b for a, b in zip(got, got[1:-1]))
    assert got[-1] == pytest.approx(m.throughput([10, 3]))
    # Little's law at low load: 1 KB in flight over ~123 ns unloaded mean latency, a few
    # percent less because 7.6 GB/s already loads both nodes to ~6%
    unloaded = 1e3 / ((10 * 100 + 3 * 200) / 13 * 1e-9)
    assert 0.9 * unloaded < got[0] < unloaded
    # latency-bound: all on the fast node beats the bandwidth ratio
    assert m.closed_loop_throughput([1, 0], 1e3) > got[0]


def test_model_validation():
    with pytest.raises(InvalidConfig, match="> 0"):
        BandwidthModel([100 * GB, 0])
    with pytest.raises(InvalidConfig, match="one base latency"):
        BandwidthModel([1.0, 2.0], [1.0])


def _machine():
    m = seed_machine(2 * GiB, 2 * GiB)
    acc = Accessor("cpu0", 0)
    pl = interleave_placement(GiB, {0: 10, 1: 3, 2: 10, 3: 3})
    m.add_workload(Workload(
        [Process(1, (Mapping(BASE, BASE + GiB, placement=pl),)),
         Process(2, (Mapping(BASE, BASE + 256 * MiB, placement=((1, 256 * MiB),)),))],
        [(0, [Stream(acc, 1, BASE, BASE + GiB, 100.0),
              Stream(acc, 2, BASE, BASE + 256 * MiB, 1000.0)])]))
    return m


def test_interleave_placement_and_traffic_follow_the_weights():
    m = _machine()
    s = node_shares(node_traffic(m, 1))
    assert s == pytest.approx(np.array([10, 3, 10, 3]) / 26, abs=0.01)
    co = node_traffic(m, 2)
    assert co.tolist() == [0, pytest.approx(1000.0 * 65536 * 64), 0, 0]
    assert node_traffic(m) == pytest.approx(node_traffic(m, 1) + co)
    with pytest.raises(InvalidConfig):
        interleave_placement(GiB, {})


def test_sim_node_bytes_splits_each_range_by_node():
    m = _machine()
    nb = sim_node_bytes(m, 1)(np.array([BASE, BASE + 26 * MiB], np.uint64),
                              np.array([BASE + 26 * MiB, BASE + GiB], np.uint64))
    assert nb[0].tolist() == [10 * MiB, 3 * MiB, 10 * MiB, 3 * MiB]   # one whole round
    assert nb.sum(axis=1).tolist() == [26 * MiB, GiB - 26 * MiB]
