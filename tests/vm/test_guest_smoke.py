"""Smoke tests of the 4-node NUMA test guest (qemu), raw ctypes/sysfs inside the guest.

Each test boots the guest (TCG: ~5-10 s) and runs a function from guest_checks.py there.
"""
from __future__ import annotations

import pytest

import harness
from harness import (CPU_NODES, CXL_NODES, DISTANCES, HMAT_BANDWIDTH_MBS, HMAT_LATENCY_NS,
                     INITIATOR, NODES)

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def survey(guest):
    return harness.run_python("guest_checks:survey", timeout=180)


def test_boot_runs_a_shell_job(guest):
    r = harness.run_in_guest('echo "args:$*"; uname -r; cat /proc/cmdline; exit 3',
                             args=("a b", "c"), timeout=180)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "args:a b c"
    assert "init=" in lines[2] and "guest-init.sh" in lines[2]
    assert r.guest_uptime is not None and r.guest_uptime < 60



def test_boot_that_dies_before_the_job_is_retried_then_reported(guest, monkeypatch):
    # an init that exits at once panics the kernel before guest-init's job marker, like the
    # rare TCG code-patching oops during boot: the harness boots again, then gives up loudly
    monkeypatch.setattr(harness, "GUEST_INIT", "/bin/false")
    before = len(harness.BOOT_FAILURES)
    with pytest.raises(harness.GuestError, match="failed 3 times before the job started"):
        harness.run_in_guest("true", timeout=60)
    assert len(harness.BOOT_FAILURES) - before == harness.BOOT_ATTEMPTS == 3
    assert "Attempted to kill init" in harness.BOOT_FAILURES[-1]

def test_four_nodes_with_cpuless_cxl(survey):
    assert survey["online_nodes"] == [0, 1, 2, 3]
    assert survey["has_memory"] == [0, 1, 2, 3]
    assert survey["has_cpu"] == list(CPU_NODES)
    assert survey["online_cpus"] == [0, 1]
    nodes = survey["nodes"]
    assert nodes["0"]["cpus"] == [0] and nodes["2"]["cpus"] == [1]
    assert nodes["1"]["cpus"] == [] and nodes["3"]["cpus"] == []
    for n in range(NODES):
        assert nodes[str(n)]["mem_total_kb"] > 512 * 1024, n


def test_distances_match_topology(survey):
    for n in range(NODES):
        assert survey["nodes"][str(n)]["distance"] == list(DISTANCES[n]), n


def test_hmat_access_classes(survey):
    # access0: any initiator; QEMU makes the CXL nodes' absent CPU slots their nominal
    # initiators (see harness.HMAT_INITIATORS).  access1: CPU initiators only.
    for n in range(NODES):
        node = survey["nodes"][str(n)]
        ini = INITIATOR[n]
        for acc, expect_ini in (("access0", n), ("access1", ini)):
            a = node.get(acc)
            assert a is not None, f"node{n} has no {acc} (HMAT not parsed?)"
            assert a["initiators"] == [expect_ini], (n, acc, a)
            assert a["read_latency"] == HMAT_LATENCY_NS[ini][n], (n, acc, a)
            assert a["read_bandwidth"] == HMAT_BANDWIDTH_MBS[ini][n], (n, acc, a)


def test_memory_tiers_put_cxl_lower(survey):
    tiers = {int(t): nodes for t, nodes in survey["tiers"].items()}
    assert tiers, "no /sys/devices/virtual/memory_tiering tiers"
    tier_of = {n: t for t, nodes in tiers.items() for n in nodes}
    assert tier_of[0] == tier_of[2]
    assert tier_of[1] == tier_of[3]
    assert tier_of[1] > tier_of[0]  # higher tier id = slower tier


def test_guest_features(survey):
    assert survey["numa_balancing"] == "0"
    assert survey["page_idle"], "CONFIG_IDLE_PAGE_TRACKING missing"
    assert survey["soft_dirty"], "soft-dirty bit not set after a write"
    assert survey["damon_sysfs"]
    assert survey["cgroup2"] and "memory" in survey["cgroup_controllers"]
    assert "[always]" in survey["thp"]


def test_cpu_pinning_one_thread_per_cpu_node(guest):
    res = harness.run_python("guest_checks:check_cpu_pinning", timeout=180)
    assert res == {"0": {"cpu": 0, "node": 0}, "1": {"cpu": 1, "node": 2}}


def test_raw_move_pages_through_all_nodes(guest):
    npages = 4096  # 16 MiB
    res = harness.run_python("guest_checks:check_move_pages", npages, [0, 1, 2, 3], timeout=240)
    assert set(res["start_counts"]) == {"0"}  # first touch on cpu0 -> node0
    for step in res["steps"]:
        t = str(step["target"])
        assert step["move_status_counts"] == {t: npages}, step
        assert step["query_counts"] == {t: npages}, step
        assert step["content_ok"], step
    print("raw move_pages pages/s:", [round(s["pages_per_s"]) for s in res["steps"]])


def test_raw_page_idle_hot_vs_cold(guest):
    npages = 512
    res = harness.run_python("guest_checks:check_page_idle", npages, 3, timeout=180)
    for r in res["rounds"]:
        assert r["pfns_stable"], r
        assert r["marked_idle_hot"] == npages and r["marked_idle_cold"] == npages, r
        assert r["hot_idle"] == 0, r
        assert r["cold_idle"] == npages, r


# ------------------------------------------------------------------ through damoncore's API

def test_api_topology_discovery(guest):
    t = harness.run_python("guest_checks:api_topology", timeout=180)
    assert t["nodes"] == [0, 1, 2, 3]
    assert t["cpu_nodes"] == list(CPU_NODES)
    assert t["memory_only_nodes"] == list(CXL_NODES)
    assert t["node_of_cpu"] == {"0": 0, "1": 2}
    for n in range(NODES):
        assert t["distances"][str(n)] == list(DISTANCES[n])
        a = t["access1"][str(n)]
        assert a["initiators"] == [INITIATOR[n]]
        assert a["read_latency"] == HMAT_LATENCY_NS[INITIATOR[n]][n]
        assert t["access0"][str(n)]["read_latency"] == HMAT_LATENCY_NS[INITIATOR[n]][n]
        assert t["phys_ranges"][str(n)], f"no physical ranges for node{n}"
        assert t["mem_total"][str(n)] > 512 << 20
    assert t["tier_of"]["0"] == t["tier_of"]["2"] < t["tier_of"]["1"] == t["tier_of"]["3"]


def test_api_migration_of_another_process(guest):
    npages = 4096
    res = harness.run_python("guest_checks:api_migration", npages, [0, 1, 2, 3, 0], timeout=240)
    assert res["start_counts"] == {"0": npages}
    prev = 0
    for step in res["steps"]:
        t = step["target"]
        assert step["errors"] == {}, step
        assert step["nr_moved"] == npages, step
        assert step["query_counts"] == {str(t): npages}, step
        # pagemap PFN -> physical address -> node, via Topology.phys_ranges
        assert step["phys_node_counts"] == {str(t): npages}, step
        assert step["bytes_moved"] == {f"{prev}->{t}": npages * 4096}, step
        prev = t
    assert res["offline_node_error"] == "NodeUnavailable"
    assert res["child_content_ok"]
    print("damoncore move_pages pages/s:", [round(s["pages_per_s"]) for s in res["steps"]])


def test_api_page_idle_hot_vs_cold(guest):
    npages = 512
    res = harness.run_python("guest_checks:api_page_idle", npages, 3, timeout=180)
    for r in res["rounds"]:
        assert r["zero_pfns"] == 0, r
        assert r["hot_idle"] == 0, r
        assert r["cold_idle"] == npages, r


def test_ticker_keeps_accessed_bits_exact_without_tlb_flush(guest):
    # TCG pitfall (VM-NOTES): without a TLB flush after marking, hot pages read idle.
    # guest-init's DC_TICKER_CPUS ticker (1 ms sleeps pinned to cpu0) fixes it.
    npages = 512
    res = harness.run_python("guest_checks:check_page_idle_no_flush", npages, 3,
                             env={"DC_TICKER_CPUS": "0"}, timeout=180)
    for r in res["rounds"]:
        assert r["hot_idle"] == 0, r
        assert r["cold_idle"] == npages, r
