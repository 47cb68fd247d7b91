"""Region-sampling algorithms side by side on simulated memory with known ground truth: the
grid behind docs/sampling.md's tables (a thin wrapper of ``damoncore eval-sampling``, see
:mod:`damoncore.evaluation`).

The kernel's algorithm at DAMON's defaults (10-1000 regions) and with min 50 regions,
edge-split at the defaults, and a fixed grid of 1000 regions; every workload; 5 seeds; on a
local process pool.  Extra arguments go to ``damoncore eval-sampling`` (e.g. ``--serial``,
``--scheduler tcp://host:8786``, ``--out table.csv``, ``--seeds 2``).

    PYTHONPATH=src python benchmarks/eval_sampling.py [eval-sampling options]
"""

from __future__ import annotations

import sys

from damoncore.cli.main import main as cli_main

DOC_GRID = ["--adaptations", "kernel", "--extra", "kernel", "50-1000",
            "--extra", "edge-split", "10-1000", "--extra", "fixed", "1000-1000"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["eval-sampling", *DOC_GRID, *argv])


if __name__ == "__main__":
    raise SystemExit(main())
