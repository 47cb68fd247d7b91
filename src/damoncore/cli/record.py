"""``record``: ``start`` that writes the monitoring results (default ``damon.data``)."""

from __future__ import annotations

from . import start


def set_argparser(p):
    start.set_argparser(p, record_default="damon.data")
    p.add_argument("-o", "--out", metavar="<file path>", help="output file path (= --record)")
    p.description = "Monitor and record the results to a damo-compatible file"


def main(args):
    if args.out:
        args.record = args.out
    start.run(args)
