"""Holistic NUMA migration vs. first touch, interleaving, single-path TPP and an oracle.

Runs on the simulated seed topology in virtual time (the talk's matrix: CPU1 sees DRAM1 10,
CXL1 20, DRAM2 50, CXL2 60; CPU2 mirrors it).  Workloads (one process, everything
first-touched by a main thread on node 0, so socket 2's data starts on the wrong side):

- ``two-socket``: a CPU1 thread hot on ``priv1``, a CPU2 thread hot on ``priv2`` (200
  accesses/s/page), both warm on ``shared`` (50 each), a large cold range (0.1); at half time
  the threads swap sockets (phase change: ``priv1`` is now CPU2's, ``priv2`` CPU1's).
- ``two-socket+gpu``: the same plus a GPU-like accessor on a 5th node (its own memory; 30/40
  to socket 1's DRAM/CXL over its link) hot on a ``gpubuf`` the main thread touched first.

Policies, each on a fresh machine with the same seed: ``first-touch`` (no migration),
``interleave`` (every range spread evenly over DRAM+CXL nodes 0-3), ``single-path TPP`` (the
kernel's approach: hotness from all accessors together, one tiering for all: CXL 1->DRAM 0,
CXL 3->DRAM 2 promotions, the reverse demotions; same knobs as holistic), ``holistic``
(:class:`~damoncore.policies.holistic.HolisticPolicy`) and ``oracle`` (per phase, the
min-cost placement for the same capacities, by linear programming, free migrations).

Metrics: mean access cost (cost units of the matrix per access, all accessors), share of
accesses served by the accessor's own node, MiB migrated.

    PYTHONPATH=src python benchmarks/eval_holistic.py [--phase_s 20] [--write docs/holistic.md]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from damoncore.core import Context, Kdamond, Target
from damoncore.schemes.scheme import AccessPattern
from damoncore.ops.sim import SimOps
from damoncore.policies.hierarchy import AccessorSpec, build_hierarchies
from damoncore.policies.holistic import (HolisticConfig, HolisticPolicy, demote_scheme,
                                         promote_scheme)
from damoncore.sim import Accessor, Mapping, Process, SimMachine, SimNode, Stream, Workload
from damoncore.sim.extents import overlap_pairs
from damoncore.sim.presets import SEED_LATENCY
from damoncore.sim.workloads import DEFAULT_BASE

MiB = 1 << 20
PID = 1000
REPORTS = 2048          # access reports per accessor per sample interval (sampling rate)
# rows: initiator node; the GPU (node 4) reaches socket 1 over its link
LAT5 = [list(r) + [x] for r, x in zip(SEED_LATENCY, (80, 80, 90, 90))] + [[30, 40, 60, 70, 10]]
CPU1 = Accessor("cpu1", 0, cpu=0, tid=101)
CPU2 = Accessor("cpu2", 2, cpu=2, tid=201)
GPU = Accessor("gpu0", 4, cpu=-1, tid=901, device="gpu")
SPECS = {"cpu1": AccessorSpec("cpu1", 0, cpus={0}), "cpu2": AccessorSpec("cpu2", 2, cpus={2}),
         "gpu0": AccessorSpec("gpu0", 4, tids={901})}


def machine(gpu: bool, scale: float = 1.0, seed: int = 0) -> SimMachine:
    """Seed topology (DRAM 512 MiB, CXL 1 GiB at scale 1), plus a 256 MiB GPU node 4."""
    d, c = int(512 * MiB * scale), int(1024 * MiB * scale)
    nodes = [SimNode(0, d, True, "dram"), SimNode(1, c, False, "cxl"),
             SimNode(2, d, True, "dram"), SimNode(3, c, False, "cxl")]
    if gpu:
        nodes.append(SimNode(4, int(256 * MiB * scale), False, "gpu"))
        return SimMachine(nodes, LAT5, seed=seed)
    return SimMachine(nodes, SEED_LATENCY, seed=seed)


def ranges(gpu: bool, scale: float = 1.0) -> dict:
    """name -> [start, end) virtual bytes of the process."""
    sizes = [("priv1", 128), ("priv2", 128), ("shared", 64), ("cold", 768)]
    if gpu:
        sizes.insert(3, ("gpubuf", 128))
    out, at = {}, DEFAULT_BASE
    for name, mib in sizes:
        sz = int(mib * MiB * scale)
        out[name] = (at, at + sz)
        at += sz
    return out


def workload(gpu: bool, phase_us: int, scale: float = 1.0, interleave: bool = False):
    """The two-phase workload; ``interleave`` spreads every range evenly over nodes 0-3."""
    r = ranges(gpu, scale)
    maps = []
    for s, e in r.values():
        q = (e - s) // 4 // 4096 * 4096
        place = tuple((n, q) for n in range(4)) if interleave else ()
        maps.append(Mapping(s, e, node=0, placement=place))
    proc = Process(PID, tuple(maps), node=0)

    def phase(a, b):
        st = [Stream(a, PID, *r["priv1"], 200.0), Stream(b, PID, *r["priv2"], 200.0),
              Stream(CPU1, PID, *r["shared"], 50.0), Stream(CPU2, PID, *r["shared"], 50.0),
              Stream(CPU1, PID, *r["cold"], 0.1)]
        if gpu:
            st.append(Stream(GPU, PID, *r["gpubuf"], 200.0))
        return st
    return Workload([proc], [(0, phase(CPU1, CPU2)), (phase_us, phase(CPU2, CPU1))])


def node_ranges(m):
    return {x.nid: [m.node_range(x.nid)] for x in m.nodes}


def holistic(m, cfg, seed=0):
    accs = [SPECS[a.name] for a in m.accessors]
    hs = build_hierarchies(m.latency, accs)
    ops = SimOps(m, space="paddr", max_reports_per_accessor=REPORTS)
    return HolisticPolicy(ops, hs, node_ranges(m), cfg, seed=seed)


def single_path_tpp(m, cfg, seed=0):
    """The kernel's way (samples/damon/mtier.c per tier pair): one context per node, fed by
    every accessor's reports; CXL n+1 -> DRAM n promotions and DRAM n -> CXL n+1 demotions
    for n in (0, 2), with the same hot threshold, goals, dwell (age) and bytes/s quota as
    holistic (here a plain DAMOS size quota: one target per context)."""
    ctxs = []
    window = cfg.quota_bytes_per_s * cfg.reset_interval_ms // 1000
    for up, low in ((0, 1), (2, 3)):
        for nid, s in ((up, demote_scheme(0, up, low, cfg)), (low, promote_scheme(0, up, (), cfg))):
            s.filters = []
            s.quota.sz_bytes = window
            if s.action == "migrate_hot":
                # holistic's promote schemes leave hotness to its coordinator; without one,
                # the baseline needs the hot threshold in its own access pattern
                s.access_pattern = AccessPattern(min_nr_accesses=cfg.hot_percent,
                                                 nr_accesses_unit="percent",
                                                 min_age=cfg.min_age_aggrs)
            ctxs.append(Context(SimOps(m, space="paddr", max_reports_per_accessor=REPORTS),
                                [Target(ranges=[m.node_range(nid)])], attrs=cfg.attrs,
                                primitives=("page_fault",), schemes=[s], seed=seed + nid,
                                name=f"tpp node{nid}"))
    return Kdamond(ctxs)


def oracle(m, phases, duration_us):
    """(mean cost, local share) of the per-phase min-cost placement (LP over the pieces of
    uniform rates; capacities of every node; migrations free)."""
    from scipy.optimize import linprog
    accs = m.accessors
    lat = m.latency[[a.node for a in accs]]                      # (accessors, nodes)
    caps = np.array([x.capacity_bytes for x in m.nodes], float)
    ms = np.array([s for s, _ in m.mappings(PID)], np.uint64)
    me = np.array([e for _, e in m.mappings(PID)], np.uint64)
    key0 = np.uint64(m.pidx(PID)) << np.uint64(48)
    tot_cost = tot_acc = tot_local = 0.0
    bounds = list(phases) + [duration_us]
    for t0, t1 in zip(bounds, bounds[1:]):
        rm = m.ratemap(t0)
        _, j, lo, hi = overlap_pairs(ms | key0, me | key0, rm.starts, rm.ends)
        pages = (hi - lo).astype(float) / m.page_size
        rates = rm.rates[j][:, :len(accs)]                        # (pieces, accessors)
        c = (rates @ lat) * pages[:, None]                        # cost/s per (piece, node)
        p, n = c.shape
        a_eq = np.zeros((p, p * n))
        for i in range(p):
            a_eq[i, i * n:(i + 1) * n] = 1
        a_ub = np.tile(np.eye(n), p) * np.repeat(pages * m.page_size, n)[None, :]
        res = linprog(c.ravel(), A_ub=a_ub, b_ub=caps, A_eq=a_eq, b_eq=np.ones(p),
                      bounds=(0, 1), method="highs")
        x = res.x.reshape(p, n)
        dt = (t1 - t0) / 1e6
        acc = rates * pages[:, None]                              # accesses/s (piece, acc)
        tot_cost += float((c * x).sum()) * dt
        tot_acc += float(acc.sum()) * dt
        own = x[:, [a.node for a in accs]]                        # share on each acc's node
        tot_local += float((acc * own).sum()) * dt
    return tot_cost / tot_acc, tot_local / tot_acc


def metrics(m) -> dict:
    st = m.stats()
    acc = sum(v["accesses"] for v in st["accessors"].values())
    return {"cost": sum(v["cost"] for v in st["accessors"].values()) / acc,
            "local": sum(v["accesses"] * v["local_dram_share"]
                         for v in st["accessors"].values()) / acc,
            "migrated_mib": sum(st["migrated"].values()) / MiB}


def default_config() -> HolisticConfig:
    """The evaluation's knobs: 1 GiB/s per path step, the rest HolisticConfig's defaults."""
    return HolisticConfig(quota_bytes_per_s=1024 * MiB)


def evaluate(gpu=False, phase_us=20_000_000, scale=1.0, seed=0, cfg=None, policies=None):
    """{policy: {cost, local, migrated_mib, wall_s}} on one workload."""
    cfg = cfg or default_config()
    duration = 2 * phase_us
    out = {}
    for name in policies or ("first-touch", "interleave", "single-path TPP", "holistic",
                             "oracle"):
        m = machine(gpu, scale, seed)
        m.add_workload(workload(gpu, phase_us, scale, interleave=(name == "interleave")))
        t = time.monotonic()
        if name == "oracle":
            cost, local = oracle(m, [0, phase_us], duration)
            out[name] = {"cost": cost, "local": local, "migrated_mib": float("nan")}
            continue
        if name == "single-path TPP":
            single_path_tpp(m, cfg, seed).run(duration)
        elif name == "holistic":
            holistic(m, cfg, seed).run(duration)
        else:
            m.clock.sleep_us(duration)
        out[name] = metrics(m)
        out[name]["wall_s"] = time.monotonic() - t
    return out


def table(results: dict, title: str) -> str:
    lines = [f"{title}", "",
             "| policy | mean access cost | local-node share | migrated (MiB) | vs oracle |",
             "|---|---:|---:|---:|---:|"]
    o = results.get("oracle", {}).get("cost")
    for name, r in results.items():
        mig = "-" if r["migrated_mib"] != r["migrated_mib"] else f"{r['migrated_mib']:.0f}"
        rel = f"{r['cost'] / o:.2f}x" if o else "-"
        lines.append(f"| {name} | {r['cost']:.2f} | {r['local']:.1%} | {mig} | {rel} |")
    return "\n".join(lines)


def check(results) -> list:
    """The claims: holistic within 10% of the oracle, >= 15% below single-path TPP."""
    h, o, t = (results[k]["cost"] for k in ("holistic", "oracle", "single-path TPP"))
    bad = []
    if h > 1.10 * o:
        bad.append(f"holistic {h:.2f} is more than 10% above the oracle {o:.2f}")
    if h > 0.85 * t:
        bad.append(f"holistic {h:.2f} is not 15% below single-path TPP {t:.2f}")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase_s", type=float, default=20.0, help="virtual seconds per phase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_gpu", action="store_true", help="skip the GPU workload")
    p.add_argument("--write", metavar="<file>", help="replace the results section of this "
                   "markdown file (between the eval markers)")
    a = p.parse_args(argv)
    phase_us = int(a.phase_s * 1e6)
    out = []
    cmd = "PYTHONPATH=src python benchmarks/eval_holistic.py" + (
        f" --phase_s {a.phase_s:g}" if a.phase_s != 20 else "")
    bad = []
    for gpu in ((False,) if a.no_gpu else (False, True)):
        r = evaluate(gpu, phase_us, seed=a.seed)
        name = "two-socket+gpu" if gpu else "two-socket"
        out.append(table(r, f"**{name}** ({2 * a.phase_s:g} s virtual, phase change at "
                            f"{a.phase_s:g} s, seed {a.seed})"))
        if not gpu:
            bad = check(r)
        print(out[-1] + "\n", flush=True)
        print("wall s: " + ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in r.items()
                                     if "wall_s" in v) + "\n", file=sys.stderr)
    text = f"Command: `{cmd}`\n\n" + "\n\n".join(out)
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        begin, end = "<!-- eval:begin -->", "<!-- eval:end -->"
        i, j = doc.index(begin) + len(begin), doc.index(end)
        with open(a.write, "w") as f:
            f.write(doc[:i] + "\n" + text + "\n" + doc[j:])
    for b in bad:
        print(f"CLAIM FAILED: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
