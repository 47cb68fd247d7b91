"""Dynamic weighted interleaving vs. static weights on the simulated seed topology.

Nodes (``sim.presets.seed_machine``): 0 DRAM1 and 2 DRAM2 at 100 GB/s, 1 CXL1 and 3 CXL2 at
30 GB/s.  A bandwidth-bound process streams over an array interleaved over all four nodes
(first touch under the run's weights); a co-runner's traffic is served first and the
stream gets what is left (``sim.bandwidth``'s bound model, ``T = min_n R[n] / s[n]``):

    phase 1  [0, P)    the stream alone over the whole array
    phase 2  [P, 2P)   a co-runner takes 60 GB/s of DRAM1 (node 0)
    phase 3  [2P, 3P)  the co-runner moves to CXL1 (20 GB/s of node 1) and the stream's
                       hot set shrinks to the first half of the array

Runs: static equal weights (1:1:1:1), static HMAT/bandwidth weights (10:3:10:3), and the
dynamic policy (``policies.interleave``: starts at 10:3:10:3, re-tunes from the measured
residual bandwidth and DAMON's view of the hot data, re-places at most 2 GiB/s).

    PYTHONPATH=src python benchmarks/eval_interleave.py [--phase-s 20] [--size-gib 8]

prints the stream's throughput (GB/s, mean of 10 points per second) for the three runs,
the dynamic weights and the bytes it migrated each second, then the per-phase means.
"""

from __future__ import annotations

import argparse

import numpy as np

from damoncore.core.context import Kdamond
from damoncore.core.target import Target
from damoncore.ops.sim import SimOps
from damoncore.policies.interleave import DynamicInterleave, InterleaveConfig
from damoncore.sim.bandwidth import (GB, BandwidthModel, interleave_placement, node_traffic,
                                     sim_node_bytes)
from damoncore.sim.presets import seed_machine
from damoncore.sim.workloads import Accessor, Mapping, Process, Stream, Workload

MiB, GiB = 1 << 20, 1 << 30
BASE = 1 << 40
PEAK = {0: 100 * GB, 1: 30 * GB, 2: 100 * GB, 3: 30 * GB}
EQUAL = {0: 1, 1: 1, 2: 1, 3: 1}
HMAT = {0: 10, 1: 3, 2: 10, 3: 3}
STREAM_PID, CORUNNER_PID = 100, 200
SLICE_US = 100_000


def corunner_rate(bytes_s: float, size: int, page: int = 4096, line: int = 64) -> float:
    """Accesses/s/page that make ``bytes_s`` of traffic over ``size`` bytes."""
    return bytes_s / line / (size // page)


def scenario(weights, phase_s=20, size=8 * GiB, dram=16 * GiB, cxl=16 * GiB, seed=1):
    """The machine with the stream (first-touched under ``weights``) and the co-runner."""
    m = seed_machine(dram, cxl, seed=seed)
    cpu, other = Accessor("stream", 0, cpu=0, tid=1), Accessor("corunner", 0, cpu=1, tid=2)
    stream = Process(STREAM_PID, (Mapping(BASE, BASE + size,
                                          placement=interleave_placement(size, weights)),))
    co = 1 * GiB
    corunner = Process(CORUNNER_PID, (Mapping(BASE, BASE + co, placement=((0, co),)),
                                      Mapping(BASE + co, BASE + 2 * co, placement=((1, co),))))
    full = Stream(cpu, STREAM_PID, BASE, BASE + size, 1000.0)
    half = Stream(cpu, STREAM_PID, BASE, BASE + size // 2, 1000.0)
    p = phase_s * 1_000_000
    m.add_workload(Workload([stream, corunner], [
        (0, [full]),
        (p, [full, Stream(other, CORUNNER_PID, BASE, BASE + co, corunner_rate(60 * GB, co))]),
        (2 * p, [half, Stream(other, CORUNNER_PID, BASE + co, BASE + 2 * co,
                              corunner_rate(20 * GB, co))]),
    ]))
    return m


def stream_throughput(m, model) -> float:
    """Bytes/s the stream gets at the machine's current placement and phase."""
    return model.throughput(node_traffic(m, STREAM_PID),
                            background=node_traffic(m, CORUNNER_PID))


def run(phase_s=20, size=8 * GiB, max_bytes_per_s=2 * GiB, seed=1):
    """Per-second rows: (t_s, equal, hmat, dynamic (bytes/s), dynamic weights, migrated B)."""
    seconds = 3 * phase_s
    model = BandwidthModel(np.array([PEAK[n] for n in range(4)]))
    statics = []
    for w in (EQUAL, HMAT):
        m = scenario(w, phase_s, size, seed=seed)
        curve = []
        for _ in range(seconds * 1_000_000 // SLICE_US):
            curve.append(stream_throughput(m, model))
            m.clock.sleep_us(SLICE_US)
        statics.append(np.array(curve).reshape(seconds, -1).mean(axis=1))
    m = scenario(HMAT, phase_s, size, seed=seed)
    cfg = InterleaveConfig(nodes=[0, 1, 2, 3], peak_bytes_s=PEAK,
                           max_bytes_per_s=max_bytes_per_s)
    pol = DynamicInterleave(cfg, SimOps(m, space="vaddr", pid=STREAM_PID),
                            Target(pid=STREAM_PID), sim_node_bytes(m, STREAM_PID),
                            background=lambda: node_traffic(m, CORUNNER_PID), seed=seed)
    kd = Kdamond([pol.ctx])
    rows, last = [], 0
    per_s = 1_000_000 // SLICE_US
    for sec in range(seconds):
        pts = []
        for _ in range(per_s):
            pts.append(stream_throughput(m, model))     # the state during the next slice
            kd.run(SLICE_US, cleanup=False)
        moved = pol.sz_migrated
        w = ":".join(str(pol.weights[n]) for n in cfg.nodes)
        rows.append((sec + 1, statics[0][sec], statics[1][sec], float(np.mean(pts)), w,
                     moved - last))
        last = moved
    return rows


def phase_means(rows, phase_s):
    """[(phase, equal, hmat, dynamic)] mean bytes/s per phase."""
    out = []
    for i in range(3):
        part = rows[i * phase_s:(i + 1) * phase_s]
        out.append((i + 1, *(float(np.mean([r[k] for r in part])) for k in (1, 2, 3))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase-s", type=int, default=20)
    ap.add_argument("--size-gib", type=int, default=8)
    ap.add_argument("--max-gib-per-s", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    rows = run(a.phase_s, a.size_gib * GiB, int(a.max_gib_per_s * GiB), a.seed)
    print("| t (s) | equal 1:1:1:1 GB/s | HMAT 10:3:10:3 GB/s | dynamic GB/s "
          "| dynamic weights | migrated MiB |")
    print("|---|---|---|---|---|---|")
    for t, eq, hm, dy, w, mv in rows:
        print(f"| {t} | {eq / GB:.1f} | {hm / GB:.1f} | {dy / GB:.1f} | {w} | {mv / MiB:.0f} |")
    print()
    print("| phase | equal GB/s | HMAT GB/s | dynamic GB/s |")
    print("|---|---|---|---|")
    for ph, eq, hm, dy in phase_means(rows, a.phase_s):
        print(f"| {ph} | {eq / GB:.1f} | {hm / GB:.1f} | {dy / GB:.1f} |")


if __name__ == "__main__":
    main()
