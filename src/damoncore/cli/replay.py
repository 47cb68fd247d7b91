"""``replay``: what DAMOS schemes would have done over a recorded access pattern, per
window, on a simulated placement (:mod:`damoncore.replay`).  No root, no kernel.

    damoncore replay <record> <damo start options or --kdamonds JSON>
        [--placement <nid>[:<start>-<end>[,...]]]... [--node_capacity <nid> <size>]...
        [--throughput <size>] [--all_windows] [--json] [--raw_number]

Without scheme options, a record of ours replays the schemes it was recorded with.
"""

from __future__ import annotations

import json

from .. import kdamonds as kd
from ..ops.replay import DEFAULT_THROUGHPUT
from ..replay import recorded_kdamonds, replay
from ..sim.placement import SIM_PAGE_SIZE, SWAP, Placement
from .damo_args import NodeResolver, kdamonds_from_args
from .damo_options import NID_MAX, ArgsError, set_damon_params_argparser
from .damos_args import schemes_from_args
from .report_input import load_records

MAX_PLACEMENT = 1024       # --placement ranges, all options together


class _AnyNode(NodeResolver):
    """--numa_node in replayed options: the record's targets are replayed, not these."""

    def node_ranges(self, nid):
        return [(0, SIM_PAGE_SIZE)]

    def default_paddr(self):
        return [(0, SIM_PAGE_SIZE)]


def set_argparser(p):
    p.add_argument("record", metavar="<record>",
                   help="record file (damoncore record, damo record: json_compressed or json)")
    set_damon_params_argparser(p)
    p.add_argument("--placement", action="append", default=[],
                   metavar="<nid>[:<start>-<end>[,<start>-<end>...]]",
                   help="where the recorded memory starts: a node id alone is the node for "
                        "everything no range names (default 0); with ranges, those ranges "
                        "(addresses of the record's space) start on that node")
    p.add_argument("--node_capacity", nargs=2, action="append", default=[],
                   metavar=("<nid>", "<size>"),
                   help="bytes a node holds at most (moves beyond it fail); needed by "
                        "node_mem_used_bp/free_bp goals and free_mem_rate watermarks")
    p.add_argument("--throughput", metavar="<size>", default=str(DEFAULT_THROUGHPUT),
                   help="bytes per second a time quota charges for what a scheme tries "
                        "(default: the kernel's first estimate, 4 GiB/s)")
    p.add_argument("--all_windows", action="store_true",
                   help="also list the windows in which a scheme was not due")
    p.add_argument("--json", action="store_true", help="print the windows as JSON")
    p.add_argument("--raw_number", action="store_true", help="machine-friendly raw numbers")
    p.description = ("Replay DAMOS schemes over a recorded access pattern on simulated "
                     "memory placement: what they would have tried, applied and moved")


def _nid(text, what) -> int:
    s = str(text).strip()
    if not s.isdigit() or len(s) > 6 or int(s) > NID_MAX:
        raise ArgsError(f"{what} {kd.show(text)}: not a node id (0..{NID_MAX})")
    return int(s)


def parse_placement(values, capacities) -> Placement:
    """``--placement`` and ``--node_capacity`` values as a :class:`Placement`."""
    default, layout = None, []
    for v in values:
        head, sep, ranges = str(v).partition(":")
        nid = _nid(head, "--placement")
        if not sep:
            if default is not None and default != nid:
                raise ArgsError(f"--placement {kd.show(v)}: the default node is already "
                                f"{default}")
            default = nid
            continue
        for word in ranges.split(","):
            a, dash, b = word.partition("-")
            if not dash:
                raise ArgsError(f"--placement {kd.show(v)}: expected <nid>:<start>-<end>")
            start = kd.parse_bytes(a, f"--placement {kd.show(v)} start")
            end = kd.parse_bytes(b, f"--placement {kd.show(v)} end")
            if start >= end:
                raise ArgsError(f"--placement {kd.show(v)}: start must be below end")
            layout.append((start, end, nid))
            if len(layout) > MAX_PLACEMENT:
                raise ArgsError(f"--placement: more than {MAX_PLACEMENT} ranges")
    caps = {}
    for nid, size in capacities:
        n = _nid(nid, "--node_capacity")
        if n in caps:
            raise ArgsError(f"--node_capacity {n}: given twice")
        caps[n] = kd.parse_bytes(size, f"--node_capacity {n} size")
    try:
        return Placement(default if default is not None else 0, layout, caps)
    except ArgsError:
        raise
    except Exception as e:              # overlapping ranges and the like
        raise ArgsError(f"--placement: {e}") from None


def _given_schemes(args) -> bool:
    return bool(args.damos_action or args.kdamonds or args.deducible_target
                or getattr(args, "schemes", None))


def _spec(args, records) -> dict:
    if _given_schemes(args):
        return kdamonds_from_args(args, _AnyNode())
    schemes_from_args(args)     # a --damos_* option without --damos_action is refused
    d = recorded_kdamonds(records)
    if d is None:
        raise ArgsError(f"{args.record}: the record does not hold the schemes it was made "
                        f"with; give the schemes to replay (damo's start options, e.g. "
                        f"--damos_action, or --kdamonds)")
    return d


# --- rendering -------------------------------------------------------------------------
def _sz(n, raw):
    return kd.fmt_sz(n, raw, exact=False)


def _t(us, raw):
    return kd.fmt_time_us(us, raw, exact=False)


def _node(n) -> str:
    return "swap" if n == SWAP else f"node {n}"


def _moved(migrated, raw) -> str:
    if not migrated:
        return "-"
    return ", ".join(f"{_sz(v, raw)} {s}->{d}" for (s, d), v in sorted(migrated.items()))


def describe(scheme, raw=False) -> str:
    """One line: action, destination, access pattern, quota."""
    p, q = scheme.access_pattern, scheme.quota
    what = scheme.action
    if scheme.destinations() and scheme.action.startswith("migrate"):
        what += " -> " + ", ".join(_node(n) for n, _ in scheme.destinations())
    unit = "%" if p.nr_accesses_unit == "percent" else " samples"
    hi = "max" if p.max_nr_accesses >= kd.U64_MAX else f"{p.max_nr_accesses}{unit}"
    parts = [what, f"access {p.min_nr_accesses}{unit}..{hi}"]
    if p.min_age or p.max_age < kd.U64_MAX:
        amax = "max" if p.max_age >= kd.U64_MAX else p.max_age
        parts.append(f"age {p.min_age}..{amax} "
                     f"({'us' if p.age_unit == 'us' else 'aggregations'})")
    if q.sz_bytes or q.time_ms:
        quota = " + ".join(x for x in (f"{_sz(q.sz_bytes, raw)}" if q.sz_bytes else "",
                                       f"{q.time_ms} ms" if q.time_ms else "") if x)
        parts.append(f"quota {quota} per {kd.fmt_time_us(q.reset_interval_ms * 1000)}")
    for g in q.goals:
        parts.append(f"goal {g.metric} {g.target_value}"
                     + (f" (node {g.nid})" if g.nid is not None else ""))
    if scheme.filters:
        parts.append(f"{len(scheme.filters)} filter(s)")
    return ", ".join(parts)


def render_text(result, raw=False, all_windows=False) -> str:
    lines = []
    for ki, ci, ctx in result.contexts:
        for si, s in enumerate(ctx.schemes):
            ws = [w for w in result.windows
                  if (w.kdamond_idx, w.context_idx, w.scheme_idx) == (ki, ci, si)]
            lines.append(f"kdamond {ki} context {ci} scheme {si}: {describe(s, raw)}")
            lines.append(f"{'window':>6} {'end time':>11} {'tried':>20} {'applied':>20} "
                         f"{'quota':>12}  moved")
            tot = {"sz_tried": 0, "nr_tried": 0, "sz_applied": 0, "nr_applied": 0}
            moved, rec, same, nrec = {}, {"sz_tried": 0, "nr_tried": 0}, 0, 0
            for w in ws:
                for k in tot:
                    tot[k] += getattr(w, k)
                for p, v in w.migrated.items():
                    moved[p] = moved.get(p, 0) + v
                if w.recorded is not None:
                    nrec += 1
                    rec["sz_tried"] += w.recorded["sz_tried"]
                    rec["nr_tried"] += w.recorded["nr_tried"]
                    same += w.recorded["sz_tried"] == w.sz_tried
                if not (w.due or all_windows):
                    continue
                esz = "-" if not w.effective_sz_bytes or w.effective_sz_bytes >= kd.U64_MAX \
                    else _sz(w.effective_sz_bytes, raw)
                lines.append(
                    f"{w.window:>6} {_t(w.end_us - ws[0].start_us, raw)!s:>11} "
                    f"{f'{_sz(w.sz_tried, raw)} ({w.nr_tried})':>20} "
                    f"{f'{_sz(w.sz_applied, raw)} ({w.nr_applied})':>20} {esz!s:>12}  "
                    f"{_moved(w.migrated, raw) if w.due else 'not due'}")
            lines.append(f"total: tried {_sz(tot['sz_tried'], raw)} ({tot['nr_tried']} "
                         f"regions), applied {_sz(tot['sz_applied'], raw)} "
                         f"({tot['nr_applied']}), moved {_moved(moved, raw)}")
            if nrec:
                lines.append(f"recorded run: tried {_sz(rec['sz_tried'], raw)} "
                             f"({rec['nr_tried']} regions); the replay tried the same in "
                             f"{same} of {nrec} windows")
            lines.append("")
    pl = result.placement
    lines.append("placement at the end: " + ", ".join(
        f"{_node(n)} {_sz(pl.node_bytes(n), raw)}"
        + (f" of {_sz(pl.capacities[n], raw)}" if n in pl.capacities else "")
        for n in pl.nodes + ([SWAP] if pl.node_bytes(SWAP) else [])))
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def to_json(result) -> dict:
    pl = result.placement
    return {
        "schemes": [{"kdamond_idx": ki, "context_idx": ci, "scheme_idx": si,
                     "scheme": kd.scheme_to_dict(s, raw=True)}
                    for ki, ci, ctx in result.contexts for si, s in enumerate(ctx.schemes)],
        "windows": [{"kdamond_idx": w.kdamond_idx, "context_idx": w.context_idx,
                     "scheme_idx": w.scheme_idx, "window": w.window,
                     "start_time_ns": w.start_us * 1000, "end_time_ns": w.end_us * 1000,
                     "due": w.due, "nr_tried": w.nr_tried, "sz_tried": w.sz_tried,
                     "nr_applied": w.nr_applied, "sz_applied": w.sz_applied,
                     "sz_ops_filter_passed": w.sz_ops_filter_passed,
                     "qt_exceeds": w.qt_exceeds, "sz_migrated": w.sz_migrated,
                     "effective_sz_bytes": w.effective_sz_bytes,
                     "migrated": [{"src": s, "dst": d, "bytes": v}
                                  for (s, d), v in sorted(w.migrated.items())],
                     "goals_current_value": w.goals,
                     "recorded": w.recorded} for w in result.windows],
        "placement": {"nodes": [{"nid": n, "bytes": pl.node_bytes(n),
                                 "capacity": pl.capacities.get(n)} for n in pl.nodes],
                      "swap_bytes": pl.node_bytes(SWAP)},
        "notes": result.notes,
    }


def main(args):
    placement = parse_placement(args.placement, args.node_capacity)
    throughput = kd.parse_bytes(args.throughput, "--throughput")
    if throughput == 0:
        raise ArgsError("--throughput 0: must be above 0 bytes per second")
    records = load_records(args.record, "<record>")
    result = replay(records, _spec(args, records), placement, throughput,
                    follow_commits=not _given_schemes(args))
    if args.json:
        print(json.dumps(to_json(result), indent=1))
    else:
        print(render_text(result, args.raw_number, args.all_windows))
