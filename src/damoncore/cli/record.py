"""``record``: ``start`` that writes the monitoring results (default ``damon.data``) and,
as damo, the memory footprints (``damon.data.mem_footprint``, see :mod:`record_footprint`).

Every output is checked before anything starts (its directory exists and is writable, it
is not a directory, its name leaves room for ``.old``); an existing file is renamed
``.old``; snapshots are streamed to the file and it is complete after every flush
(``--output_flush_sec``, see :mod:`damoncore.records`), so a killed run keeps everything up
to its last flush.  SIGINT, SIGTERM and SIGHUP end the run with the file complete.
"""

from __future__ import annotations

import os
import re
import signal

from .. import kdamonds as kd
from .. import records
from ..errors import InvalidConfig
from . import start
from .damo_options import ArgsError
from .record_footprint import FootprintRecording, add_args, parse_permission


def set_argparser(p):
    start.set_argparser(p, record_default="damon.data")
    p.add_argument("-o", "--out", metavar="<file path>", help="output file path (= --record)")
    p.add_argument("--output_flush_sec", metavar="<seconds>", default=str(records.FLUSH_SEC),
                   help="at most this long (wall time; a number is seconds, or e.g. 500ms, "
                        "1h) between flushes that leave the file complete; damo starts a "
                        f"new file instead (default {records.FLUSH_SEC:g})")
    add_args(p)
    p.description = "Monitor and record the results to a damo-compatible file"


def parse_flush_sec(text) -> float:
    """``--output_flush_sec``: a number is seconds (as damo's), or a time with its unit."""
    s = str(text).strip()
    shown = s if len(s) <= 40 else s[:30] + f"...({len(s)} characters)"
    bad = ArgsError(f"--output_flush_sec {shown!r}: not a time (e.g. 1, 0.5, 10s, 1h)")
    if len(s) > 32:
        raise bad
    try:
        us = kd.parse_time_us(s + "s" if re.fullmatch(r"[0-9][0-9,]*(\.[0-9]*)?|\.[0-9]+", s)
                              else s, "--output_flush_sec")
    except InvalidConfig:
        raise bad from None
    return us / 1e6


def _hup_ends_like_term(signum, frame):
    # start.run stops the monitoring loop on SIGTERM and closes the record
    os.kill(os.getpid(), signal.SIGTERM)


def main(args):
    if args.out:
        args.record = args.out
    mode = parse_permission(args.output_permission)
    flush_sec = parse_flush_sec(args.output_flush_sec)
    path, footprint = args.record, "mem_footprint" in args.do_record
    if "access" in args.do_record:
        records.check_output(path, [".mem_footprint"] if footprint else [])
    else:
        args.record = None
    if footprint:
        records.check_output(f"{path}.mem_footprint", what="footprint file")
    args.record_options = {"mode": mode, "flush_sec": flush_sec}
    footprints = FootprintRecording.plan(args, path, mode)
    old_hup = signal.signal(signal.SIGHUP, _hup_ends_like_term)
    try:
        start.run(args, ready=footprints.begin if footprints else None)
    except BaseException:
        if footprints:
            footprints.abandon()
        raise
    finally:
        signal.signal(signal.SIGHUP, old_hup)
    if footprints:
        footprints.finish()
