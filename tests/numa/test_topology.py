"""Topology against the real /sys here and against a 4-node fixture tree (2 DRAM + 2 CXL)."""

import os

import pytest

from damoncore.numa import Topology, parse_cpulist

BLOCK = 0x8000000  # 128 MiB memory blocks

# node -> (cpulist, distance row, memory block indices)
SEED = {
    0: ("0-1", "10 20 50 60", [0, 1]),
    1: ("", "20 10 60 70", [2, 3]),
    2: ("2-3", "50 60 10 20", [8, 9]),
    3: ("", "60 70 20 10", [10, 12]),
}


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def build_seed_sysfs(root, with_blocks=True):
    """A 4-node sysfs: node0/2 CPU+DRAM, node1/3 CXL; HMAT on every node, two memory tiers."""
    node_dir = os.path.join(root, "devices/system/node")
    _write(os.path.join(node_dir, "online"), "0-3\n")
    mem_dir = os.path.join(root, "devices/system/memory")
    if with_blocks:
        _write(os.path.join(mem_dir, "block_size_bytes"), f"{BLOCK:x}\n")
    for nid, (cpus, dist, blocks) in SEED.items():
        nd = os.path.join(node_dir, f"node{nid}")
        _write(os.path.join(nd, "cpulist"), cpus + "\n")
        _write(os.path.join(nd, "distance"), dist + "\n")
        total_kb = len(blocks) * BLOCK // 1024
        _write(
            os.path.join(nd, "meminfo"),
            f"Node {nid} MemTotal:       {total_kb} kB\n"
            f"Node {nid} MemFree:        {total_kb // 2} kB\n"
            f"Node {nid} HugePages_Total:     0\n",
        )
        # HMAT: CXL is ~3x the latency and ~1/3 the bandwidth of DRAM; best initiator is the
        # nearest CPU node.
        cxl = not cpus
        init = nid - 1 if cxl else nid
        for cls_id in (0, 1):
            idir = os.path.join(nd, f"access{cls_id}", "initiators")
            os.makedirs(idir, exist_ok=True)
            os.symlink(os.path.join(node_dir, f"node{init}"), os.path.join(idir, f"node{init}"))
            _write(os.path.join(idir, "read_latency"), "240\n" if cxl else "80\n")
            _write(os.path.join(idir, "write_latency"), "300\n" if cxl else "90\n")
            _write(os.path.join(idir, "read_bandwidth"), "20000\n" if cxl else "60000\n")
            _write(os.path.join(idir, "write_bandwidth"), "15000\n" if cxl else "50000\n")
        for b in blocks:
            bd = os.path.join(mem_dir, f"memory{b}")
            _write(os.path.join(bd, "phys_index"), f"{b:08x}\n")
            _write(os.path.join(bd, "online"), "1\n")
            _write(os.path.join(bd, "valid_zones"), "Normal\n" if not cxl else "Movable\n")
            if with_blocks:
                os.symlink(bd, os.path.join(nd, f"memory{b}"))
    tiers = os.path.join(root, "devices/virtual/memory_tiering")
    _write(os.path.join(tiers, "memory_tier4", "nodelist"), "0,2\n")
    _write(os.path.join(tiers, "memory_tier22", "nodelist"), "1,3\n")
    return root


@pytest.fixture
def seed_topo(tmp_path):
    return Topology.read(sysfs_root=build_seed_sysfs(str(tmp_path)))


def test_parse_cpulist():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("\n") == []


def test_seed_nodes_cpus_distances(seed_topo):
    t = seed_topo
    assert t.nodes == [0, 1, 2, 3]
    assert t.cpu_nodes() == [0, 2]
    assert t.memory_only_nodes() == [1, 3]
    assert t.node_of_cpu() == {0: 0, 1: 0, 2: 2, 3: 2}
    assert [t.distance(0, d) for d in range(4)] == [10, 20, 50, 60]
    assert [t.distance(2, d) for d in range(4)] == [50, 60, 10, 20]
    for a in t.nodes:
        for b in t.nodes:
            assert t.distance(a, b) == t.distance(b, a)


def test_seed_hmat_and_tiers(seed_topo):
    t = seed_topo
    assert t.access[1][1].initiators == (0,)
    assert t.access[3][0].initiators == (2,)
    assert t.access[1][0].read_latency == 240 and t.access[0][0].read_latency == 80
    assert t.access[2][1].write_bandwidth == 50000
    assert [(x.tier_id, x.nodes) for x in t.tiers] == [(4, (0, 2)), (22, (1, 3))]
    assert t.tier_of(3) == 22 and t.tier_of(0) == 4


def test_seed_phys_ranges_merge_adjacent_blocks(seed_topo):
    t = seed_topo
    assert t.phys_ranges[0] == [(0, 2 * BLOCK)]
    assert t.phys_ranges[3] == [(10 * BLOCK, 11 * BLOCK), (12 * BLOCK, 13 * BLOCK)]
    assert t.node_of_phys(9 * BLOCK + 5) == 2
    assert t.node_of_phys(11 * BLOCK) is None


def test_seed_meminfo_is_fresh(tmp_path):
    root = build_seed_sysfs(str(tmp_path))
    t = Topology.read(sysfs_root=root)
    assert t.node_meminfo(1)["MemTotal"] == 2 * BLOCK
    assert t.node_meminfo(1)["HugePages_Total"] == 0
    path = os.path.join(root, "devices/system/node/node1/meminfo")
    _write(path, "Node 1 MemTotal: 4 kB\nNode 1 MemFree: 1 kB\n")
    assert t.node_meminfo(1) == {"MemTotal": 4096, "MemFree": 1024}


def test_zoneinfo_fallback_without_block_size(tmp_path):
    """damo issue #83: QEMU guests may lack memory block sysfs; zoneinfo spans are used."""
    sysfs = build_seed_sysfs(str(tmp_path / "sys"), with_blocks=False)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "zoneinfo").write_text(
        "Node 0, zone      DMA\n  pages free 1\n        spanned  4095\n  start_pfn:           1\n"
        "Node 0, zone   Normal\n        spanned  100\n  start_pfn:           4096\n"
        "Node 0, zone  Movable\n        spanned  0\n"
        "Node 1, zone   Normal\n        spanned  50\n  start_pfn:           10000\n"
    )
    t = Topology.read(sysfs_root=sysfs, procfs_root=str(proc))
    pg = os.sysconf("SC_PAGE_SIZE")
    assert t.phys_ranges[0] == [(1 * pg, 4196 * pg)]
    assert t.phys_ranges[1] == [(10000 * pg, 10050 * pg)]
    assert t.phys_ranges[2] == []


@pytest.mark.skipif(not os.path.isdir("/sys/devices/system/node/node0"), reason="no NUMA sysfs")
def test_real_sysfs():
    t = Topology.read()
    assert 0 in t.nodes
    assert t.distance(0, 0) == 10
    assert sorted(t.node_of_cpu()) == sorted(range(os.cpu_count()))
    mi = t.node_meminfo(0)
    assert 0 < mi["MemFree"] <= mi["MemTotal"]
    # Physical ranges cover at least the node's MemTotal (holes and reservations included).
    span = sum(e - s for s, e in t.phys_ranges[0])
    assert span >= mi["MemTotal"]
    # Every online memory block sits in exactly one node's ranges.
    assert t.node_of_phys(t.phys_ranges[0][0][0]) == 0
