"""``eval-sampling``: score region adaptations against simulated ground truth (a grid of
adaptations x nr_regions ranges x workloads x seeds) on a local process pool, serially, or
on a running Dask cluster; write the tidy table and print (or write) the markdown summary.
See :mod:`damoncore.evaluation` and docs/sampling.md."""

from __future__ import annotations

import os
import sys
import time

from .. import kdamonds as kd
from ..core.adaptations import ADAPTATIONS
from ..evaluation import WORKLOADS, Grid, markdown, run_grid, summarize, write_table
from .checks import PackageMissing, output_file
from .damo_options import ArgsError


def _list(text, what, known=None):
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ArgsError(f"--{what} {text!r}: empty list")
    if known is not None:
        for x in items:
            if x not in known and not (what == "adaptations" and ":" in x):
                raise ArgsError(f"--{what} {x!r}: unknown (known: {', '.join(known)})")
    return tuple(items)


def _range(text):
    parts = str(text).split("-")
    if len(parts) != 2:
        raise ArgsError(f"--nr_regions {text!r}: expected <min>-<max>, e.g. 10-1000")
    lo, hi = (kd.parse_nr(p, f"--nr_regions {text!r}") for p in parts)
    if not 3 <= lo <= hi:
        raise ArgsError(f"--nr_regions {text!r}: need 3 <= min <= max")
    return lo, hi


def set_argparser(p):
    p.add_argument("--adaptations", default="kernel,edge-split", metavar="<a,b,...>",
                   help=f"adaptations to compare ({', '.join(ADAPTATIONS)}, or an importable "
                        f"module:Class); default kernel,edge-split")
    p.add_argument("--workloads", default="all", metavar="<w,...|all>",
                   help=f"workloads ({', '.join(WORKLOADS)}); default all")
    p.add_argument("--seeds", default="5", metavar="<n|a,b,...>",
                   help="how many seeds (1..n), or a list of seeds; default 5")
    p.add_argument("--nr_regions", action="append", metavar="<min>-<max>",
                   help="min/max number of regions, once per setting (default 10-1000)")
    p.add_argument("--extra", nargs=2, action="append", metavar=("<adaptation>", "<min>-<max>"),
                   help="one more algorithm outside the product, e.g. --extra fixed 1000-1000")
    p.add_argument("--sample", default="5ms", metavar="<time>", help="sampling interval")
    p.add_argument("--aggr", default="100ms", metavar="<time>", help="aggregation interval")
    p.add_argument("--scheduler", metavar="<address>",
                   help="run on this Dask scheduler (e.g. tcp://10.0.0.5:8786; needs the "
                        "'distributed' package) instead of the local process pool")
    p.add_argument("--workers", type=int, metavar="<n>",
                   help="local pool processes (default: one per CPU)")
    p.add_argument("--serial", action="store_true", help="run in this process, no pool")
    p.add_argument("--out", metavar="<file>",
                   help="write the tidy table here (.csv, or .parquet with pandas+pyarrow)")
    p.add_argument("--markdown", metavar="<file>",
                   help="write the markdown summary here instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no timing line on stderr")
    p.description = "Score region adaptations against simulated ground truth"


def grid_from_args(a) -> tuple:
    """(Grid, executor, workers, scheduler) for the parsed options; ArgsError when bad."""
    adaptations = _list(a.adaptations, "adaptations", list(ADAPTATIONS))
    workloads = tuple(WORKLOADS) if a.workloads == "all" else _list(
        a.workloads, "workloads", list(WORKLOADS))
    s = str(a.seeds)
    if "," in s:
        seeds = tuple(kd.parse_nr(x, f"--seeds {s!r}") for x in _list(s, "seeds"))
    else:
        n = kd.parse_nr(s, f"--seeds {s!r}")
        if not 1 <= n <= 10_000:
            raise ArgsError(f"--seeds {s!r}: need 1 to 10000 seeds")
        seeds = tuple(range(1, n + 1))
    ranges = tuple(_range(x) for x in (a.nr_regions or ["10-1000"]))
    extra = tuple((_list(ad, "adaptations", list(ADAPTATIONS))[0], *_range(rng))
                  for ad, rng in (a.extra or []))
    sample = kd.parse_time_us(a.sample, f"--sample {a.sample!r}")
    aggr = kd.parse_time_us(a.aggr, f"--aggr {a.aggr!r}")
    if not 0 < sample <= aggr:
        raise ArgsError(f"--sample {a.sample!r} --aggr {a.aggr!r}: need 0 < sample <= aggr")
    kd.check_aggr_samples(sample, aggr, "--aggr / --sample")
    if a.workers is not None and a.workers < 1:
        raise ArgsError(f"--workers {a.workers}: need 1 or more")
    if a.serial and a.scheduler:
        raise ArgsError("--serial and --scheduler used together")
    # both outputs are checked before the grid runs: a bad second one lost the whole run
    for opt, path in (("--out", a.out), ("--markdown", a.markdown)):
        if path:
            output_file(path, opt)
    if a.out and a.out.endswith(".parquet"):
        try:
            import pandas  # noqa: F401
            import pyarrow  # noqa: F401
        except ImportError:
            raise PackageMissing("pandas and pyarrow", "--out <file>.parquet",
                                 "pip install pandas pyarrow") from None
    executor = "serial" if a.serial else ("dask" if a.scheduler else "pool")
    grid = Grid(adaptations=adaptations, workloads=workloads, seeds=seeds, nr_regions=ranges,
                sample_us=sample, aggr_us=aggr, extra=extra)
    grid.cells()            # checks the names before anything runs
    return grid, executor, a.workers, a.scheduler


def main(args):
    grid, executor, workers, scheduler = grid_from_args(args)
    t0 = time.monotonic()
    rows = run_grid(grid, executor, workers=workers, scheduler=scheduler)
    wall = time.monotonic() - t0
    if args.out:
        write_table(rows, args.out)
    text = markdown(summarize(rows), descriptions={k: w.description
                                                   for k, w in WORKLOADS.items()})
    if args.markdown:
        tmp = f"{args.markdown}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.markdown)
    else:
        print(text)
    if not args.quiet:
        where = scheduler if executor == "dask" else (
            "this process" if executor == "serial" else
            f"a pool of {workers or os.cpu_count()} processes")
        print(f"eval-sampling: {len(grid.cells())} runs, {len(rows)} rows in {wall:.1f} s "
              f"on {where}", file=sys.stderr)
