"""Dynamic weighted interleaving vs. static weights on simulated four-node machines.

Nodes 0 and 2 are DRAM, 1 and 3 CXL (``sim.presets.seed_machine``).  A bandwidth-bound
process streams over an array interleaved over all four nodes (first touch under the run's
weights); a co-runner's traffic is served first and the stream gets what is left
(``sim.bandwidth``'s bound model, ``T = min_n R[n] / s[n]``).  Scenarios (:data:`SCENARIOS`):

- ``seed``: DRAM 100 GB/s, CXL 30 GB/s, an 8 GiB array.  Phase 1 alone; phase 2 a
  co-runner takes 60 GB/s of node 0; phase 3 it moves to node 1 (20 GB/s) and the stream's
  hot set shrinks to the first half of the array.
- ``co-runner leaves``: DRAM 50 GB/s, CXL 30 GB/s (HMAT weights 5:3:5:3), a 3 GiB array.
  Phase 1 alone; phase 2 a co-runner takes 22.5 GB/s of node 3 (the residual bandwidth
  asks for 20:12:20:3); phase 3 it is gone again (back to 5:3:5:3).

Runs: static equal weights (1:1:1:1), static HMAT weights (from the peaks), and the dynamic
policy (``policies.interleave``: starts at the HMAT weights, re-tunes from the measured
residual bandwidth and DAMON's view of the hot data, re-places at most ``max_bytes_per_s``).

Reported: the stream's throughput (mean of 10 points per second), per phase; for every
weight change, the bytes moved against the minimum that reaches the new ratio (each node's
surplus of the hot data: ``sum_n max(0, bytes_n - share_n * hot bytes)``); after each
phase change, how long until the dynamic run is back at 98% of the best static choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.context import Kdamond
from ...core.target import Target
from ...ops.sim import SimOps
from ...sim.bandwidth import (GB, BandwidthModel, interleave_placement, node_traffic,
                              sim_node_bytes)
from ...sim.machine import SIM_PAGE_SIZE
from ...sim.moves import MoveLedger
from ...sim.presets import seed_machine
from ...sim.workloads import Accessor, Mapping, Process, Stream, Workload
from ..interleave import DynamicInterleave, InterleaveConfig, weights_from_shares

MiB, GiB = 1 << 20, 1 << 30
BASE = 1 << 40
STREAM_PID, CORUNNER_PID = 100, 200
SLICE_US = 100_000
CORUNNER_BYTES = 1 * GiB          # the co-runner's buffer on each node it loads


@dataclass(frozen=True)
class Phase:
    """The co-runner's load (``corunner``: {node: bytes/s}) and the stream's hot share of
    the array (its first ``hot`` of it)."""

    corunner: dict = field(default_factory=dict)
    hot: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    peaks: dict               # {node: bytes/s}
    size: int                 # the stream's array
    phases: tuple

    @property
    def hmat(self) -> dict:
        return weights_from_shares([self.peaks[n] for n in sorted(self.peaks)],
                                   sorted(self.peaks))


SCENARIOS = {
    "seed": Scenario("seed", {0: 100 * GB, 1: 30 * GB, 2: 100 * GB, 3: 30 * GB}, 8 * GiB,
                     (Phase(), Phase({0: 60 * GB}), Phase({1: 20 * GB}, hot=0.5))),
    "co-runner leaves": Scenario("co-runner leaves",
                                 {0: 50 * GB, 1: 30 * GB, 2: 50 * GB, 3: 30 * GB}, 3 * GiB,
                                 (Phase(), Phase({3: 22.5 * GB}), Phase())),
}
# the seed scenario's figures, as the tests and docs name them
PEAK = SCENARIOS["seed"].peaks
EQUAL = {0: 1, 1: 1, 2: 1, 3: 1}
HMAT = {0: 10, 1: 3, 2: 10, 3: 3}


def corunner_rate(bytes_s: float, size: int, page: int = SIM_PAGE_SIZE,
                  line: int = 64) -> float:
    """Accesses/s/page that make ``bytes_s`` of traffic over ``size`` bytes."""
    return bytes_s / line / (size // page)


def scenario(weights, phase_s=20, size=None, dram=16 * GiB, cxl=16 * GiB, seed=1,
             sc: Scenario | str = "seed"):
    """The machine with the stream (first-touched under ``weights``) and the co-runner
    (one 1 GiB buffer on every node; the phases say which it loads and how much)."""
    sc = SCENARIOS[sc] if isinstance(sc, str) else sc
    size = sc.size if size is None else size
    m = seed_machine(dram, cxl, seed=seed)
    cpu, other = Accessor("stream", 0, cpu=0, tid=1), Accessor("corunner", 0, cpu=1, tid=2)
    stream = Process(STREAM_PID, (Mapping(BASE, BASE + size,
                                          placement=interleave_placement(size, weights)),))
    co = CORUNNER_BYTES
    corunner = Process(CORUNNER_PID, tuple(
        Mapping(BASE + n * co, BASE + (n + 1) * co, placement=((n, co),)) for n in range(4)))
    p = phase_s * 1_000_000
    sched = []
    for i, ph in enumerate(sc.phases):
        hot_end = BASE + int(size * ph.hot) // SIM_PAGE_SIZE * SIM_PAGE_SIZE
        st = [Stream(cpu, STREAM_PID, BASE, hot_end, 1000.0)]
        st += [Stream(other, CORUNNER_PID, BASE + n * co, BASE + (n + 1) * co,
                      corunner_rate(bw, co)) for n, bw in sorted(ph.corunner.items())]
        sched.append((i * p, st))
    m.add_workload(Workload([stream, corunner], sched))
    return m


def stream_throughput(m, model) -> float:
    """Bytes/s the stream gets at the machine's current placement and phase."""
    return model.throughput(node_traffic(m, STREAM_PID),
                            background=node_traffic(m, CORUNNER_PID))


@dataclass
class Run:
    """A dynamic run: ``rows`` per second (t_s, equal, hmat, dynamic bytes/s, weights,
    migrated bytes); ``points`` (dynamic, best static) bytes/s per 100 ms slice;
    ``retunes``: [{t_s, weights, moved, minimum}] per weight change; ``moves``: the
    ledger's report for the whole run."""

    rows: list
    points: list
    retunes: list
    moves: dict
    policy: object = None


def _surplus(m, hot_end, weights) -> int:
    """Bytes of the stream's hot data ``[BASE, hot_end)`` above each node's share."""
    nb = sim_node_bytes(m, STREAM_PID)(np.array([BASE], np.uint64),
                                       np.array([hot_end], np.uint64))[0]
    w = np.array([weights.get(n, 0) for n in range(len(nb))], float)
    want = w / w.sum() * nb.sum()
    return int(np.maximum(nb - want, 0).sum())


def run_scenario(sc: Scenario | str = "seed", phase_s=20, size=None, max_bytes_per_s=2 * GiB,
                 seed=1, cfg_kw=None) -> Run:
    """The three runs on one scenario (see the module docstring)."""
    sc = SCENARIOS[sc] if isinstance(sc, str) else sc
    size = sc.size if size is None else size
    seconds = len(sc.phases) * phase_s
    nodes = sorted(sc.peaks)
    model = BandwidthModel(np.array([sc.peaks[n] for n in nodes]))
    per_s = 1_000_000 // SLICE_US
    statics = []
    for w in (EQUAL, sc.hmat):
        m = scenario(w, phase_s, size, seed=seed, sc=sc)
        curve = []
        for _ in range(seconds * per_s):
            curve.append(stream_throughput(m, model))
            m.clock.sleep_us(SLICE_US)
        statics.append(np.array(curve))
    m = scenario(sc.hmat, phase_s, size, seed=seed, sc=sc)
    cfg = InterleaveConfig(nodes=nodes, peak_bytes_s=sc.peaks, max_bytes_per_s=max_bytes_per_s,
                           **(cfg_kw or {}))
    pol = DynamicInterleave(cfg, SimOps(m, space="vaddr", pid=STREAM_PID),
                            Target(pid=STREAM_PID), sim_node_bytes(m, STREAM_PID),
                            background=lambda: node_traffic(m, CORUNNER_PID), seed=seed)
    ledger = MoveLedger(m)
    kd = Kdamond([pol.ctx])
    rows, points, retunes, last = [], [], [], 0
    seen = len(pol.weights_log)
    for sec in range(seconds):
        pts = []
        phase = sc.phases[min(sec // phase_s, len(sc.phases) - 1)]
        hot_end = BASE + int(size * phase.hot) // SIM_PAGE_SIZE * SIM_PAGE_SIZE
        if sec and sec % phase_s == 0:
            ledger.checkpoint()
        for i in range(per_s):
            pts.append(stream_throughput(m, model))     # the state during the next slice
            k = sec * per_s + i
            points.append((pts[-1], max(statics[0][k], statics[1][k])))
            kd.run(SLICE_US, cleanup=False)
            if len(pol.weights_log) > seen:
                for t_us, w in pol.weights_log[seen:]:
                    if retunes:
                        retunes[-1]["moved"] = pol.sz_migrated - retunes[-1]["moved"]
                    retunes.append({"t_s": t_us / 1e6, "weights": w,
                                    "minimum": _surplus(m, hot_end, w),
                                    "moved": pol.sz_migrated})
                seen = len(pol.weights_log)
        moved = pol.sz_migrated
        w = ":".join(str(pol.weights[n]) for n in nodes)
        rows.append((sec + 1, statics[0][sec * per_s:(sec + 1) * per_s].mean(),
                     statics[1][sec * per_s:(sec + 1) * per_s].mean(), float(np.mean(pts)),
                     w, moved - last))
        last = moved
    if retunes:
        retunes[-1]["moved"] = pol.sz_migrated - retunes[-1]["moved"]
    kd.run(0)
    return Run(rows, points, retunes, ledger.report(
        {"array": (STREAM_PID, BASE, BASE + size)}), pol)


def run(phase_s=20, size=8 * GiB, max_bytes_per_s=2 * GiB, seed=1):
    """The seed scenario's per-second rows: (t_s, equal, hmat, dynamic (bytes/s), dynamic
    weights, migrated bytes)."""
    return run_scenario("seed", phase_s, size, max_bytes_per_s, seed).rows


def phase_means(rows, phase_s, nr_phases=3):
    """[(phase, equal, hmat, dynamic)] mean bytes/s per phase."""
    out = []
    for i in range(nr_phases):
        part = rows[i * phase_s:(i + 1) * phase_s]
        out.append((i + 1, *(float(np.mean([r[k] for r in part])) for k in (1, 2, 3))))
    return out


def recovery_s(points, phase_s, share=0.98):
    """Per phase change: seconds until the dynamic run is at ``share`` of the best static
    choice's throughput and stays there for the rest of the phase (None: never)."""
    per_s = 1_000_000 // SLICE_US
    out = []
    n = len(points) // (phase_s * per_s)
    for ph in range(1, n):
        seg = points[ph * phase_s * per_s:(ph + 1) * phase_s * per_s]
        bad = [i for i, (dyn, best) in enumerate(seg) if dyn < share * best]
        out.append(0.0 if not bad else (None if bad[-1] == len(seg) - 1
                                        else (bad[-1] + 1) * SLICE_US / 1e6))
    return out
