"""TPP tiering on the simulated seed tiering topology: convergence curve.

Node 0 (DRAM) starts almost full of cold data; a process with a hot set (and a warm
remainder) starts entirely on node 1 (CXL).  The policy is damoncore.policies.tpp with the
talk's knobs (200 MiB per 1 s per scheme, 99.7% used goal, 0.5% free goal, young filters).

    PYTHONPATH=src python benchmarks/eval_tpp.py [--seconds 120] [--tuner distance|consist]

prints one row per second: node 0 used %, share of the hot set on node 0, bytes promoted
and demoted in that second.
"""

from __future__ import annotations

import argparse

import numpy as np

from damoncore.core.context import Kdamond
from damoncore.ops.sim import SimOps
from damoncore.policies.tpp import TppConfig, tpp_contexts
from damoncore.sim.extents import key_of
from damoncore.sim.presets import tiering_machine
from damoncore.sim.workloads import Accessor, Mapping, Process, Stream, Workload

MiB, GiB = 1 << 20, 1 << 30
BASE = 1 << 40


def scenario(dram=16 * GiB, cxl=64 * GiB, cold=int(15.5 * GiB), proc=4 * GiB, hot=1 * GiB,
             hot_rate=500.0, warm_rate=20.0, cold_rate=0.01, seed=1):
    """Returns (machine, hot_pid, (hot_start, hot_end))."""
    m = tiering_machine(dram, cxl, seed=seed)
    acc = Accessor("cpu0", 0, cpu=0, tid=1)
    cold_p = Process(100, (Mapping(BASE, BASE + cold, placement=((0, cold),)),), node=0)
    hot_p = Process(200, (Mapping(BASE, BASE + proc, placement=((1, proc),)),), node=0)
    m.add_workload(Workload([cold_p, hot_p], [(0, [
        Stream(acc, 100, BASE, BASE + cold, cold_rate),
        Stream(acc, 200, BASE, BASE + hot, hot_rate),
        Stream(acc, 200, BASE, BASE + proc, warm_rate)])]))
    return m, 200, (BASE, BASE + hot)


def share_on(m, pid, rng, nid) -> float:
    k = m.pidx(pid)
    s, e, _, node = m.segments(key_of(k, [rng[0]]), key_of(k, [rng[1]]))
    return float(((e - s)[node == nid]).sum()) / (rng[1] - rng[0])


def run(seconds=120, tuner="distance", seed=1, **kw):
    """Yields per-second rows: (t_s, used0_pct, hot_share0, promoted_B, demoted_B, max_rate)."""
    m, pid, hot = scenario(seed=seed, **kw)
    cfg = TppConfig(tiers=[0, 1], goal_tuner=tuner)
    ctxs = tpp_contexts(cfg, lambda nid: SimOps(m, space="paddr"),
                        lambda nid: [m.node_range(nid)], seed=seed)
    k = Kdamond(ctxs)
    demote, promote = ctxs[0].schemes[0], ctxs[1].schemes[0]
    last_p = last_d = 0
    for sec in range(1, seconds + 1):
        k.run(1_000_000, cleanup=False)
        p, d = promote.stats.sz_promoted, demote.stats.sz_demoted
        yield (sec, m.node_used(0) * 100 / m.nodes[0].capacity_bytes,
               share_on(m, pid, hot, 0), p - last_p, d - last_d)
        last_p, last_d = p, d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--tuner", default="distance", choices=["distance", "consist"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    print("| t (s) | node0 used % | hot set on node0 % | promoted MiB/s | demoted MiB/s |")
    print("|---|---|---|---|---|")
    for t, used, share, p, d in run(a.seconds, a.tuner, a.seed):
        print(f"| {t} | {used:.2f} | {share * 100:.1f} | {p / MiB:.1f} | {d / MiB:.1f} |")


if __name__ == "__main__":
    main()
