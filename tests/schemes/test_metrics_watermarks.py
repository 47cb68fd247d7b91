"""Goal metric sources (host procfs/sysfs/cgroupfs, as fixture trees and for real) and
watermark-driven scheme activation."""

import os

import pytest

from damoncore import (AccessPattern, Attrs, Context, FeatureMissing, InvalidConfig, Quota,
                       QuotaGoal, Scheme, Target, Watermarks)
from damoncore.schemes.metrics import HostMetrics
from damoncore.schemes.quota import quota_score
from fakes import HotRangeOps

MiB = 1 << 20


def fixture_tree(tmp_path):
    node = tmp_path / "sys/devices/system/node/node1"
    node.mkdir(parents=True)
    (node / "meminfo").write_text("Node 1 MemTotal:       4000 kB\nNode 1 MemFree:        1000 kB\n"
                                  "Node 1 MemUsed:        3000 kB\n")
    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 10000 kB\nMemFree: 2500 kB\nActive: 300 kB\n"
                                  "Inactive: 100 kB\n")
    (proc / "pressure/memory").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n"
                                          "full avg10=0.00 avg60=0.00 avg300=0.00 total=10\n")
    cg = tmp_path / "cg/work"
    cg.mkdir(parents=True)
    (tmp_path / "cg/cgroup.controllers").write_text("cpu memory\n")
    # the kernel counts the LRU lists (damos_get_node_memcg_used_bp()), not anon/file
    (cg / "memory.numa_stat").write_text("anon N0=0 N1=7\nfile N0=5 N1=7\n"
                                         "active_anon N0=0 N1=1024000\n"
                                         "inactive_file N0=5 N1=1024000\n"
                                         "kernel N0=1 N1=999999\n")
    return HostMetrics(str(tmp_path / "sys"), str(proc), str(tmp_path / "cg")), proc


def test_host_metrics_from_fixture_trees(tmp_path):
    m, proc = fixture_tree(tmp_path)
    assert m.metric("node_mem_used_bp", nid=1) == 7500
    assert m.metric("node_mem_free_bp", nid=1) == 2500
    assert m.metric("node_mem_total_bytes", nid=1) == 4000 * 1024
    # LRU pages of N1 = 2048000 B of a 4096000 B node
    assert m.metric("node_memcg_used_bp", nid=1, memcg_path="/work") == 5000
    assert m.metric("node_memcg_free_bp", nid=1, memcg_path="/work") == 5000
    assert m.metric("active_mem_bp") == 7500
    assert m.metric("inactive_mem_bp") == 2500
    assert m.metric("free_mem_rate") == 250
    assert m.metric("some_mem_psi_total_us") == 1000  # the running total; goals take deltas
    with pytest.raises(InvalidConfig, match="node 7"):
        m.metric("node_mem_used_bp", nid=7)
    # a memcg that does not exist uses nothing (the kernel's reading of a removed one)
    assert m.metric("node_memcg_used_bp", nid=1, memcg_path="/nope") == 0
    assert m.metric("node_memcg_free_bp", nid=1, memcg_path="/nope") == 10000


def test_host_metrics_on_this_machine():
    m = HostMetrics()
    used, free = m.metric("node_mem_used_bp", nid=0), m.metric("node_mem_free_bp", nid=0)
    # two reads a moment apart, each rounded down: they add up to about 100%
    assert 0 < used < 10000 and abs(used + free - 10000) <= 50
    assert 0 <= m.metric("active_mem_bp") <= 10000
    if os.path.exists("/proc/pressure/memory"):
        first = m.metric("some_mem_psi_total_us")
        assert m.metric("some_mem_psi_total_us") >= first >= 0


def test_goal_current_values_come_from_the_ops_backend():
    class MetricOps(HotRangeOps):
        def metric(self, name, nid=None, memcg_path=None):
            return {"node_mem_used_bp": 4985}[name]

    s = Scheme(AccessPattern(), "pageout",
               quota=Quota(sz_bytes=MiB, goals=[QuotaGoal("node_mem_used_bp", 9970, nid=0)]))
    ctx = Context(MetricOps(), [Target(ranges=[(0, MiB)])], schemes=[s])
    assert quota_score(ctx, s) == 5000
    assert s.quota.goals[0].current_value == 4985


def test_watermarks_activate_and_deactivate_the_scheme():
    class WmOps(HotRangeOps):
        free = 500

        def metric(self, name, nid=None, memcg_path=None):
            assert name == "free_mem_rate"
            return self.free

    ops = WmOps(p_cold=1.0)
    s = Scheme(AccessPattern(), "pageout", apply_interval_us=100_000,
               watermarks=Watermarks("free_mem_rate", interval_us=100_000, high=600, mid=400,
                                     low=200))
    ctx = Context(ops, [Target(ranges=[(0, 64 * MiB)])], Attrs(), schemes=[s])
    ctx.run(1_000_000)
    assert ops.applied                                # 500 is inside [low, high]: active
    n = len(ops.applied)
    ops.free = 700                                    # above high: deactivated
    ctx.run(1_000_000)
    assert len(ops.applied) <= n + 1 and not s.active
    n = len(ops.applied)
    ops.free = 500                                    # between mid and high: stays off
    ctx.run(1_000_000)
    assert len(ops.applied) == n and not s.active
    ops.free = 300                                    # below mid: active again
    ctx.run(1_000_000)
    assert len(ops.applied) > n and s.active
    ops.free = 100                                    # below low: off
    ctx.run(500_000)
    assert not s.active


class FixtureRootOps(HotRangeOps):
    """A backend whose system lives in a fixture tree (as PaddrOps(sysfs_root=...) etc.)."""

    def __init__(self, root):
        super().__init__()
        self.sysfs_root, self.procfs_root = str(root / "sys"), str(root / "proc")
        self.cgroupfs_root = str(root / "cg")


def test_goal_metrics_are_read_under_the_backends_roots(tmp_path):
    """A backend's goals read its own /sys and /proc (``--sysfs_root``), not the host's:
    node 1 exists only in the fixture tree."""
    fixture_tree(tmp_path)
    goal = QuotaGoal("node_mem_used_bp", 9970, nid=1)
    s = Scheme(AccessPattern(), "pageout", quota=Quota(sz_bytes=MiB, goals=[goal]))
    ctx = Context(FixtureRootOps(tmp_path), [Target(ranges=[(0, MiB)])], schemes=[s])
    assert quota_score(ctx, s) == 7500 * 10000 // 9970
    assert goal.current_value == 7500


def test_each_psi_goal_keeps_its_own_last_total(tmp_path):
    """Two some_mem_psi_us goals both see the stall time since their last read (the
    kernel keeps the last PSI total per goal); one total per context gave the second ~0."""
    _, proc = fixture_tree(tmp_path)
    goals = [QuotaGoal("some_mem_psi_us", 1000), QuotaGoal("some_mem_psi_us", 500)]
    s = Scheme(AccessPattern(), "pageout", quota=Quota(sz_bytes=MiB, goals=goals))
    ctx = Context(FixtureRootOps(tmp_path), [Target(ranges=[(0, MiB)])], schemes=[s])
    quota_score(ctx, s)                                   # baselines: total 1000
    assert [g.current_value for g in goals] == [0, 0]
    (proc / "pressure/memory").write_text("some avg10=0 avg60=0 avg300=0 total=1700\n")
    assert quota_score(ctx, s) == 700 * 10000 // 500
    assert [g.current_value for g in goals] == [700, 700]
