"""``report damon_stat``: DAMON_STAT's summary (kernel 6.17) of a recorded aggregation.

Per recorded context, the module parameters ``damo module stat read`` prints
(``estimated_memory_bandwidth`` in bytes per second, the 101 ``memory_idle_ms_percentiles``,
``aggr_interval_us``) for one snapshot (default: the last; all targets of the context
together, as the module sees all memory); ``--idle_time_percentiles_range`` prints the
percentiles as damo's ``idle_time_percentiles`` does, ``--json`` as damo's
``DamonStatSnapshot`` JSON.  See :mod:`damoncore.damon_stat` for the formulas.
"""

from __future__ import annotations

import json

from .. import kdamonds as kd
from ..damon_stat import NR_PERCENTILES, summarize_snapshots
from ..errors import InvalidConfig
from . import damo_fmt as f
from .damo_options import ArgsError, int_arg
from .report_input import load_records


def set_argparser(p):
    p.add_argument("--input", "-i", metavar="<file>", default="damon.data", help="record file")
    p.add_argument("--snapshot_idx", type=int_arg(-(1 << 63), 1 << 63), default=-1,
                   metavar="<index>",
                   help="the snapshot to summarize (negative counts from the end; default -1)")
    p.add_argument("--idle_time_percentiles_range", metavar="<int>", nargs=3,
                   type=int_arg(0, NR_PERCENTILES),
                   help="print the idle time percentiles of range(start, end, interval), "
                        "e.g. 0 101 10")
    p.add_argument("--json", action="store_true",
                   help="print damo's DAMON_STAT snapshot JSON per context")
    p.add_argument("--raw_number", action="store_true", help="machine-friendly raw numbers")
    p.description = "DAMON_STAT's summary: estimated memory bandwidth, idle time percentiles"


def _contexts(records, idx):
    """{(kdamond, context): [snapshot of each target]} at snapshot ``idx``."""
    out = {}
    for r in records:
        n = len(r.snapshots)
        if not -n <= idx < n:
            raise ArgsError(f"--snapshot_idx {idx}: kdamond {r.kdamond_idx} context "
                            f"{r.context_idx} target {r.target_id} has {n} snapshots"
                            + (f" (-{n}..{n - 1})" if n else ""))
        out.setdefault((r.kdamond_idx, r.context_idx), []).append(r.snapshots[idx])
    return out


def _kvpairs(summary, raw) -> dict:
    """damo's DamonStatSnapshot.to_kvpairs(raw)."""
    return {"idletime_ms_percentiles": [
                {"percentile": p if raw else f.nr(p),
                 "idle_ms": ms if raw else kd.fmt_time_ms_exact(ms) if ms >= 0
                 else "-" + kd.fmt_time_ms_exact(-ms)}
                for p, ms in enumerate(summary.memory_idle_ms_percentiles)],
            "memory_bw_bytes_per_sec": summary.estimated_memory_bandwidth if raw
            else f.sz(summary.estimated_memory_bandwidth),
            "aggr_interval_us": summary.aggr_interval_us if raw
            else kd.fmt_time_us_exact(summary.aggr_interval_us)}


def main(args):
    records = load_records(args.input)
    if not records:
        raise ArgsError(f"--input {args.input}: no record")
    ctxs = _contexts(records, args.snapshot_idx)
    out, docs = [], []
    for (ki, ci), snaps in ctxs.items():
        try:
            s = summarize_snapshots(snaps)
        except InvalidConfig as e:
            raise ArgsError(f"--input {args.input}: kdamond {ki} context {ci}: {e}") from None
        if args.json:
            docs.append({"kdamond_idx": ki, "context_idx": ci, **_kvpairs(s, args.raw_number)})
            continue
        t0, t1 = min(x.start_us for x in snaps), max(x.end_us for x in snaps)
        out.append(f"kdamond {ki} context {ci}: snapshot [{f.time_us(t0)}, {f.time_us(t1)})")
        if args.idle_time_percentiles_range:
            start, end, step = args.idle_time_percentiles_range
            if step == 0:
                raise ArgsError(f"--idle_time_percentiles_range {start} {end} 0: the interval "
                                f"must be above 0")
            for p in range(start, min(end, NR_PERCENTILES), step):
                ms = s.memory_idle_ms_percentiles[p]
                out.append(f"{p:3d} {ms if args.raw_number else f.time_ns(ms * 1_000_000)}")
            continue
        bw = s.estimated_memory_bandwidth
        out.append(f"estimated_memory_bandwidth: "
                   f"{bw if args.raw_number else f'{f.sz(bw)} per second'}")
        out.append("memory_idle_ms_percentiles: "
                   + ",".join(map(str, s.memory_idle_ms_percentiles)))
        out.append(f"aggr_interval_us: {s.aggr_interval_us}")
    print(json.dumps(docs, indent=4) if args.json else "\n".join(out))
