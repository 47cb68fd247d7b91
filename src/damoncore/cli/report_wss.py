"""``report wss``: distribution of working set sizes over a record's snapshots."""

from __future__ import annotations

from .damo_options import int_arg
from .report_dist import add_dist_args, fmt_dist, percentiles
from .report_input import load_records


def wss_values(record, acc_thres=1, sz_thres=1, exclude_samples=0, sort=True):
    """Per snapshot: bytes of regions with nr_accesses >= acc_thres and size >= sz_thres."""
    out = []
    for s in record.snapshots[exclude_samples:]:
        t = s.targets[0]
        sz = (t.end - t.start).astype(int)
        out.append(int(sz[(t.nr_accesses >= acc_thres) & (sz >= sz_thres)].sum()))
    return sorted(out) if sort else out


def render(records, acc_thres=1, sz_thres=1, exclude_samples=20, sort=True,
           pcts=range(0, 101, 25), raw=False, nr_cols_bar=59, all_values=False) -> str:
    out = []
    for r in records:
        out.append(f"# target_id\t{r.target_id}")
        out.append(fmt_dist("wss", wss_values(r, acc_thres, sz_thres, exclude_samples, sort),
                            list(pcts), raw, nr_cols_bar, all_values))
    return "\n".join(out)


def set_argparser(p):
    add_dist_args(p, "damon.data")
    p.add_argument("--exclude_samples", type=int_arg(), default=20, metavar="<# samples>",
                   help="number of first snapshots to exclude")
    p.add_argument("--acc_thres", "-t", type=int_arg(), default=1, metavar="<# accesses>",
                   help="minimal nr_accesses (samples) for the working set")
    p.add_argument("--sz_thres", type=int_arg(), default=1, metavar="<size>",
                   help="minimal region size for the working set")
    p.add_argument("--all_wss", action="store_true", help="print every wss, not percentiles")
    p.description = "Show distribution of working set size"


def main(args):
    pcts = percentiles(args.range)
    print(render(load_records(args.input), args.acc_thres, args.sz_thres,
                 args.exclude_samples, args.sortby == "size", pcts,
                 args.raw_number, args.nr_cols_bar, args.all_wss))
