"""The sweep: algorithms x parameters x workloads x seeds, run serially, on a local process
pool or on a Dask cluster, gathered into one tidy table (one row per aggregation).

Every cell is a plain, picklable :class:`~damoncore.evaluation.run.Cell`; a worker
resolves the adaptation and the workload by name, so a cluster's workers need damoncore
(and any custom ``module:Class`` adaptation) importable, nothing else.  A cell's rows depend
only on the cell (the simulator and the monitor are seeded), so the same grid gives the same
table on any executor; only :data:`~damoncore.evaluation.run.TIMING_COLUMNS` are
measurements.
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass, field

from ..errors import DamonError, InvalidConfig
from .run import COLUMNS, Cell, run_cell
from .workloads import WORKLOADS

#: the default algorithms of ``damoncore eval-sampling``: (adaptation, min, max) each
DEFAULT_ALGORITHMS = ("kernel", "edge-split")
DEFAULT_NR_REGIONS = ((10, 1000),)


@dataclass
class Grid:
    """``adaptations`` x ``nr_regions`` (min, max) pairs x ``workloads`` x ``seeds``;
    ``extra``: further algorithms as (adaptation, min, max), e.g. ``("fixed", 1000,
    1000)``; ``duration_us``: of every run (0: each workload's own).  Cells are ordered by
    workload, then algorithm, then seed, and so are the rows of the table."""

    adaptations: tuple = DEFAULT_ALGORITHMS
    workloads: tuple = tuple(WORKLOADS)
    seeds: tuple = (1, 2, 3, 4, 5)
    nr_regions: tuple = DEFAULT_NR_REGIONS
    sample_us: int = 5000
    aggr_us: int = 100_000
    duration_us: int = 0
    extra: tuple = field(default_factory=tuple)

    def algorithms(self) -> list:
        """(adaptation, min, max) of every algorithm: the product, then ``extra``."""
        out = [(a, lo, hi) for a, (lo, hi) in itertools.product(self.adaptations,
                                                                self.nr_regions)]
        return out + [tuple(x) for x in self.extra if tuple(x) not in out]

    def cells(self) -> list:
        for w in self.workloads:
            if w not in WORKLOADS:
                raise InvalidConfig(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
        return [Cell(a, w, s, lo, hi, self.sample_us, self.aggr_us,
                     duration_us=self.duration_us)
                for w, (a, lo, hi), s in itertools.product(self.workloads, self.algorithms(),
                                                           self.seeds)]


def _serial(cells):
    return [run_cell(c) for c in cells]


def _worker_init():
    # Ctrl-C and a hangup reach the whole process group: the parent ends the pool (queued
    # cells cancelled, running ones finish); a worker killed mid-cell would break the pool,
    # and Python 3.11's executor then trips over the cancelled futures with a traceback
    import signal
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


def _pool(cells, workers):
    from concurrent.futures import ProcessPoolExecutor
    ex = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    try:
        return list(ex.map(run_cell, cells, chunksize=1))
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _dask(cells, address, connect_timeout_s):
    try:
        from distributed import Client
    except ImportError as e:
        raise InvalidConfig("a Dask scheduler needs the 'distributed' package (pip install "
                            "'damoncore[dask]')") from e
    try:
        client = Client(address, timeout=f"{connect_timeout_s}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise DamonError(f"cannot reach the Dask scheduler at {address!r}: {e}") from e
    try:
        futures = client.map(run_cell, cells, pure=False)
        return client.gather(futures)
    finally:
        client.close()


def run_grid(grid, executor: str = "pool", workers: int | None = None,
             scheduler: str | None = None, connect_timeout_s: float = 20) -> list:
    """Run every cell of ``grid`` (a :class:`Grid` or a list of cells); the table's rows.

    ``executor``: ``"pool"`` (a local process pool of ``workers``, default one per CPU),
    ``"serial"`` (this process), or ``"dask"`` (the existing cluster whose scheduler is at
    ``scheduler``, e.g. ``tcp://10.0.0.5:8786``; giving ``scheduler`` implies it; it must
    answer within ``connect_timeout_s``).
    """
    cells = grid.cells() if isinstance(grid, Grid) else [
        c if isinstance(c, Cell) else Cell(**c) for c in grid]
    if scheduler is not None:
        executor = "dask"
    if executor == "serial":
        parts = _serial(cells)
    elif executor == "pool":
        if workers is not None and workers < 1:
            raise InvalidConfig(f"workers must be >= 1, got {workers}")
        parts = _pool(cells, workers or os.cpu_count() or 1)
    elif executor == "dask":
        if not scheduler:
            raise InvalidConfig("the dask executor needs a scheduler address")
        parts = _dask(cells, scheduler, connect_timeout_s)
    else:
        raise InvalidConfig(f"unknown executor {executor!r} (serial, pool, dask)")
    return [row for part in parts for row in part]


def write_table(rows, path: str) -> None:
    """The tidy table to ``path``: CSV, or Parquet for a ``.parquet`` path (needs pandas and
    pyarrow); written to a temporary file and renamed, so a killed run leaves no half
    table."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if path.endswith(".parquet"):
            try:
                import pandas as pd
            except ImportError as e:
                raise InvalidConfig(f"{path}: Parquet output needs pandas and pyarrow") from e
            pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(tmp, index=False)
        else:
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(COLUMNS)
                w.writerows(rows)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str) -> list:
    """Rows of a CSV table written by :func:`write_table`, typed as :func:`run_cell`'s."""
    types = {"min_nr_regions": int, "max_nr_regions": int, "sample_us": int, "aggr_us": int,
             "seed": int, "phase": int, "aggr_in_phase": int, "hot_bytes": int,
             "nr_regions": int, "t_s": float, "coverage": float, "false_hot": float,
             "checks_per_sample": float, "cpu_us_per_sample": float}
    with open(path, newline="") as f:
        r = csv.reader(f)
        head = next(r)
        if tuple(head) != COLUMNS:
            raise InvalidConfig(f"{path}: not an eval-sampling table (header {head[:3]}...)")
        return [tuple(types.get(c, str)(v) for c, v in zip(COLUMNS, row)) for row in r]
