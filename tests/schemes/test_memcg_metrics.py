"""The memcg node goal metrics as the kernel defines them (6.19,
``damos_get_node_memcg_used_bp()``): the memcg's LRU pages (active/inactive anon and file,
children included; not unevictable, not kernel memory) on the node, over the node's total
memory (``si_meminfo_node()``: the node's MemTotal), in basis points; ``free`` is the rest of
the node; a memcg that does not exist (or no longer) reads as using nothing.  Fixture trees
for cgroup v2 (bytes) and v1 (pages), and this host's own memory controller."""

import os

import pytest

from damoncore.errors import FeatureMissing
from damoncore.linux.system import PAGE_SIZE
from damoncore.schemes.metrics import HostMetrics

GiB, MiB = 1 << 30, 1 << 20


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _node(sysfs, nid, total_kib, free_kib):
    _write(f"{sysfs}/devices/system/node/node{nid}/meminfo",
           f"Node {nid} MemTotal:       {total_kib} kB\nNode {nid} MemFree:        "
           f"{free_kib} kB\nNode {nid} MemUsed:        {total_kib - free_kib} kB\n")


@pytest.fixture
def v2(tmp_path):
    sysfs, cg = str(tmp_path / "sys"), str(tmp_path / "cg")
    _node(sysfs, 0, 8 * GiB // 1024, 2 * GiB // 1024)
    _node(sysfs, 1, 16 * GiB // 1024, 16 * GiB // 1024)
    _write(f"{cg}/cgroup.controllers", "cpuset cpu io memory pids\n")
    # 1 GiB + 512 MiB of LRU pages on node 0; 'anon'/'file'/'shmem' and unevictable lines
    # are other views or other lists and must not count
    _write(f"{cg}/work/memory.numa_stat", "\n".join([
        f"anon N0={3 * GiB} N1=0", f"file N0={3 * GiB} N1=0", f"shmem N0={GiB} N1=0",
        f"active_anon N0={GiB} N1={MiB}", f"inactive_anon N0={256 * MiB} N1=0",
        f"active_file N0={128 * MiB} N1=0", f"inactive_file N0={128 * MiB} N1=0",
        f"unevictable N0={2 * GiB} N1=0", f"kernel_stack N0={MiB} N1=0"]) + "\n")
    return HostMetrics(sysfs, "/proc", cg)


def test_v2_used_and_free_of_a_memcg_on_a_node(v2):
    used = GiB + 512 * MiB
    assert v2.metric("node_memcg_used_bp", 0, "/work") == used * 10000 // (8 * GiB)
    assert v2.metric("node_memcg_free_bp", 0, "work") == (8 * GiB - used) * 10000 // (8 * GiB)
    # node 1: 1 MiB of 16 GiB
    assert v2.metric("node_memcg_used_bp", 1, "/work") == MiB * 10000 // (16 * GiB) == 0
    assert v2.metric("node_memcg_free_bp", 1, "/work") == 10000 - 1    # floor, as mult_frac


def test_a_memcg_that_is_gone_uses_nothing(v2):
    assert v2.metric("node_memcg_used_bp", 0, "/gone") == 0
    assert v2.metric("node_memcg_free_bp", 0, "/gone") == 10000


def test_v1_counts_pages_with_the_children(tmp_path):
    sysfs, cg = str(tmp_path / "sys"), str(tmp_path / "cg")
    _node(sysfs, 0, 4 * GiB // 1024, GiB // 1024)
    pages = lambda b: b // PAGE_SIZE
    _write(f"{cg}/memory/memory.numa_stat", "total=1 N0=1\n")
    _write(f"{cg}/memory/work/memory.numa_stat", "\n".join([
        f"total={pages(GiB)} N0={pages(GiB)}", f"file={pages(GiB)} N0={pages(GiB)}",
        "anon=0 N0=0", f"unevictable={pages(GiB)} N0={pages(GiB)}",
        f"hierarchical_total={pages(3 * GiB)} N0={pages(3 * GiB)}",
        f"hierarchical_file={pages(GiB)} N0={pages(GiB)}",
        f"hierarchical_anon={pages(GiB)} N0={pages(GiB)}",
        f"hierarchical_unevictable={pages(GiB)} N0={pages(GiB)}"]) + "\n")
    m = HostMetrics(sysfs, "/proc", cg)
    assert m.metric("node_memcg_used_bp", 0, "/work") == 5000       # 2 of 4 GiB
    assert m.metric("node_memcg_free_bp", 0, "/work") == 5000


def test_no_memory_controller_is_a_named_missing_feature(tmp_path):
    sysfs, cg = str(tmp_path / "sys"), str(tmp_path / "cg")
    _node(sysfs, 0, 1024, 512)
    _write(f"{cg}/cgroup.controllers", "cpu io\n")
    with pytest.raises(FeatureMissing, match="memory cgroup controller"):
        HostMetrics(sysfs, "/proc", cg).metric("node_memcg_used_bp", 0, "/")


@pytest.mark.skipif(not os.path.exists("/sys/devices/system/node/node0/meminfo"),
                    reason="no NUMA node information")
def test_this_hosts_memory_controller():
    """The root memcg here (v1 or v2): the value the metric gives is the kernel's formula
    over the files as they read a moment apart (the memory moves meanwhile: 1 bp slack)."""
    m = HostMetrics()
    try:
        d, version = m.memcg_dir("/")
    except FeatureMissing:
        pytest.skip("no memory cgroup controller here")
    got = m.metric("node_memcg_used_bp", 0, "/")
    with open(os.path.join(d, "memory.numa_stat")) as f:
        stat = {line.split()[0].split("=")[0]: line.split() for line in f}
    keys = (HostMetrics.LRU_KEYS_V2 if version == 2 else HostMetrics.LRU_KEYS_V1)
    if any(k not in stat for k in keys):
        pytest.skip("this memory.numa_stat lacks the LRU lines")
    scale = 1 if version == 2 else PAGE_SIZE
    used = sum(int(v.split("=")[1]) * scale for k in keys for v in stat[k][1:]
               if v.startswith("N0="))
    total = m.node_mem(0)[0]
    assert abs(got - used * 10000 // total) <= 1
    assert 0 < got < 10000
