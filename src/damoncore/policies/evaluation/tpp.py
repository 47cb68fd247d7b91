"""TPP tiering on the simulated tiering topology (node 0 DRAM, node 1 CXL): convergence.

Node 0 (DRAM) starts almost full of cold data; a process with a hot set (and a warm
remainder) starts entirely on node 1 (CXL).  The policy is :mod:`damoncore.policies.tpp`
with the talk's knobs (200 MiB per 1 s per scheme, 99.7% used goal, 0.5% free goal, young
filters).  :func:`run` yields one row per second: node 0 used %, share of the hot set on
node 0, bytes promoted and demoted in that second; :func:`moves` the ledger's figures of a
run (bytes moved against the minimum, the most moves of a page, per range).
"""

from __future__ import annotations

from ...core.context import Kdamond
from ...ops.sim import SimOps
from ...sim.extents import key_of
from ...sim.moves import MoveLedger
from ...sim.presets import tiering_machine
from ...sim.workloads import Accessor, Mapping, Process, Stream, Workload
from ..tpp import TppConfig, tpp_contexts

MiB, GiB = 1 << 20, 1 << 30
BASE = 1 << 40
COLD_PID, HOT_PID = 100, 200


def scenario(dram=16 * GiB, cxl=64 * GiB, cold=int(15.5 * GiB), proc=4 * GiB, hot=1 * GiB,
             hot_rate=500.0, warm_rate=20.0, cold_rate=0.01, seed=1):
    """Returns (machine, hot_pid, (hot_start, hot_end))."""
    m = tiering_machine(dram, cxl, seed=seed)
    acc = Accessor("cpu0", 0, cpu=0, tid=1)
    cold_p = Process(COLD_PID, (Mapping(BASE, BASE + cold, placement=((0, cold),)),), node=0)
    hot_p = Process(HOT_PID, (Mapping(BASE, BASE + proc, placement=((1, proc),)),), node=0)
    m.add_workload(Workload([cold_p, hot_p], [(0, [
        Stream(acc, COLD_PID, BASE, BASE + cold, cold_rate),
        Stream(acc, HOT_PID, BASE, BASE + hot, hot_rate),
        Stream(acc, HOT_PID, BASE, BASE + proc, warm_rate)])]))
    return m, HOT_PID, (BASE, BASE + hot)


def share_on(m, pid, rng, nid) -> float:
    k = m.pidx(pid)
    s, e, _, node = m.segments(key_of(k, [rng[0]]), key_of(k, [rng[1]]))
    return float(((e - s)[node == nid]).sum()) / (rng[1] - rng[0])


def run(seconds=120, tuner="distance", seed=1, report=None, **kw):
    """Yields per-second rows: (t_s, used0_pct, hot_share0, promoted_B, demoted_B).
    ``report``: a dict that gets the ledger's figures after the last row
    (``{"all"|"hot"|"warm"|"cold": RangeMoves}``)."""
    m, pid, hot = scenario(seed=seed, **kw)
    ledger = MoveLedger(m)
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
    if report is not None:
        report.update(ledger.report(ranges(m, hot)))


def ranges(m, hot) -> dict:
    """The named ranges of the scenario for the ledger's per-range figures."""
    proc = m.mappings(HOT_PID)[0]
    return {"hot": (HOT_PID, *hot), "warm": (HOT_PID, hot[1], proc[1]),
            "cold": (COLD_PID, *m.mappings(COLD_PID)[0])}
