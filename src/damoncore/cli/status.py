"""``status``: ask a running ``start`` (through its control socket) how it is doing."""

from __future__ import annotations

import glob
import json
import os

from ..errors import DamonError
from ..kdamonds import fmt_sz as _fmt_sz
from ..kdamonds import fmt_time_us as _fmt_time_us
from ..kdamonds import show
from .control import call, find_run
from .damo_options import PID_MAX, ArgsError, int_arg
from .status_server import query, remove_stale, socket_dir


def fmt_sz(n, raw=False):
    return _fmt_sz(n, raw, exact=False)


def fmt_time_us(us, raw=False):
    return _fmt_time_us(us, raw, exact=False)


def set_argparser(p):
    p.add_argument("--pid", type=int_arg(1, PID_MAX), metavar="<pid>",
                   help="the damoncore start process")
    p.add_argument("--socket", metavar="<path>", help="control socket path")
    p.add_argument("--json", action="store_true", help="print the raw JSON status")
    p.add_argument("--kdamonds", action="store_true",
                   help="print the run's parameters as kdamonds JSON (a spec to edit and "
                        "give to tune --kdamonds); one run: --pid chooses")
    p.add_argument("--raw", action="store_true", help="with --kdamonds: plain numbers")
    p.description = "Show the status of running damoncore start processes"


def find_sockets(args) -> list:
    if args.socket:
        return [args.socket]
    if args.pid:
        return [os.path.join(socket_dir(), f"{args.pid}.sock")]
    return sorted(glob.glob(os.path.join(socket_dir(), "*.sock")))


def render(st) -> str:
    lines = [f"pid {st['pid']}"]
    for i, k in enumerate(st["kdamonds"]):
        lines.append(f"kdamond {i}")
        for j, c in enumerate(k["contexts"]):
            if c is None:
                continue
            lines.append(f"  context {j}: ops {c['ops']} ({c['backend']}), sample "
                         f"{fmt_time_us(c['sample_us'])}, aggr {fmt_time_us(c['aggr_us'])}, "
                         f"{c['nr_regions']} regions, {c['nr_aggregations']} aggregations"
                         f"{' (paused)' if c.get('pause') else ''}")
            for n, s in enumerate(c["schemes"]):
                st_ = s["stats"]
                dst = s["target_nid"] if s["target_nid"] is not None else s["dests"]
                lines.append(f"    scheme {n}: {s['action']}"
                             f"{'' if dst in (None, []) else f' -> {dst}'}, effective quota "
                             f"{fmt_sz(s['effective_sz_bytes'])}"
                             f"{'' if s['active'] else ' (inactive: watermarks or max_nr_snapshots)'}")
                for g in s["goals"]:
                    lines.append(f"      goal {g['metric']}"
                                 f"{'' if g['nid'] is None else ' nid %d' % g['nid']}: "
                                 f"current {g['current_value']} target {g['target_value']}")
                lines.append(f"      tried {st_['nr_tried']} ({fmt_sz(st_['sz_tried'])}), "
                             f"applied {st_['nr_applied']} ({fmt_sz(st_['sz_applied'])}), "
                             f"ops filters passed {fmt_sz(st_['sz_ops_filter_passed'])}, "
                             f"quota exceeded {st_['qt_exceeds']}, snapshots "
                             f"{st_['nr_snapshots']}" + (f" (max {st_['max_nr_snapshots']})"
                                                         if st_.get('max_nr_snapshots')
                                                         else ""))
                lines.append(f"      promoted {fmt_sz(st_['sz_promoted'])}, demoted "
                             f"{fmt_sz(st_['sz_demoted'])}" + "".join(
                                 f", {m['src']}->{m['dst']} {fmt_sz(m['bytes'])}"
                                 for m in st_["migrated"]))
    return "\n".join(lines)


def _query(path):
    """The status at ``path``; None if its run is gone (a dead run's socket is removed)."""
    try:
        return query(path)
    except (ConnectionRefusedError, FileNotFoundError):
        remove_stale(path)
        return None
    except (OSError, ValueError) as e:
        raise DamonError(f"cannot query {path}: {getattr(e, 'strerror', None) or e}") from e


def main(args):
    if args.kdamonds:
        print(json.dumps(call(find_run(args), {"cmd": "params", "raw": args.raw}, 30.0),
                         indent=4))
        return
    paths = find_sockets(args)
    if args.socket and not os.path.exists(args.socket):
        raise ArgsError(f"--socket {show(args.socket)}: no such file")
    found = 0
    for path in paths:
        st = _query(path)
        if st is None:
            continue
        found += 1
        if args.json:
            print(json.dumps(st, indent=4))
        elif "error" in st:
            print(f"{path}: the run could not report its status: {st['error']}")
        else:
            print(render(st))
    if not found:
        if args.socket or args.pid:
            raise DamonError(f"no damoncore start answers at {paths[0]} (the run is gone)")
        raise DamonError(f"no running damoncore start found (no live socket in "
                         f"{socket_dir()})")
