"""Per-accessor hierarchies from the seed matrix, a fixture sysfs (with and without HMAT)
and a simulated machine."""

import os

import numpy as np
import pytest

from damoncore.errors import InvalidConfig
from damoncore.numa import Topology
from damoncore.policies.hierarchy import (AccessorSpec, build_hierarchies, cost_table,
                                          cpu_accessors, node_owners)
from damoncore.sim.presets import SEED_LATENCY, seed_machine

MiB = 1 << 20


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def seed_sysfs(root, cxl_latency_ns=None):
    """4 nodes: 0/2 CPU+DRAM, 1/3 CXL; SLIT = the talk's matrix (CXL nodes' rows copy their
    socket's); HMAT (80 ns DRAM, ``cxl_latency_ns`` CXL, best initiator = own socket) if given."""
    nd = os.path.join(root, "devices/system/node")
    _write(os.path.join(nd, "online"), "0-3\n")
    cpus = {0: "0-1", 1: "", 2: "2-3", 3: ""}
    for nid in range(4):
        _write(os.path.join(nd, f"node{nid}", "cpulist"), cpus[nid] + "\n")
        _write(os.path.join(nd, f"node{nid}", "distance"),
               " ".join(str(d) for d in SEED_LATENCY[nid]) + "\n")
        if cxl_latency_ns is None:
            continue
        init = nid - (nid % 2)
        idir = os.path.join(nd, f"node{nid}", "access1", "initiators")
        os.makedirs(idir, exist_ok=True)
        os.symlink(os.path.join(nd, f"node{init}"), os.path.join(idir, f"node{init}"))
        _write(os.path.join(idir, "read_latency"), f"{cxl_latency_ns if nid % 2 else 80}\n")
    return root


def read(tmp_path, **kw):
    return Topology.read(sysfs_root=seed_sysfs(str(tmp_path), **kw), procfs_root=str(tmp_path))


def paths(hs):
    return {h.accessor.name: h.path for h in hs}


def test_seed_matrix_paths_are_the_talks():
    acc = [AccessorSpec("cpu1", 0, cpus={0, 1}), AccessorSpec("cpu2", 2, cpus={2, 3})]
    hs = build_hierarchies(SEED_LATENCY, acc)
    assert paths(hs) == {"cpu1": (0, 1, 2, 3), "cpu2": (2, 3, 0, 1)}
    assert hs[0].cost == {0: 10, 1: 20, 2: 50, 3: 60}
    assert hs[1].rank(0) == 2


def test_dict_input_and_ties_by_node_id():
    hs = build_hierarchies({0: {0: 10, 1: 30, 2: 30}}, [AccessorSpec("x", 0, cpus={0})])
    assert hs[0].path == (0, 1, 2)


def test_fixture_sysfs_distance_only(tmp_path):
    topo = read(tmp_path)
    hs = build_hierarchies(topo, cpu_accessors(topo))
    assert paths(hs) == {"cpu0": (0, 1, 2, 3), "cpu2": (2, 3, 0, 1)}
    assert hs[0].accessor.cpus == {0, 1}


def test_fixture_sysfs_hmat_moderate_cxl_keeps_order(tmp_path):
    topo = read(tmp_path, cxl_latency_ns=240)
    hs = build_hierarchies(topo, cpu_accessors(topo))
    assert paths(hs) == {"cpu0": (0, 1, 2, 3), "cpu2": (2, 3, 0, 1)}
    # HMAT pairs are on the distance scale: local DRAM stays the cheapest, near 10
    assert hs[0].cost[0] < hs[0].cost[1] < hs[0].cost[2] == 50


def test_fixture_sysfs_hmat_slow_cxl_goes_below_remote_dram(tmp_path):
    # SLIT says CXL1 (20) beats DRAM2 (50); HMAT says CXL1 is ~9x DRAM: HMAT wins
    topo = read(tmp_path, cxl_latency_ns=700)
    hs = build_hierarchies(topo, cpu_accessors(topo))
    assert paths(hs) == {"cpu0": (0, 2, 1, 3), "cpu2": (2, 0, 3, 1)}


def test_sim_machine_and_device_accessor():
    m = seed_machine(64 * MiB, 64 * MiB)
    acc = cpu_accessors(m)
    assert [(a.name, a.node) for a in acc] == [("cpu0", 0), ("cpu2", 2)]
    lat = np.array([[10, 20, 50, 60, 80], [10, 20, 50, 60, 80], [50, 60, 10, 20, 90],
                    [50, 60, 10, 20, 90], [30, 40, 60, 70, 10]])
    hs = build_hierarchies(lat, acc + [AccessorSpec("gpu0", 4, tids={900})])
    assert paths(hs)["gpu0"] == (4, 0, 1, 2, 3)
    assert paths(hs)["cpu2"] == (2, 3, 0, 1, 4)
    # each node's cold pages follow the path of the accessor ranking it highest
    assert node_owners(hs) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}


def test_bad_inputs():
    with pytest.raises(InvalidConfig):
        build_hierarchies([[10, 20]], [AccessorSpec("x", 0)])
    with pytest.raises(InvalidConfig):
        build_hierarchies(SEED_LATENCY, [AccessorSpec("x", 7)])
    with pytest.raises(InvalidConfig):
        build_hierarchies(SEED_LATENCY, [AccessorSpec("x", 0), AccessorSpec("x", 2)])
    with pytest.raises(InvalidConfig):
        cost_table([[10, 0], [0, 10]])
    assert cost_table(SEED_LATENCY, memory_nodes=[1, 3])[0] == {1: 20.0, 3: 60.0}
