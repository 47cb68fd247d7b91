"""``report``: access, heatmap, wss, footprints of a record file."""

from __future__ import annotations

from . import (report_access, report_damon_stat, report_footprints, report_heatmap,
               report_wss)

SUBCMDS = {"access": (report_access, "the regions of each snapshot"),
           "heatmap": (report_heatmap, "access heatmap over time and space"),
           "wss": (report_wss, "working set size distribution"),
           "footprints": (report_footprints, "memory footprint distribution"),
           "damon_stat": (report_damon_stat, "DAMON_STAT's summary: memory bandwidth, idle "
                                             "time percentiles")}


def set_argparser(p):
    sub = p.add_subparsers(title="report type", dest="report_type", metavar="<type>")
    sub.required = True
    for name, (mod, msg) in SUBCMDS.items():
        mod.set_argparser(sub.add_parser(name, help=msg))
    p.description = "Report the recorded monitoring results"


def main(args):
    SUBCMDS[args.report_type][0].main(args)
