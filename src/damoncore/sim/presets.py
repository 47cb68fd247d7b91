"""Ready-made simulated machines, the quick-start scenario and the tiering scenario.

Latencies are the seed talk's relative access costs (local DRAM = 10).  Rows of CPU-less
nodes copy the row of the CPU node of their socket: nothing runs there, but the matrix must
be complete.
"""

from __future__ import annotations

from .machine import SimMachine, SimNode
from .workloads import DEFAULT_BASE, Accessor, Workload

GiB = 1 << 30
MiB = 1 << 20

# from CPU1 (node 0): DRAM1 10, CXL1 20, DRAM2 50, CXL2 60; CPU2 (node 2) mirrors it
SEED_LATENCY = ((10, 20, 50, 60),
                (10, 20, 50, 60),
                (50, 60, 10, 20),
                (50, 60, 10, 20))
TIERING_LATENCY = ((10, 20),
                   (10, 20))


def seed_machine(dram_bytes: int, cxl_bytes: int, seed: int = 0) -> SimMachine:
    """The 2-socket topology: node0 CPU1+DRAM1, node1 CXL1, node2 CPU2+DRAM2, node3 CXL2.

    ``dram_bytes``/``cxl_bytes``: capacity of each DRAM/CXL node.
    """
    nodes = [SimNode(0, dram_bytes, True, "dram"), SimNode(1, cxl_bytes, False, "cxl"),
             SimNode(2, dram_bytes, True, "dram"), SimNode(3, cxl_bytes, False, "cxl")]
    return SimMachine(nodes, SEED_LATENCY, seed=seed)


def tiering_machine(dram_bytes: int, cxl_bytes: int, seed: int = 0) -> SimMachine:
    """Two tiers: node0 DRAM with the CPUs, node1 CPU-less CXL (twice the latency)."""
    nodes = [SimNode(0, dram_bytes, True, "dram"), SimNode(1, cxl_bytes, False, "cxl")]
    return SimMachine(nodes, TIERING_LATENCY, seed=seed)


def demo(seed: int = 0, move_at_us: int = 10_000_000):
    """The README's quick start: a 4 GiB process on a 2 GiB DRAM + 8 GiB CXL machine.

    Its 256 MiB hot range (500 accesses/s/page; the rest 0.1) starts in the CXL half of the
    process (offset 3 GiB) and moves to offset 1 GiB at ``move_at_us``.  Returns
    ``(machine, info)`` with ``info`` = {pid, space, ranges, hot: [(time_us, start, end)],
    promote_nid, demote_nid}: everything needed to build ``SimOps`` and targets.
    """
    m = tiering_machine(2 * GiB, 8 * GiB, seed=seed)
    pid, size, hot = 4242, 4 * GiB, 256 * MiB
    moves = [(0, 3 * GiB), (move_at_us, 1 * GiB)]
    m.add_workload(Workload.moving_hot(size, hot, moves, hot_rate=500.0, cold_rate=0.1,
                                       pid=pid, node=0))
    info = {
        "pid": pid,
        "space": "vaddr",
        "ranges": [(DEFAULT_BASE, DEFAULT_BASE + size)],
        "hot": [(t, DEFAULT_BASE + off, DEFAULT_BASE + off + hot) for t, off in moves],
        "promote_nid": 0,
        "demote_nid": 1,
    }
    return m, info


def tiering(seed: int = 0, dram_bytes: int = 128 * GiB, cxl_bytes: int = 256 * GiB):
    """TPP's situation (``--sim_preset tiering``): DRAM full of cold data, hot data on CXL.

    A ``dram_bytes`` DRAM node 0 holds a cold process (pid 4241: ``dram_bytes - 512 MiB``,
    0.1 accesses/s/page), so DRAM starts 99.6% used: under the seed line's 99.7%
    promotion goal and over its 99.5% demotion goal (0.5% free); a 16 GiB process (pid 4242) is
    first-touched on the CPU-less CXL node 1 and touches its 2 GiB at offset 4 GiB 500
    times/s/page, the rest 0.1.  Both run on node 0's CPUs.  Returns ``(machine, info)``
    with ``info`` = {pid (the hot process), cold_pid, hot: (start, end) virtual, dram_nid,
    cxl_nid}.  DRAM is large on purpose: below ~67 GiB the 99.7% goal is less than one
    200 MiB quota window from full, so an overshoot could not show.
    """
    m = tiering_machine(dram_bytes, cxl_bytes, seed=seed)
    cold_pid, pid = 4241, 4242
    cold_size = dram_bytes - 512 * MiB
    m.add_workload(Workload.uniform(cold_size, 0.1, pid=cold_pid, node=0))
    size, hot_off, hot = 16 * GiB, 4 * GiB, 2 * GiB
    m.add_workload(Workload.hot_cold(size, hot_off, hot, pid=pid, node=1,
                                     accessor=Accessor("cpu1", 0, cpu=1, tid=pid)))
    info = {"pid": pid, "cold_pid": cold_pid, "dram_nid": 0, "cxl_nid": 1,
            "hot": (DEFAULT_BASE + hot_off, DEFAULT_BASE + hot_off + hot)}
    return m, info
