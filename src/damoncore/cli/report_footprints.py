"""``report footprints``: distribution of memory footprints (damo's mem_footprint file)."""

from __future__ import annotations

from ..linux.system import PAGE_SIZE as PAGE
from .report_dist import add_dist_args, fmt_dist, percentiles
from .report_input import load_footprints

METRICS = ("vsz", "rss", "sys_used")


def footprint_values(snapshots, metric, sort=True):
    """Bytes per snapshot: Σ statm size (vsz) or resident (rss) pages, or MemTotal-MemFree."""
    out = []
    for s in snapshots:
        total = 0
        for fp in s["footprints"]:
            f, pid = fp["footprint"], fp["pid"]
            if metric == "sys_used":
                if pid is None:
                    total = ((f.get("total") or 0) - (f.get("free") or 0)) * 1024
            elif pid is not None:
                total += (f.get("size" if metric == "vsz" else "resident") or 0) * PAGE
        out.append(total)
    return sorted(out) if sort else out


def render(snapshots, metrics=METRICS, sort=True, pcts=range(0, 101, 25), raw=False,
           nr_cols_bar=59) -> str:
    return "\n".join(fmt_dist(m, footprint_values(snapshots, m, sort), list(pcts), raw,
                              nr_cols_bar) for m in metrics)


def set_argparser(p):
    p.add_argument("metric", choices=list(METRICS) + ["all"], default="all", nargs="?",
                   help="memory footprint metric to show")
    add_dist_args(p, "damon.data.mem_footprint")
    p.description = "Show distribution of memory footprints"


def main(args):
    metrics = METRICS if args.metric == "all" else (args.metric,)
    pcts = percentiles(args.range)
    print(render(load_footprints(args.input), metrics, args.sortby == "size",
                 pcts, args.raw_number, args.nr_cols_bar))
