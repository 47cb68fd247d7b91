"""Kernel 7.x features from the outside: the ``collapse`` action (7.2), the
``node_eligible_mem_bp`` goal metric (mm tree, 7.2), the memcg node metrics (6.19) and
DAMON_STAT's summary (6.17), each against its documented behaviour, through the command
line and damo's kdamonds JSON."""

import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from damoncore import records as rec
from damoncore.core.snapshot import Snapshot, TargetSnapshot

from cli_helpers import run_cli

MiB = 1 << 20
HUGE = 2 * MiB
THP = "/sys/kernel/mm/transparent_hugepage"


def _args_json(*argv):
    r = run_cli("args", "damon", "--backend", "sim", "--raw", *argv)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _scheme(doc, i=0):
    return doc["kdamonds"][0]["contexts"][0]["schemes"][i]


# damo's field names (its DamosQuotaGoal.to_kvpairs, Damos.to_kvpairs)
GOAL_KEYS = ["metric", "nid", "memcg_path", "target_value", "current_value"]


def test_args_damon_names_the_new_action_and_metric_as_damo(tmp_path):
    doc = _args_json("--damos_action", "collapse", "--damos_quota_interval", "1s",
                     "--damos_quota_goal", "node_eligible_mem_bp", "60%", "1")
    s = _scheme(doc)
    assert s["action"] == "collapse"
    [g] = s["quotas"]["goals"]
    assert list(g) == GOAL_KEYS
    assert g == {"metric": "node_eligible_mem_bp", "nid": 1, "memcg_path": None,
                 "target_value": 6000, "current_value": 0}
    # the JSON goes back in unchanged (raw and human forms)
    for raw in (["--raw"], []):
        r = run_cli("args", "damon", "--backend", "sim", *raw, "--damos_action", "collapse",
                    "--damos_quota_interval", "1s", "--damos_quota_goal",
                    "node_eligible_mem_bp", "60%", "1")
        path = tmp_path / f"kd{len(raw)}.json"
        path.write_text(r.stdout)
        again = run_cli("args", "damon", "--backend", "sim", *raw, "--kdamonds", str(path))
        assert again.returncode == 0 and json.loads(again.stdout) == json.loads(r.stdout)
    # node_eligible_mem_bp needs its node, as the kernel's does
    r = run_cli("args", "damon", "--backend", "sim", "--damos_action", "stat",
                "--damos_quota_interval", "1s", "--damos_quota_goal", "node_eligible_mem_bp",
                "60%")
    assert r.returncode == 2 and "takes 1 optional value" in r.stderr


def test_memcg_goal_names_in_args_damon():
    s = _scheme(_args_json("--damos_action", "pageout", "--damos_quota_interval", "1s",
                           "--damos_quota_goal", "node_memcg_used_bp", "30%", "0", "/work",
                           "--damos_quota_goal", "node_memcg_free_bp", "50%", "1", "/work",
                           "--damos_nr_quota_goals", "2"))
    assert [list(g) for g in s["quotas"]["goals"]] == [GOAL_KEYS] * 2
    assert [(g["metric"], g["nid"], g["memcg_path"], g["target_value"])
            for g in s["quotas"]["goals"]] == [("node_memcg_used_bp", 0, "/work", 3000),
                                               ("node_memcg_free_bp", 1, "/work", 5000)]


# --- collapse ---------------------------------------------------------------------------
CHILD = """
import ctypes, mmap, sys, time
size = 8 << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, size, mmap.PAGESIZE):
    m[off] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""


def _anon_huge_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))


@pytest.mark.skipif(os.geteuid() != 0, reason="process_madvise on another process needs root")
@pytest.mark.skipif(not os.path.isdir(THP), reason="this kernel has no transparent huge pages")
def test_collapse_makes_huge_pages_of_a_real_process(tmp_path):
    """A child touches 8 MiB of base pages (THP 'madvise' mode here: no huge page at fault);
    a collapse scheme over it turns them into huge pages through process_madvise(2)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        before = _anon_huge_kb(child.pid)
        r = run_cli("start", "--backend", "perf", "--sample_primitives", "page_fault",
                    "--target_pid", str(child.pid), "--damos_action", "collapse",
                    "--damos_sz_region", "2M", "max", "--duration", "1500ms",
                    "--no_status_socket")
        assert r.returncode == 0, r.stderr
        after = _anon_huge_kb(child.pid)
        assert after - before >= 3 * HUGE // 1024, (before, after)
        assert "collapse applied" in r.stderr
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def test_collapse_without_transparent_huge_pages_is_a_named_missing_feature(tmp_path):
    sysfs = tmp_path / "sys"
    (sysfs / "kernel/mm").mkdir(parents=True)         # no transparent_hugepage in it
    r = run_cli("start", "--backend", "vaddr", "--target_pid", str(os.getpid()),
                "--sample_primitives", "page_fault", "--damos_action", "collapse",
                "--duration", "100ms", "--no_status_socket", "--sysfs_root", str(sysfs))
    if os.geteuid() != 0:
        pytest.skip("the vaddr backend needs root before it gets to the action")
    assert r.returncode == 1, r.stderr
    assert "missing kernel feature: CONFIG_TRANSPARENT_HUGEPAGE" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_collapse_on_simulated_memory():
    r = run_cli("start", "--backend", "sim", "--damos_action", "collapse",
                "--damos_access_rate", "5%", "max", "--duration", "1s", "--no_status_socket")
    assert r.returncode == 0, r.stderr
    assert "s0 collapse applied" in r.stderr and "applied 0 B" not in r.stderr.splitlines()[-1]


# --- node_eligible_mem_bp ---------------------------------------------------------------
def test_node_eligible_goal_steers_to_its_ratio(tmp_path):
    """The kernel's example (its patch's cover letter): 'move hot pages to CXL while less
    than 40% of the hot data is there'.  Replayed over a simulated run, a migrate_hot to
    node 1 with goal node_eligible_mem_bp 40% on node 1 moves hot memory until that ratio
    is reached, then (temporal tuner) stops; the goal's value is the share of the memory
    matching the access pattern that node 1 holds."""
    path = str(tmp_path / "r.data")
    r = run_cli("record", "--backend", "sim", "--duration", "8s", "-o", path, "--quiet",
                "--no_status_socket")
    assert r.returncode == 0, r.stderr
    r = run_cli("replay", path, "--json", "--damos_action", "migrate_hot", "1",
                "--damos_access_rate", "50%", "max", "--damos_quota_interval", "100ms",
                "--damos_quota_space", "16MB", "--damos_quota_goal", "node_eligible_mem_bp",
                "40%", "1", "--damos_quota_goal_tuner", "temporal")
    assert r.returncode == 0, r.stderr
    ws = json.loads(r.stdout)["windows"]
    values = [w["goals_current_value"][0] for w in ws]   # as each window's quota saw it
    moved = [w["sz_migrated"] for w in ws]
    assert values[0] == 0                 # everything starts on node 0
    # under the goal the scheme moves (from the first window that finds hot memory on);
    # met, the temporal tuner stops it
    first = next(i for i, m in enumerate(moved) if m)
    for v, m in zip(values[first:], moved[first:]):
        assert (m == 0) if v >= 4000 else (m > 0), (v, m)
    # it ends at the goal, at most one 16 MiB window past it
    assert 4000 <= values[-1] < 5000
    # a pattern nothing matches: no eligible memory reads 0, as the kernel's
    r = run_cli("replay", path, "--json", "--damos_action", "stat", "--damos_sz_region",
                "1T", "max", "--damos_quota_interval", "100ms", "--damos_quota_goal",
                "node_eligible_mem_bp", "40%", "0")
    assert {w["goals_current_value"][0] for w in json.loads(r.stdout)["windows"]} == {0}


# --- DAMON_STAT -------------------------------------------------------------------------
def _stat_record(tmp_path):
    """Two targets of one context; aggregation 100 ms; five regions of known idle times."""
    def ts(tid, regions):
        a = np.array(regions, dtype=np.uint64)
        return TargetSnapshot(tid, None, a[:, 0].copy(), a[:, 1].copy(),
                              a[:, 2].astype(np.uint32), a[:, 3].astype(np.uint32))
    # (start, end, nr_accesses, age): 40 MiB hot for 3 aggregations (idle -(3+1)),
    # 10 MiB idle 0+1, 30 MiB idle 9+1, 20 MiB idle 19+1 on the second target
    t0 = ts(0, [(0, 40 * MiB, 10, 3), (40 * MiB, 50 * MiB, 0, 0), (50 * MiB, 80 * MiB, 0, 9)])
    t1 = ts(1, [(0, 20 * MiB, 0, 19)])
    recs = []
    for t in (t0, t1):
        r = rec.Record(0, 0, t.target_idx, None, {"sample_us": 5000, "aggr_us": 100000})
        r.snapshots = [Snapshot(0, 100_000, 5000, 100_000, 20, [t])]
        recs.append(r)
    path = str(tmp_path / "stat.data")
    rec.write_records(recs, path)
    return path


def test_damon_stat_summary_follows_stat_c(tmp_path):
    path = _stat_record(tmp_path)
    r = run_cli("report", "damon_stat", "-i", path, "--raw_number")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines()[1:])
    # bandwidth: sum(size * nr_accesses) * 1e6 / aggr_us
    assert int(lines["estimated_memory_bandwidth"]) == 40 * MiB * 10 * 10
    pct = [int(x) for x in lines["memory_idle_ms_percentiles"].split(",")]
    assert len(pct) == 101
    # sorted by idle time over 100 MiB: hot 40% (-400 ms), then 10% at 100 ms, 20% at
    # 2 s, 30% at 1 s -> order -400, 100, 1000, 2000 ms by idle time
    assert pct[0] == pct[40] == -400           # accounted 40%: still the hot region
    assert pct[41] == pct[50] == 100           # up to 50%
    assert pct[51] == pct[80] == 1000
    assert pct[81] == pct[100] == 2000
    assert lines["aggr_interval_us"] == "100000"
    # damo's JSON (DamonStatSnapshot.to_kvpairs)
    doc = json.loads(run_cli("report", "damon_stat", "-i", path, "--json",
                             "--raw_number").stdout)
    assert list(doc[0]) == ["kdamond_idx", "context_idx", "idletime_ms_percentiles",
                            "memory_bw_bytes_per_sec", "aggr_interval_us"]
    assert doc[0]["idletime_ms_percentiles"][50] == {"percentile": 50, "idle_ms": 100}
    human = run_cli("report", "damon_stat", "-i", path, "--idle_time_percentiles_range",
                    "0", "101", "25")
    assert human.stdout.splitlines()[1:] == ["  0 -400 ms", " 25 -400 ms", " 50 100 ms",
                                             " 75 1 s", "100 2 s"]


def test_damon_stat_bandwidth_matches_the_record(tmp_path):
    path = str(tmp_path / "r.data")
    assert run_cli("record", "--backend", "sim", "--duration", "2s", "-o", path, "--quiet",
                   "--no_status_socket").returncode == 0
    stat = json.loads(run_cli("report", "damon_stat", "-i", path, "--json",
                              "--raw_number").stdout)[0]
    access = json.loads(run_cli("report", "access", "-i", path, "--json", "--raw_number",
                                "--snapshot_idx", "-1").stdout)[0]["snapshots"][0]
    want = sum((r["end"] - r["start"]) * r["nr_accesses"]["samples"]
               for r in access["regions"]) * 1_000_000 // stat["aggr_interval_us"]
    assert stat["memory_bw_bytes_per_sec"] == want > 0
