"""``status``: ask a running ``start`` (through its control socket) how it is doing."""

from __future__ import annotations

import glob
import json
import os

from ..errors import DamonError
from ..kdamonds import fmt_sz as _fmt_sz
from ..kdamonds import fmt_time_us as _fmt_time_us
from .status_server import query, socket_dir


def fmt_sz(n, raw=False):
    return _fmt_sz(n, raw, exact=False)


def fmt_time_us(us, raw=False):
    return _fmt_time_us(us, raw, exact=False)


def set_argparser(p):
    p.add_argument("--pid", type=int, metavar="<pid>", help="the damoncore start process")
    p.add_argument("--socket", metavar="<path>", help="control socket path")
    p.add_argument("--json", action="store_true", help="print the raw JSON status")
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
            lines.append(f"  context {j}: ops {c['ops']} ({c['backend']}), sample "
                         f"{fmt_time_us(c['sample_us'])}, aggr {fmt_time_us(c['aggr_us'])}, "
                         f"{c['nr_regions']} regions, {c['nr_aggregations']} aggregations")
            for n, s in enumerate(c["schemes"]):
                st_ = s["stats"]
                dst = s["target_nid"] if s["target_nid"] is not None else s["dests"]
                lines.append(f"    scheme {n}: {s['action']}"
                             f"{'' if dst in (None, []) else f' -> {dst}'}, effective quota "
                             f"{fmt_sz(s['effective_sz_bytes'])}"
                             f"{'' if s['active'] else ' (inactive: watermarks)'}")
                for g in s["goals"]:
                    lines.append(f"      goal {g['metric']}"
                                 f"{'' if g['nid'] is None else ' nid %d' % g['nid']}: "
                                 f"current {g['current_value']} target {g['target_value']}")
                lines.append(f"      tried {st_['nr_tried']} ({fmt_sz(st_['sz_tried'])}), "
                             f"applied {st_['nr_applied']} ({fmt_sz(st_['sz_applied'])}), "
                             f"ops filters passed {fmt_sz(st_['sz_ops_filter_passed'])}, "
                             f"quota exceeded {st_['qt_exceeds']}")
                lines.append(f"      promoted {fmt_sz(st_['sz_promoted'])}, demoted "
                             f"{fmt_sz(st_['sz_demoted'])}" + "".join(
                                 f", {m['src']}->{m['dst']} {fmt_sz(m['bytes'])}"
                                 for m in st_["migrated"]))
    return "\n".join(lines)


def main(args):
    paths = find_sockets(args)
    if not paths:
        raise DamonError(f"no running damoncore start found (no socket in {socket_dir()})")
    for path in paths:
        try:
            st = query(path)
        except OSError as e:
            raise DamonError(f"cannot query {path}: {e.strerror or e}") from e
        print(json.dumps(st, indent=4) if args.json else render(st))
