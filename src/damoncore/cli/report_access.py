"""``report access``: the regions of each snapshot, damo's detailed columns
(index, start address, size, access rate, age) plus a total per snapshot."""

from __future__ import annotations

from ..kdamonds import fmt_ratio
from ..kdamonds import fmt_sz as _fmt_sz
from ..kdamonds import fmt_time_us as _fmt_time_us
from ..units import BP
from .damo_options import ArgsError, int_arg
from .report_input import load_records


def fmt_sz(n, raw=False):
    return _fmt_sz(n, raw, exact=False)


def fmt_time_us(us, raw=False):
    return _fmt_time_us(us, raw, exact=False)


def region_lines(snap, raw=False, sort_by="address"):
    t = snap.targets[0]
    rows = []
    for s, e, n, a in zip(t.start, t.end, t.nr_accesses, t.age):
        rows.append((int(s), int(e), int(n), int(a)))
    if sort_by == "access_rate":
        rows.sort(key=lambda r: -r[2])
    elif sort_by == "age":
        rows.sort(key=lambda r: -r[3])
    elif sort_by == "size":
        rows.sort(key=lambda r: -(r[1] - r[0]))
    out = []
    for i, (s, e, n, a) in enumerate(rows):
        rate = fmt_ratio(n * BP // snap.max_nr_accesses, BP, raw)
        out.append(f"{i:>3} addr {fmt_sz(s, raw)!s:>12} size {fmt_sz(e - s, raw)!s:>11} "
                   f"access {rate!s:>5} age {fmt_time_us(a * snap.aggr_us, raw)!s:>13}")
    return out


def render(records, raw=False, sort_by="address", snapshot_idx=None) -> str:
    lines = []
    for r in records:
        iv = r.intervals
        lines.append(f"kdamond {r.kdamond_idx} context {r.context_idx} target {r.target_id}"
                     f"{'' if r.pid is None else f' (pid {r.pid})'}: sample "
                     f"{fmt_time_us(iv.get('sample_us', 0), raw)}, aggr "
                     f"{fmt_time_us(iv.get('aggr_us', 0), raw)}")
        snaps = list(enumerate(r.snapshots))
        if snapshot_idx is not None:
            snaps = [snaps[snapshot_idx]] if -len(snaps) <= snapshot_idx < len(snaps) else []
        for i, s in snaps:
            lines.append(f"snapshot {i}: [{fmt_time_us(s.start_us, raw)}, "
                         f"{fmt_time_us(s.end_us, raw)}] sample {fmt_time_us(s.sample_us, raw)}"
                         f", aggr {fmt_time_us(s.aggr_us, raw)}")
            lines += region_lines(s, raw, sort_by)
            t = s.targets[0]
            lines.append(f"total size: {fmt_sz(int((t.end - t.start).sum()), raw)}")
    return "\n".join(lines)


def set_argparser(p):
    p.add_argument("--input", "-i", metavar="<file>", default="damon.data",
                   help="record file")
    p.add_argument("--sort_regions_by", choices=["address", "access_rate", "age", "size"],
                   default="address", help="field to sort regions by")
    p.add_argument("--snapshot_idx", type=int_arg(-(1 << 63), 1 << 63), metavar="<index>",
                   help="show only this snapshot (negative counts from the end)")
    p.add_argument("--raw_number", action="store_true", help="machine-friendly raw numbers")
    p.description = "Show the monitored access pattern of each snapshot"


def main(args):
    records = load_records(args.input)
    if args.snapshot_idx is not None:
        for r in records:
            n = len(r.snapshots)
            if not -n <= args.snapshot_idx < n:
                raise ArgsError(f"--snapshot_idx {args.snapshot_idx}: kdamond {r.kdamond_idx} "
                                f"context {r.context_idx} target {r.target_id} has {n} "
                                f"snapshots" + (f" (-{n}..{n - 1})" if n else ""))
    print(render(records, args.raw_number, args.sort_regions_by, args.snapshot_idx))
