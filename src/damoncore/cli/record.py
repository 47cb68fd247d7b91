"""``record``: ``start`` that writes the monitoring results (default ``damon.data``) and,
as damo, the memory footprints (``damon.data.mem_footprint``, see :mod:`record_footprint`)."""

from __future__ import annotations

import os

from . import start
from .record_footprint import FootprintRecording, add_args, parse_permission


def set_argparser(p):
    start.set_argparser(p, record_default="damon.data")
    p.add_argument("-o", "--out", metavar="<file path>", help="output file path (= --record)")
    add_args(p)
    p.description = "Monitor and record the results to a damo-compatible file"


def main(args):
    if args.out:
        args.record = args.out
    mode = parse_permission(args.output_permission)
    footprints = FootprintRecording.begin(args, args.record, mode)
    if "access" not in args.do_record:
        args.record = None
    try:
        kdamonds = start.run(args)
    except BaseException:
        if footprints:
            footprints.abandon()
        raise
    if args.record and os.path.exists(args.record):
        os.chmod(args.record, mode)
    if footprints:
        footprints.finish(kdamonds)
