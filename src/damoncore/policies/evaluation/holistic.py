"""Holistic NUMA migration vs first touch, interleaving, single-path TPP and an oracle.

Simulated machines in virtual time.  The seed topology (the talk's matrix: CPU1 sees DRAM1
10, CXL1 20, DRAM2 50, CXL2 60; CPU2 mirrors it; DRAM 512 MiB, CXL 1 GiB per socket at
scale 1), one process, workloads:

- ``two-socket``: everything first-touched by a main thread on node 0; a CPU1 thread hot on
  ``priv1``, a CPU2 thread hot on ``priv2`` (128 MiB each, 200 accesses/s/page), both warm
  on ``shared`` (64 MiB, 50 each), a large ``cold`` range (768 MiB, 0.1); at half time the
  threads swap sockets (``priv1`` is now CPU2's, ``priv2`` CPU1's).
- ``two-socket+gpu``: the same plus a GPU-like accessor on a 5th node (256 MiB of its own
  memory; 30/40 to socket 1's DRAM/CXL over its link) hot on a 128 MiB ``gpubuf`` the main
  thread touched first.
- ``three-accessor``: cpu0 on node 0, cpu2 on node 2 and a GPU-like accessor on its own node
  4 (256 MiB) attached to socket 2 (it reaches DRAM2/CXL2 at 30/40, DRAM1/CXL1 at 60/70;
  the CPUs reach its memory at 90 (socket 1) and 80 (socket 2)).  Hot sets (200
  accesses/s/page): ``cpu0`` 96 MiB, ``gpu`` 160 MiB, cpu2's 48 MiB ``cpu2a`` until half
  time, then ``cpu2b`` (its hot set moves); a 32 MiB ``shared`` range that cpu0 and the GPU
  both read at 30 accesses/s/page, first-touched in GPU memory (the device produced it);
  the rest (512 MiB ``cold``, 0.1) and the private ranges first-touched on node 0.  The
  shared range's weighted cost is 70 on node 0 (10 + 60), 100 on node 4: it should move
  once, to node 0, and stay.

Policies, each on a fresh machine with the same seed: ``first-touch`` (no migration),
``interleave`` (every range spread evenly over DRAM+CXL nodes 0-3), ``single-path TPP`` (the
kernel's approach: hotness from all accessors together, one tiering for all: CXL 1->DRAM 0,
CXL 3->DRAM 2 promotions, the reverse demotions; same knobs as holistic), ``holistic``
(:class:`~damoncore.policies.holistic.HolisticPolicy`) and ``oracle`` (per phase, the
min-cost placement for the same capacities, by linear programming, free migrations).

Metrics: mean access cost (cost units of the matrix per access, all accessors), share of
accesses served by the accessor's own node, bytes migrated against the minimum needed to go
from the initial placement through the one at the phase change to the final one
(:class:`~damoncore.sim.moves.MoveLedger`), and the most times one page moved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...core import Context, Kdamond, Target
from ...errors import FeatureMissing
from ...ops.sim import SimOps
from ...schemes.scheme import AccessPattern
from ...sim import Accessor, Mapping, Process, SimMachine, SimNode, Stream, Workload
from ...sim.extents import overlap_pairs
from ...sim.machine import SIM_PAGE_SIZE
from ...sim.moves import MoveLedger
from ...sim.presets import SEED_LATENCY
from ...sim.workloads import DEFAULT_BASE
from ..hierarchy import AccessorSpec, build_hierarchies
from ..holistic import HolisticConfig, HolisticPolicy, demote_scheme, promote_scheme

MiB = 1 << 20
PID = 1000
#: the simulated perf sample period: one access report per this many accesses, the same
#: for every accessor (as one perf sample_period is), so report densities compare across
#: accessors
REPORT_PERIOD = 32
REPORTS = 4096          # cap of access reports per accessor per sample interval
HOT, WARM, COLD = 200.0, 50.0, 0.1
SCENARIOS = ("two-socket", "two-socket+gpu", "three-accessor")
POLICIES = ("first-touch", "interleave", "single-path TPP", "holistic", "oracle")

# rows: initiator node; the GPU (node 4) reaches socket 1 over its link
LAT5 = [list(r) + [x] for r, x in zip(SEED_LATENCY, (80, 80, 90, 90))] + [[30, 40, 60, 70, 10]]
# the GPU attached to socket 2
LAT5_S2 = [list(r) + [x] for r, x in zip(SEED_LATENCY, (90, 90, 80, 80))] + [[60, 70, 30, 40, 10]]
CPU1 = Accessor("cpu1", 0, cpu=0, tid=101)
CPU2 = Accessor("cpu2", 2, cpu=2, tid=201)
GPU = Accessor("gpu0", 4, cpu=-1, tid=901, device="gpu")
CPU0 = Accessor("cpu0", 0, cpu=0, tid=101)
SPECS = {"cpu0": AccessorSpec("cpu0", 0, cpus={0}), "cpu1": AccessorSpec("cpu1", 0, cpus={0}),
         "cpu2": AccessorSpec("cpu2", 2, cpus={2}), "gpu0": AccessorSpec("gpu0", 4, tids={901})}


@dataclass
class Setup:
    """A machine with its workload added: ``phases`` (virtual us of each phase change),
    ``duration_us``, ``ranges`` {name: (pid, start, end)} for the per-range figures."""

    machine: SimMachine
    phases: list
    duration_us: int
    ranges: dict = field(default_factory=dict)


def machine(gpu: bool, scale: float = 1.0, seed: int = 0, latency=None) -> SimMachine:
    """Seed topology (DRAM 512 MiB, CXL 1 GiB at scale 1), plus a 256 MiB GPU node 4."""
    d, c = int(512 * MiB * scale), int(1024 * MiB * scale)
    nodes = [SimNode(0, d, True, "dram"), SimNode(1, c, False, "cxl"),
             SimNode(2, d, True, "dram"), SimNode(3, c, False, "cxl")]
    if gpu:
        nodes.append(SimNode(4, int(256 * MiB * scale), False, "gpu"))
        return SimMachine(nodes, latency or LAT5, seed=seed)
    return SimMachine(nodes, SEED_LATENCY, seed=seed)


def layout(sizes, scale: float = 1.0) -> dict:
    """name -> [start, end) virtual bytes, laid out in order from DEFAULT_BASE."""
    out, at = {}, DEFAULT_BASE
    for name, mib in sizes:
        sz = int(mib * MiB * scale) // SIM_PAGE_SIZE * SIM_PAGE_SIZE
        out[name] = (at, at + sz)
        at += sz
    return out


def ranges(gpu: bool, scale: float = 1.0) -> dict:
    """name -> [start, end) of the two-socket workloads' process."""
    sizes = [("priv1", 128), ("priv2", 128), ("shared", 64), ("cold", 768)]
    if gpu:
        sizes.insert(3, ("gpubuf", 128))
    return layout(sizes, scale)


def _maps(r, interleave, node=None):
    maps = []
    for name, (s, e) in r.items():
        q = (e - s) // 4 // SIM_PAGE_SIZE * SIM_PAGE_SIZE
        place = tuple((n, q) for n in range(4)) if interleave else ()
        maps.append(Mapping(s, e, node=(node or {}).get(name, 0), placement=place))
    return maps


def workload(gpu: bool, phase_us: int, scale: float = 1.0, interleave: bool = False):
    """The two-socket workload; ``interleave`` spreads every range evenly over nodes 0-3."""
    r = ranges(gpu, scale)
    proc = Process(PID, tuple(_maps(r, interleave)), node=0)

    def phase(a, b):
        st = [Stream(a, PID, *r["priv1"], HOT), Stream(b, PID, *r["priv2"], HOT),
              Stream(CPU1, PID, *r["shared"], WARM), Stream(CPU2, PID, *r["shared"], WARM),
              Stream(CPU1, PID, *r["cold"], COLD)]
        if gpu:
            st.append(Stream(GPU, PID, *r["gpubuf"], HOT))
        return st
    return Workload([proc], [(0, phase(CPU1, CPU2)), (phase_us, phase(CPU2, CPU1))])


def three_ranges(scale: float = 1.0) -> dict:
    return layout([("cpu0", 96), ("shared", 32), ("gpu", 160), ("cpu2a", 48), ("cpu2b", 48),
                   ("cold", 512)], scale)


def three_accessor_workload(phase_us: int, scale: float = 1.0, interleave: bool = False):
    """The three-accessor workload (module docstring); cpu2's hot set moves at ``phase_us``."""
    r = three_ranges(scale)
    gpu = Accessor("gpu0", 4, cpu=-1, tid=901, device="gpu")
    proc = Process(PID, tuple(_maps(r, interleave, {"shared": 4})), node=0)
    common = [Stream(CPU0, PID, *r["cpu0"], HOT), Stream(gpu, PID, *r["gpu"], HOT),
              Stream(CPU0, PID, *r["shared"], 30.0), Stream(gpu, PID, *r["shared"], 30.0),
              Stream(CPU0, PID, *r["cold"], COLD)]
    return Workload([proc], [(0, common + [Stream(CPU2, PID, *r["cpu2a"], HOT)]),
                             (phase_us, common + [Stream(CPU2, PID, *r["cpu2b"], HOT)])])


def setup(name: str, phase_us: int, scale: float = 1.0, seed: int = 0,
          interleave: bool = False) -> Setup:
    """Machine + workload of scenario ``name`` (one phase change at ``phase_us``, run for
    twice that)."""
    if name == "three-accessor":
        m = machine(True, scale, seed, latency=LAT5_S2)
        m.add_workload(three_accessor_workload(phase_us, scale, interleave))
        r = three_ranges(scale)
    elif name in ("two-socket", "two-socket+gpu"):
        gpu = name.endswith("gpu")
        m = machine(gpu, scale, seed)
        m.add_workload(workload(gpu, phase_us, scale, interleave))
        r = ranges(gpu, scale)
    else:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return Setup(m, [phase_us], 2 * phase_us, {k: (PID, s, e) for k, (s, e) in r.items()})


def node_ranges(m):
    return {x.nid: [m.node_range(x.nid)] for x in m.nodes}


def sim_ops(m, report_period=None) -> SimOps:
    """The evaluation's access reports: one per ``report_period`` (default REPORT_PERIOD)
    accesses, capped per sample."""
    return SimOps(m, space="paddr", max_reports_per_accessor=REPORTS,
                  report_period=report_period or REPORT_PERIOD)


def holistic(m, cfg, seed=0, report_period=None) -> HolisticPolicy:
    accs = [SPECS[a.name] for a in m.accessors]
    hs = build_hierarchies(m.latency, accs)
    return HolisticPolicy(sim_ops(m, report_period), hs, node_ranges(m), cfg, seed=seed)


def single_path_tpp(m, cfg, seed=0) -> Kdamond:
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
            ctxs.append(Context(sim_ops(m), [Target(ranges=[m.node_range(nid)])],
                                attrs=cfg.attrs, primitives=("page_fault",), schemes=[s],
                                seed=seed + nid, name=f"tpp node{nid}"))
    return Kdamond(ctxs)


def oracle(m, phases, duration_us, pids=(PID,)):
    """(mean cost, local share) of the per-phase min-cost placement (LP over the pieces of
    uniform rates; capacities of every node; migrations free).  Needs scipy."""
    try:
        from scipy.optimize import linprog
    except ImportError as err:            # pragma: no cover - scipy is a test dependency
        raise FeatureMissing("scipy (the oracle's linear program)") from err
    accs = m.accessors
    lat = m.latency[[a.node for a in accs]]                      # (accessors, nodes)
    caps = np.array([x.capacity_bytes for x in m.nodes], float)
    ks, ke = [], []
    for pid in pids:
        key0 = np.uint64(m.pidx(pid)) << np.uint64(48)
        ks += [np.uint64(s) | key0 for s, _ in m.mappings(pid)]
        ke += [np.uint64(e) | key0 for _, e in m.mappings(pid)]
    ms, me = np.array(ks, np.uint64), np.array(ke, np.uint64)
    tot_cost = tot_acc = tot_local = 0.0
    bounds = list(phases) + [duration_us]
    for t0, t1 in zip(bounds, bounds[1:]):
        rm = m.ratemap(t0)
        _, j, lo, hi = overlap_pairs(ms, me, rm.starts, rm.ends)
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


def run_sliced(kd, su: Setup, ledger: MoveLedger) -> None:
    """Run ``kd`` to the end of the setup, taking a ledger checkpoint at each phase change."""
    t = 0
    for p in su.phases + [su.duration_us]:
        kd.run(p - t, cleanup=False)
        if p < su.duration_us:
            ledger.checkpoint()
        t = p
    for c in kd.contexts:
        c.ops.cleanup(c)


def evaluate(name="two-socket", phase_us=20_000_000, scale=1.0, seed=0, cfg=None,
             policies=None, keep=None) -> dict:
    """{policy: {cost, local, migrated_mib, wall_s, moves: {range: RangeMoves}}} on one
    scenario.  ``keep``: a dict that receives each policy's object (e.g. the
    HolisticPolicy) under its name, for diagnostics."""
    if isinstance(name, bool):          # the old signature: evaluate(gpu, ...)
        name = "two-socket+gpu" if name else "two-socket"
    cfg = cfg or default_config()
    out = {}
    for pol in policies or POLICIES:
        su = setup(name, phase_us, scale, seed, interleave=(pol == "interleave"))
        m = su.machine
        t = time.monotonic()
        if pol == "oracle":
            cost, local = oracle(m, [0] + su.phases, su.duration_us)
            out[pol] = {"cost": cost, "local": local, "migrated_mib": float("nan")}
            continue
        ledger = MoveLedger(m)
        if pol == "single-path TPP":
            run_sliced(single_path_tpp(m, cfg, seed), su, ledger)
        elif pol == "holistic":
            p = holistic(m, cfg, seed)
            if keep is not None:
                keep[pol] = p
            run_sliced(p.kdamond(), su, ledger)
        else:
            m.clock.sleep_us(su.duration_us)
        out[pol] = metrics(m)
        out[pol]["moves"] = ledger.report(su.ranges)
        out[pol]["wall_s"] = time.monotonic() - t
    return out


def table(results: dict, title: str) -> str:
    lines = [f"{title}", "",
             "| policy | mean access cost | local-node share | migrated (MiB) | minimum (MiB) "
             "| moved / minimum | most moves of a page | vs oracle |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    o = results.get("oracle", {}).get("cost")
    for name, r in results.items():
        mv = r.get("moves", {}).get("all")
        if mv is None:
            mig = mn = ratio = most = "-"
        else:
            mig, mn = f"{mv.moved / MiB:.0f}", f"{mv.minimum / MiB:.0f}"
            ratio = "-" if not mv.moved and not mv.minimum else f"{mv.ratio:.2f}"
            most = str(mv.max_moves)
        rel = f"{r['cost'] / o:.2f}x" if o else "-"
        lines.append(f"| {name} | {r['cost']:.2f} | {r['local']:.1%} | {mig} | {mn} | "
                     f"{ratio} | {most} | {rel} |")
    return "\n".join(lines)


def range_table(results: dict, policy: str = "holistic") -> str:
    """Per-range moves of one policy: MiB moved, minimum, most moves of a page."""
    mv = results[policy]["moves"]
    lines = [f"{policy}, per range:", "",
             "| range | moved (MiB) | minimum (MiB) | most moves of a page |",
             "|---|---:|---:|---:|"]
    for k, v in mv.items():
        if k == "all":
            continue
        lines.append(f"| {k} | {v.moved / MiB:.1f} | {v.minimum / MiB:.1f} | {v.max_moves} |")
    return "\n".join(lines)


def check(results, oracle_margin: float = 1.10, move_margin: float = 1.3,
          max_moves: int = 2, tpp_margin: float | None = 0.85) -> list:
    """The claims, as a list of failures: holistic within ``oracle_margin`` of the oracle's
    cost, at most ``move_margin`` x the minimum bytes moved, no page moved more than
    ``max_moves`` times, and (``tpp_margin``) that much below single-path TPP's cost."""
    h, o = results["holistic"]["cost"], results["oracle"]["cost"]
    bad = []
    if h > oracle_margin * o:
        bad.append(f"holistic {h:.2f} is more than {oracle_margin - 1:.0%} above the oracle "
                   f"{o:.2f}")
    mv = results["holistic"]["moves"]["all"]
    if mv.moved > move_margin * mv.minimum:
        bad.append(f"holistic moved {mv.moved / MiB:.0f} MiB, more than {move_margin:g}x the "
                   f"minimum {mv.minimum / MiB:.0f} MiB")
    if mv.max_moves > max_moves:
        bad.append(f"holistic moved a page {mv.max_moves} times (at most {max_moves})")
    t = results.get("single-path TPP", {}).get("cost")
    if tpp_margin is not None and t is not None and h > tpp_margin * t:
        bad.append(f"holistic {h:.2f} is not {1 - tpp_margin:.0%} below single-path TPP {t:.2f}")
    return bad
