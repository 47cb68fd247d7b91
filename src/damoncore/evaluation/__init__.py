"""Region-sampling algorithms scored against the simulator's ground truth.

A grid of adaptations x ``nr_regions`` ranges x workloads x seeds (:class:`Grid`) runs on a
local process pool, serially, or on an existing Dask cluster (:func:`run_grid`), into one
tidy table (one row per aggregation, :data:`COLUMNS`; :func:`write_table`,
:func:`read_table`) and a per algorithm and workload summary (:func:`summarize`,
:func:`markdown`).  The command line is ``damoncore eval-sampling``; docs/sampling.md has
the results and how to read them.

    from damoncore.evaluation import Grid, run_grid, summarize, markdown
    rows = run_grid(Grid(adaptations=("kernel", "edge-split"), seeds=(1, 2, 3)))
    print(markdown(summarize(rows)))

A custom adaptation joins as an importable ``"module:Class"`` name (every worker must be
able to import it).
"""

from .grid import DEFAULT_ALGORITHMS, Grid, read_table, run_grid, write_table
from .run import COLUMNS, TIMING_COLUMNS, Cell, make_adaptation, run_cell, score
from .summary import FOUND, FOUND_WITHIN, STEADY_FROM, markdown, summarize
from .workloads import WORKLOADS, EvalWorkload

__all__ = ["COLUMNS", "Cell", "DEFAULT_ALGORITHMS", "EvalWorkload", "FOUND", "FOUND_WITHIN",
           "Grid", "STEADY_FROM", "TIMING_COLUMNS", "WORKLOADS", "make_adaptation",
           "markdown", "read_table", "run_cell", "run_grid", "score", "summarize",
           "write_table"]
