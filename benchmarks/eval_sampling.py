"""Region-sampling algorithms side by side on simulated memory with known ground truth.

Two workloads on a 4 GiB process: ``moving``, a 256 MiB hot range (500 accesses/s per page;
0.1 for the rest) jumping to another offset every ``--phase-s`` seconds; ``zipf``, Zipf(1)
popularity by page order with a mean of 50 accesses/s per page (a decaying hot head, no
phase change).  Each algorithm (a :class:`damoncore.Adaptation`) monitors them through the
same ``SimOps`` with 5 ms samples and 100 ms aggregations.  Ground truth per aggregation
comes from the simulated machine's rate map: a page is truly hot at >= 139 accesses/s
(touched in half of the 5 ms samples or more); a region is reported hot when its
``nr_accesses`` is at least half of the snapshot's maximum.  Reported per algorithm and workload, over all seeds:

- coverage: share of the truly hot bytes inside reported-hot regions, from the 5th
  aggregation of each phase (median and minimum); for ``moving`` also the first aggregation
  of a phase with coverage >= 0.9 (median and maximum);
- false-hot: share of the other bytes inside reported-hot regions (median and maximum);
- regions: mean number of regions, i.e. access checks per sample (the monitor's cost).

Add your own algorithm to ALGORITHMS (a name -> (Adaptation factory, Attrs) entry).

    PYTHONPATH=src python benchmarks/eval_sampling.py [--seeds 5] [--phase-s 10]
"""

from __future__ import annotations

import argparse

import numpy as np

from damoncore import Attrs, Context, FixedRegions, KernelAdaptation, Target
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.extents import KEY_SHIFT, U64
from damoncore.sim.presets import GiB, MiB, tiering_machine

SIZE, HOT = 4 * GiB, 256 * MiB
VADDR_MASK = (1 << KEY_SHIFT) - 1
OFFSETS = (512 * MiB, 3 * GiB + 128 * MiB, 1 * GiB + 640 * MiB, 2 * GiB + 256 * MiB)


def _attrs(lo, hi):
    return Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=lo, max_nr_regions=hi)


ALGORITHMS = {
    "kernel 10-1000 (DAMON default)": (KernelAdaptation, _attrs(10, 1000)),
    "kernel 50-1000": (KernelAdaptation, _attrs(50, 1000)),
    "kernel 10-100": (KernelAdaptation, _attrs(10, 100)),
    "fixed 100 regions": (FixedRegions, _attrs(100, 100)),
    "fixed 1000 regions": (FixedRegions, _attrs(1000, 1000)),
}


# accesses/s/page at which a page is touched in half of the 5 ms samples (Poisson): the
# same bar as "nr_accesses >= half of the maximum" for a saturated maximum
TRUE_HOT_RATE = float(np.log(2) / 0.005)


def truth(m, pid: int, t_us: int):
    """(breakpoints, cumulative truly-hot bytes at each) of ``pid``'s address space at
    ``t_us``, from the machine's rate map."""
    rm = m.ratemap(t_us)
    pk = U64(m.pidx(pid))
    b = rm.b
    mine = (b[:-1] >> U64(KEY_SHIFT)) == pk
    s = (b[:-1][mine] & U64(VADDR_MASK)).astype(np.int64)
    e = np.where((b[1:][mine] >> U64(KEY_SHIFT)) == pk,
                 (b[1:][mine] & U64(VADDR_MASK)).astype(np.int64), np.int64(VADDR_MASK))
    hot = rm.total[mine] >= TRUE_HOT_RATE
    cum = np.concatenate([[0], np.cumsum(np.where(hot, e - s, 0))])
    return np.concatenate([s, e[-1:]]), cum


def hot_bytes_below(bps, cum, x):
    """Truly-hot bytes of the address space below each address of ``x``."""
    x = np.asarray(x, np.int64)
    k = np.clip(np.searchsorted(bps, x, side="right") - 1, 0, len(bps) - 2)
    seg_hot = (cum[k + 1] - cum[k]) > 0
    return cum[k] + np.where(seg_hot, np.clip(x - bps[k], 0, bps[k + 1] - bps[k]), 0)


def run_one(workload: str, adaptation, attrs, seed: int, phase_us: int, nr_phases: int):
    """Rows (phase, aggregations since its start, coverage, false-hot, nr_regions)."""
    m = tiering_machine(8 * GiB, 8 * GiB, seed=seed)
    if workload == "moving":
        moves = [(i * phase_us, OFFSETS[i % len(OFFSETS)]) for i in range(nr_phases)]
        m.add_workload(Workload.moving_hot(SIZE, HOT, moves, hot_rate=500.0, cold_rate=0.1))
    else:
        moves = [(0, 0)]
        m.add_workload(Workload.zipf(SIZE, rate=50.0, s=1.0))
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)], attrs, seed=seed,
                  adaptation=adaptation)
    rows = []

    def cb(ctx, snap):
        t = snap.targets[0]
        ph = max(i for i, (t0, _) in enumerate(moves) if t0 < snap.end_us)
        bps, cum = truth(m, 1000, snap.end_us - 1)
        total_hot = cum[-1]
        hot = t.nr_accesses >= max(1, snap.max_nr_accesses // 2)
        in_hot = hot_bytes_below(bps, cum, t.end) - hot_bytes_below(bps, cum, t.start)
        size = (t.end - t.start).astype(np.int64)
        cov = in_hot[hot].sum() / max(1, total_hot)
        false_hot = (size[hot] - in_hot[hot]).sum() / max(1, size.sum() - total_hot)
        rows.append((ph, (snap.end_us - moves[ph][0]) // attrs.aggr_us, cov, false_hot,
                     len(t.start)))

    ctx.add_callback(cb)
    ctx.run(nr_phases * phase_us)
    return np.array(rows, dtype=float)


def summarize(rows) -> dict:
    steady = rows[rows[:, 1] >= 5]
    found = []
    for ph in np.unique(rows[:, 0]):
        r = rows[rows[:, 0] == ph]
        ok = np.flatnonzero(r[:, 2] >= 0.9)
        found.append(r[ok[0], 1] if len(ok) else np.inf)
    return {"cov_med": np.median(steady[:, 2]), "cov_min": steady[:, 2].min(),
            "found_med": np.median(found), "found_max": max(found),
            "fh_med": np.median(steady[:, 3]), "fh_max": steady[:, 3].max(),
            "regions": rows[:, 4].mean()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--phase-s", type=float, default=10.0)
    ap.add_argument("--phases", type=int, default=4)
    a = ap.parse_args(argv)
    phase_us = int(a.phase_s * 1e6)
    print(f"{a.seeds} seeds; {a.phases} phases of {a.phase_s:g} s; coverage/false-hot from "
          f"the 5th aggregation of each phase; found = first aggregation with coverage >= 0.9")
    for workload in ("moving", "zipf"):
        print()
        print(f"**{workload}**")
        print()
        print("| algorithm | coverage median / min | found (aggr) median / max "
              "| false-hot median / max | regions (checks/sample) |")
        print("|---|---:|---:|---:|---:|")
        for name, (factory, attrs) in ALGORITHMS.items():
            rows = np.concatenate([run_one(workload, factory(), attrs, seed, phase_us,
                                           a.phases) for seed in range(1, a.seeds + 1)])
            s = summarize(rows)
            found = (f"{s['found_med']:.0f} / {s['found_max']:.0f}" if workload == "moving"
                     else "-")
            print(f"| {name} | {s['cov_med']:.3f} / {s['cov_min']:.3f} | {found} "
                  f"| {s['fh_med']:.2%} / {s['fh_max']:.2%} | {s['regions']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
