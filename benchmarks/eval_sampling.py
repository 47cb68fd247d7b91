"""Region-sampling algorithms side by side on simulated memory with known ground truth.

The workload (``sim.Workload.moving_hot``): a 4 GiB process whose 256 MiB hot range
(500 accesses/s per page; 0.1 for the rest) jumps to another offset every ``--phase-s``
seconds.  Each algorithm (a :class:`damoncore.Adaptation`) monitors it through the same
``SimOps`` with 5 ms samples and 100 ms aggregations; per aggregation a region is "hot"
when its ``nr_accesses`` is at least half of the snapshot's maximum.  Reported per
algorithm, over all seeds:

- coverage: share of the hot range inside hot regions, from the 5th aggregation of each
  phase (median and minimum), and the first aggregation of a phase with coverage >= 0.9
  (median and maximum, in aggregations);
- false-hot: share of the cold bytes inside hot regions (median and maximum, same window);
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
from damoncore.sim.presets import GiB, MiB, tiering_machine
from damoncore.sim.workloads import DEFAULT_BASE as BASE

SIZE, HOT = 4 * GiB, 256 * MiB
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


def run_one(adaptation, attrs, seed: int, phase_us: int, nr_phases: int):
    """Rows (phase, aggregations since its start, coverage, false-hot, nr_regions)."""
    moves = [(i * phase_us, OFFSETS[i % len(OFFSETS)]) for i in range(nr_phases)]
    m = tiering_machine(8 * GiB, 8 * GiB, seed=seed)
    m.add_workload(Workload.moving_hot(SIZE, HOT, moves, hot_rate=500.0, cold_rate=0.1))
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)], attrs, seed=seed,
                  adaptation=adaptation)
    rows = []

    def cb(ctx, snap):
        t = snap.targets[0]
        ph = min(int(snap.end_us // phase_us), nr_phases - 1)
        lo = BASE + moves[ph][1]
        hot = t.nr_accesses >= max(1, snap.max_nr_accesses // 2)
        ov = np.clip(np.minimum(t.end, np.uint64(lo + HOT)).astype(np.int64)
                     - np.maximum(t.start, np.uint64(lo)).astype(np.int64), 0, None)
        cov = ov[hot].sum() / HOT
        false_hot = ((t.end - t.start).astype(np.int64)[hot].sum() - ov[hot].sum()) / (SIZE - HOT)
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
    print(f"{a.seeds} seeds x {a.phases} phases of {a.phase_s:g} s; coverage/false-hot from "
          f"the 5th aggregation of each phase; found = first aggregation with coverage >= 0.9")
    print()
    print("| algorithm | coverage median / min | found (aggr) median / max "
          "| false-hot median / max | regions (checks/sample) |")
    print("|---|---:|---:|---:|---:|")
    for name, (factory, attrs) in ALGORITHMS.items():
        rows = np.concatenate([run_one(factory(), attrs, seed, phase_us, a.phases)
                               for seed in range(1, a.seeds + 1)])
        s = summarize(rows)
        print(f"| {name} | {s['cov_med']:.3f} / {s['cov_min']:.3f} "
              f"| {s['found_med']:.0f} / {s['found_max']:.0f} "
              f"| {s['fh_med']:.2%} / {s['fh_max']:.2%} | {s['regions']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
