"""``report access``: the recorded access pattern, in damo's shapes.

The default (``--style detailed``) prints, per snapshot, the snapshot's time, a heatmap of
the snapshot's space, its intervals, a line per region (index, start, size, access
frequency, age), the estimated memory bandwidth and the total size; per record its
intervals.  ``--style`` picks damo's other layouts (boxes, temperature or idle-time
histograms and percentiles, hottest or coldest first), ``--format`` rewrites any of the five
templates (see :mod:`report_format` for the keywords), ``--total_sz_only`` prints one total
per snapshot and ``--json`` the records as damo's JSON (which this command reads back).
"""

from __future__ import annotations

import json
import sys

from .. import kdamonds as kd
from . import damo_fmt as f
from .damo_options import COUNT_MAX, ArgsError, int_arg
from .report_format import Format, regions_of, render as render_format
from .report_input import load_records

STYLES = ("detailed", "simple-boxes", "temperature-sz-hist", "recency-sz-hist",
          "cold-memory-tail", "recency-percentiles", "idle-time-percentiles",
          "temperature-percentiles", "cold", "hot")
SORT_KEYS = ("address", "access_rate", "age", "size", "temperature")
AREAS = ("record_head", "snapshot_head", "region", "snapshot_tail", "record_tail")
MAX_TEMPLATE = 4000
PERCENTILE_MAX = 101         # a range() stop


def set_argparser(p):
    p.add_argument("--input", "-i", metavar="<file>", default="damon.data",
                   help="record file")
    p.add_argument("--style", choices=STYLES, default="detailed",
                   help="output format selection among pre-configured ones")
    p.add_argument("--format", metavar="<set|append> <area> <format string>", nargs="+",
                   action="append",
                   help="customize report content format: <set|append> "
                        "<record_head|snapshot_head|region|snapshot_tail|record_tail> "
                        "<format string with <keyword>s>")
    p.add_argument("--percentiles_range", nargs="+", type=int_arg(0, PERCENTILE_MAX),
                   metavar="<number>",
                   help="percentiles to show: up to 3 numbers are range() arguments, more "
                        "are the percentiles themselves")
    p.add_argument("--total_sz_only", action="store_true",
                   help="print only total size of the regions for each snapshot")
    p.add_argument("--json", action="store_true", help="print in json format")
    p.add_argument("--sort_regions_by", nargs="+", choices=SORT_KEYS, default=["address"],
                   help="fields to sort regions by (ascending)")
    p.add_argument("--sort_regions_dsc", nargs="+", choices=SORT_KEYS + ("all",),
                   help="sort regions in descending order for the given keys")
    p.add_argument("--temperature_weights", type=int_arg(0, 1 << 32), metavar="<int>",
                   nargs=3, default=[0, 100, 100],
                   help="temperature weights for size, access frequency, and age")
    p.add_argument("--hist_logscale", action="store_true", help="histograms in log scale")
    p.add_argument("--hist_cumulate", action="store_true",
                   help="cumulative histograms")
    p.add_argument("--snapshot_heatmap_width", type=int_arg(1, 1000), default=80,
                   metavar="<number>", help="width of the snapshot heatmap")
    p.add_argument("--snapshot_idx", type=int_arg(-(1 << 63), 1 << 63), metavar="<index>",
                   help="show only this snapshot (negative counts from the end)")
    p.add_argument("--raw_number", action="store_true", help="machine-friendly raw numbers")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="ANSI colors in heatmaps and boxes (auto: on a terminal)")
    p.description = "Show the monitored access pattern of each snapshot"


def _style(fmt: Format, style: str, records) -> None:
    multi = any(len(r.snapshots) > 1 for r in records)
    when = "snapshot time: [<start time>, <end time>] (<duration>)"
    if style == "simple-boxes":
        fmt.snapshot_head = when
        fmt.region = "<box> size <size> access <access hz> age <age>"
    elif style in ("temperature-sz-hist", "recency-sz-hist", "cold-memory-tail"):
        if style == "temperature-sz-hist":
            fmt.snapshot_head = "<temperature> <total size>\n<temperature-sz histogram>"
        else:
            fmt.snapshot_head = "<idle time (us)> <total size>\n<recency-sz histogram>"
        fmt.region = ""
    elif style in ("recency-percentiles", "idle-time-percentiles", "temperature-percentiles"):
        which = "temperature" if style == "temperature-percentiles" else "recency"
        fmt.snapshot_head = "\n".join(([when] if multi else [])
                                      + [f"# total {which} percentiles",
                                         f"<{which} percentiles>"])
        fmt.region = ""
    elif style in ("cold", "hot"):
        fmt.region = "<box> <size> access <access hz> <age>"
        fmt.sort_by = ["temperature"]
        fmt.sort_dsc = ["temperature"] if style == "hot" else []
    if style in ("simple-boxes", "cold", "hot"):
        fmt.box.update(height=("size", (1, 1), True), length=("age", (1, 40), True),
                       align="right", colorset="emotion")


def _defaults(fmt: Format, records) -> None:
    if fmt.record_head is None:
        fmt.record_head = ("kdamond <kdamond index> / context <context index> / scheme "
                           "<scheme index> / target id <target id> / recorded for "
                           "<duration> from <abs start time>") if len(records) > 1 else ""
    if fmt.record_tail is None:
        goal = any(((r.intervals or {}).get("intervals_goal") or {}).get("aggrs")
                   for r in records)
        fmt.record_tail = "record DAMON intervals: <intervals>" + \
            ("\n# <intervals goal>" if goal else "")
    if fmt.snapshot_head is None:
        multi = any(len(r.snapshots) > 1 for r in records)
        fmt.snapshot_head = "\n".join(
            (["snapshot time: [<start time>, <end time>] (<duration>)"] if multi else [])
            + ["heatmap: <heatmap>", "intervals: <snapshot intervals>"])
    if fmt.snapshot_tail is None:
        fmt.snapshot_tail = ("memory bw estimate: <estimated memory bandwidth>\n"
                             "total size: <total bytes>")
    if fmt.region is None:
        fmt.region = "<index> addr <start address> size <size> access <access hz> age <age>"


def _format_args(values):
    """--format values: (action, area, string) triples, checked."""
    out = []
    for v in values or []:
        if len(v) != 3:
            raise ArgsError(f"--format {kd.show(' '.join(v))}: expected <set|append> <area> "
                            f"<format string>")
        action, area, text = v
        if action not in ("set", "append"):
            raise ArgsError(f"--format {kd.show(action)}: the action must be set or append")
        if area not in AREAS:
            raise ArgsError(f"--format {kd.show(area)}: the area must be one of "
                            f"{', '.join(AREAS)}")
        if len(text) > MAX_TEMPLATE:
            raise ArgsError(f"--format {area}: longer than {MAX_TEMPLATE} characters")
        out.append((action, area, text))
    return out


def build_format(args, records, color=False) -> Format:
    """damo's set_formats(): --format's sets, the style, --total_sz_only, the defaults,
    then --format's appends."""
    if args.percentiles_range is not None and len(args.percentiles_range) <= 3:
        try:
            range(*args.percentiles_range)
        except ValueError as e:
            raise ArgsError(f"--percentiles_range "
                            f"{' '.join(map(str, args.percentiles_range))}: {e}") from None
    fmt = Format(raw=args.raw_number, weights=args.temperature_weights,
                 percentiles=args.percentiles_range, hist_logscale=args.hist_logscale,
                 hist_cumulate=args.hist_cumulate, heatmap_width=args.snapshot_heatmap_width,
                 color=color)
    fmt.sort_by = list(args.sort_regions_by)
    fmt.sort_dsc = list(args.sort_regions_dsc or [])
    triples = _format_args(args.format)
    for action, area, text in triples:
        if action == "set":
            setattr(fmt, area, text)
    _style(fmt, args.style, records)
    if args.total_sz_only:
        fmt.snapshot_head, fmt.region, fmt.snapshot_tail = "", "", "<total bytes>"
    _defaults(fmt, records)
    for action, area, text in triples:
        if action == "append":
            setattr(fmt, area, getattr(fmt, area) + text)
    return fmt


# --- damo's JSON ----------------------------------------------------------------------------
def records_kvpairs(records, raw=False) -> list:
    """The records as damo's ``DamonRecord.to_kvpairs(raw)`` lists them."""
    out = []
    for rec in records:
        iv = rec.intervals or {}
        g = iv.get("intervals_goal") or {}
        tu = lambda us: int(us) if raw else f.time_us(us)
        snaps = []
        for s in rec.snapshots:
            regions = regions_of(s)
            snaps.append({
                "start_time": kd.fmt_time_us_exact(s.start_us, raw) if not raw
                else s.start_us * 1000,
                "end_time": kd.fmt_time_us_exact(s.end_us, raw) if not raw else s.end_us * 1000,
                "regions": [{"start": kd.fmt_nr(r.start, raw), "end": kd.fmt_nr(r.end, raw),
                             "nr_accesses": {"samples": r.samples, "percent": r.percent},
                             "age": {"usec": kd.fmt_time_us_exact(r.age_us, raw),
                                     "aggr_intervals": kd.fmt_nr(r.age_aggrs, raw)},
                             "probe_hits": [], "sz_filter_passed": f.sz(0, raw)
                             if not raw else 0} for r in regions],
                "total_bytes": f.sz(sum(r.size() for r in regions), raw) if not raw
                else sum(r.size() for r in regions),
                "damos_stats": None,
                "sample_interval_us": kd.fmt_time_us_exact(s.sample_us, raw)})
        out.append({
            "kdamond_idx": rec.kdamond_idx, "context_idx": rec.context_idx,
            "intervals": {"sample_us": tu(iv.get("sample_us", 0)),
                          "aggr_us": tu(iv.get("aggr_us", 0)),
                          "ops_update_us": tu(iv.get("ops_update_us", 0)),
                          "intervals_goal": {
                              "access_bp": g.get("access_bp", 0) if raw
                              else f.bp(g.get("access_bp", 0)),
                              "aggrs": kd.fmt_nr(g.get("aggrs", 0), raw),
                              "min_sample_us": tu(g.get("min_sample_us", 0)),
                              "max_sample_us": tu(g.get("max_sample_us", 0))}},
            "scheme_idx": None, "target_id": rec.target_id, "scheme_filters": [],
            "snapshots": snaps, "data_source": "unknown"})
    return out


def render(records, raw=False, sort_by="address", snapshot_idx=None, **kw) -> str:
    """The default report (``--style detailed``) of ``records`` (API and golden tests)."""
    class A:
        raw_number, style, format, total_sz_only = raw, "detailed", None, False
        percentiles_range, temperature_weights = None, [0, 100, 100]
        hist_logscale = hist_cumulate = False
        snapshot_heatmap_width = 80
        sort_regions_by, sort_regions_dsc = [sort_by], None
    for k, v in kw.items():
        setattr(A, k, v)
    return render_format(records, build_format(A, records), snapshot_idx)


def main(args):
    fmt_color = args.color == "always" or (args.color == "auto" and sys.stdout is not None
                                            and sys.stdout.isatty())
    _format_args(args.format)                 # option errors before the file is read
    records = load_records(args.input)
    if args.snapshot_idx is not None:
        for r in records:
            n = len(r.snapshots)
            if not -n <= args.snapshot_idx < n:
                raise ArgsError(f"--snapshot_idx {args.snapshot_idx}: kdamond {r.kdamond_idx} "
                                f"context {r.context_idx} target {r.target_id} has {n} "
                                f"snapshots" + (f" (-{n}..{n - 1})" if n else ""))
        for r in records:
            r.snapshots = [r.snapshots[args.snapshot_idx]] if args.json else r.snapshots
    if args.json:
        print(json.dumps(records_kvpairs(records, args.raw_number), indent=4))
        return
    fmt = build_format(args, records, fmt_color)
    print(render_format(records, fmt, args.snapshot_idx))
