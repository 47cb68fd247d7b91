"""CPU per sample of the region adaptations in one process, interleaved, so a busy host
slows them alike: the kernel's algorithm, edge-split, edge-split without the report's
pieces (``report_edges=False``), and edge-split without the flanks from the snapshot and
the small-region merge, on the given workloads, seeds 1-3, three rounds; per seed
the least of the rounds (noise only adds), averaged over the seeds, and the ratios to the
kernel algorithm's (docs/sampling.md).

    PYTHONPATH=src python benchmarks/eval_sampling_cpu.py [workload,...]
"""

from __future__ import annotations

import sys

import numpy as np

from damoncore.evaluation.run import COLUMNS, Cell, run_cell

ALGORITHMS = (("kernel", "kernel", {}), ("edge-split", "edge-split", {}),
              ("edge-split, no report pieces", "edge-split", {"report_edges": False}),
              ("edge-split, no snapshot flanks or small merge", "edge-split",
               {"snapshot_flanks": False, "small_div": 0}))
CPU = COLUMNS.index("cpu_us_per_sample")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workloads = (argv[0] if argv else "zipf-1.0,zipf-0.8,small-moving").split(",")
    seeds = (1, 2, 3)
    for wl in workloads:
        got = {(name, seed): [] for name, _, _ in ALGORITHMS for seed in seeds}
        for _ in range(3):
            for name, adaptation, options in ALGORITHMS:
                for seed in seeds:
                    rows = run_cell(Cell(adaptation, wl, seed, options=options))
                    got[name, seed].append(float(np.mean([r[CPU] for r in rows])))
        cpu = {name: float(np.mean([min(got[name, seed]) for seed in seeds]))
               for name, _, _ in ALGORITHMS}
        base = cpu["kernel"]
        print(f"{wl}: " + "; ".join(f"{name} {v:.1f} us ({v / base:.2f}x)"
                                    for name, v in cpu.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
