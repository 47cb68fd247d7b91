"""damo ``start`` options -> the kdamonds dict (raw numbers), with damo's rules for how
per-context, per-target and per-scheme options are distributed (``--nr_ctxs``,
``--nr_targets``, ``--nr_schemes``, ``--damos_nr_quota_goals``, ``--damos_nr_filters``).

Every malformed input raises :class:`ArgsError` whose message names the value.  The dict
is then validated by building the objects (:func:`validate`), so one code path decides.
"""

from __future__ import annotations

import json
import re

from .. import kdamonds as kd
from ..errors import InvalidConfig
from ..ops.base import Operations
from ..schemes.scheme import ACTIONS
from ..units import BP
from ..vocab import OPS_FILTER_TYPES
from .checks import input_file
from .damo_options import PID_MAX, ArgsError
from .damos_args import _split, schemes_from_args



MAX_JSON_BYTES = 64 << 20


class NodeResolver:
    """Where ``--numa_node`` and a bare paddr target point: override for the backend."""

    def node_ranges(self, nid: int) -> list:
        raise ArgsError(f"--numa_node {nid}: no NUMA information for this backend")

    def default_paddr(self) -> list:
        return []


class _NullOps(Operations):
    """Stands in for a backend while validating: every action, no effect."""

    supported_actions = frozenset(ACTIONS)
    supported_filters = OPS_FILTER_TYPES

    def __init__(self, space):
        self.space = space
        self.name = space


def validate(kdamonds: dict) -> list:
    """Build (and so check) the contexts without a backend; returns them."""
    return kd.build_contexts(kdamonds, lambda c: _NullOps(c.get("ops", "paddr")))


def parse_pid(text, what="--target_pid") -> int:
    """A process id given as a string: 1..4194304 (PID_MAX_LIMIT)."""
    s = str(text).strip()
    if not re.fullmatch(r"[0-9]{1,10}", s) or not 0 < int(s) <= PID_MAX:
        raise ArgsError(f"{what} {kd.show(text)}: not a process id (1..{PID_MAX})")
    return int(s)


def _load_json_arg(text, what, hint=" (nor inline JSON)"):
    """A JSON document given inline or as a file name (damo takes either)."""
    if text.lstrip()[:1] in ("{", "["):
        where, data = f"{what} (inline JSON)", text
    else:
        input_file(text, what, hint)
        where = f"{what} {kd.show(text)}"
        try:
            with open(text, "rb") as f:
                raw = f.read(MAX_JSON_BYTES + 1)
        except OSError as e:
            raise ArgsError(f"{where}: {e.strerror}") from None
        if len(raw) > MAX_JSON_BYTES:
            raise ArgsError(f"{where}: larger than {MAX_JSON_BYTES >> 20} MiB")
        try:
            data = raw.decode()
        except UnicodeDecodeError as e:
            raise ArgsError(f"{where}: not a JSON file (not UTF-8 text: {e.reason} at byte "
                            f"{e.start})") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ArgsError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column "
                        f"{e.colno})") from None
    except RecursionError:
        raise ArgsError(f"{where}: JSON nested too deeply") from None


# --- parts ---------------------------------------------------------------------------------
def _regions(text):
    out = []
    for word in text.split():
        parts = word.split("-")
        if len(parts) != 2:
            raise ArgsError(f"--regions {kd.show(word)}: expected <start>-<end>")
        a, b = (kd.parse_bytes(x, f"--regions {kd.show(word)}") for x in parts)
        if a >= b:
            raise ArgsError(f"--regions {kd.show(word)}: start >= end")
        if out and out[-1][1] > a:
            raise ArgsError(f"--regions {kd.show(word)}: regions overlap")
        out.append((a, b))
    return out


def _merge(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# --- contexts / kdamonds -----------------------------------------------------------------
def _per_ctx(v, n):
    v = list(v or [])
    return v + [None] * (n - len(v))


def _sample_filter(words):
    w = list(words)
    if not w or w[0] not in ("allow", "reject"):
        raise ArgsError(f"--sample_filter {kd.show(' '.join(words))}: expected <allow|reject> "
                        "[none] <cpu|threads|write> [list]")
    allow = w.pop(0) == "allow"
    matching = True
    if w and w[0] == "none":
        matching = False
        w.pop(0)
    if not w:
        raise ArgsError(f"--sample_filter {kd.show(' '.join(words))}: no filter type")
    t = {"cpu": "cpumask", "cpus": "cpumask", "cpumask": "cpumask", "threads": "threads",
         "thread": "threads", "tids": "threads", "write": "write"}.get(w.pop(0))
    if t is None:
        raise ArgsError(f"--sample_filter {kd.show(' '.join(words))}: unknown type "
                        "(cpu, threads, write)")
    if len(w) != (0 if t == "write" else 1):
        raise ArgsError(f"--sample_filter {kd.show(' '.join(words))}: wrong number of arguments")
    ids = kd.fmt_idlist(kd.parse_idlist(w[0], f"--sample_filter {kd.show(w[0])}")) if w else None
    return {"filter_type": t, "matching": matching, "allow": allow,
            "cpumask": ids if t == "cpumask" else None,
            "tid_arr": ids if t == "threads" else None}


def _yes(v, what):
    if v is None:
        return False
    if str(v).lower() in ("y", "yes", "true"):
        return True
    if str(v).lower() in ("n", "no", "false"):
        return False
    raise ArgsError(f"{what} {kd.show(v)}: expected Y or N")


def _sample_control(a, i, own_filters):
    prims = (a.sample_primitives or [None] * (i + 1))[i] if a.sample_primitives and \
        i < len(a.sample_primitives) else None
    use_reports = _yes((a.exp_ops_use_reports or [])[i] if i < len(a.exp_ops_use_reports or [])
                       else None, "--exp_ops_use_reports")
    if prims is not None and use_reports:
        raise ArgsError("--sample_primitives and --exp_ops_use_reports used together")
    if prims is None:
        prims = ["page_fault"] if use_reports else ["page_table"]
    filters = []
    if i < len(a.exp_ops_write_only or []) and _yes(a.exp_ops_write_only[i],
                                                     "--exp_ops_write_only"):
        filters.append(_sample_filter(["allow", "write"]))
    if i < len(a.exp_ops_cpus or []) and a.exp_ops_cpus[i] not in (None, "all"):
        filters.append(_sample_filter(["allow", "cpu", a.exp_ops_cpus[i]]))
    if i < len(a.exp_ops_tids or []) and a.exp_ops_tids[i]:
        filters.append(_sample_filter(["allow", "threads", a.exp_ops_tids[i]]))
    return {"primitives_enabled": {"page_table": "page_table" in prims,
                                   "page_fault": "page_fault" in prims},
            "sample_filters": filters + own_filters}


def _count_ctxs(a):
    lens = [len(v) for v in (a.ops, a.sample, a.aggr, a.updr, a.minr, a.maxr,
                             a.monitoring_intervals, a.monitoring_intervals_goal,
                             a.monitoring_nr_regions_range, a.nr_targets, a.nr_schemes)
            if v is not None]
    return max(lens) if lens else 1


def _intervals(a, i):
    iv = ["5ms", "100ms", "1s"]
    for j, v in enumerate((a.monitoring_intervals or [None] * (i + 1))[i]
                          if i < len(a.monitoring_intervals or []) else [None] * 3):
        iv[j] = v if v is not None else iv[j]
    for j, opt in enumerate((a.sample, a.aggr, a.updr)):
        if opt and i < len(opt) and opt[i] is not None:
            iv[j] = opt[i]
    names = ("sample", "aggr", "update")
    goal = ["0", "0", "0", "0"]
    if a.monitoring_intervals_autotune:
        goal = ["4%", "3", "5ms", "10s"]
    if a.monitoring_intervals_goal and i < len(a.monitoring_intervals_goal):
        goal = a.monitoring_intervals_goal[i]
    return {"sample_us": kd.parse_time_us(iv[0], f"{names[0]} interval {kd.show(iv[0])}"),
            "aggr_us": kd.parse_time_us(iv[1], f"{names[1]} interval {kd.show(iv[1])}"),
            "ops_update_us": kd.parse_time_us(iv[2], f"{names[2]} interval {kd.show(iv[2])}"),
            "intervals_goal": {
                "access_bp": kd.parse_ratio(goal[0], BP, f"intervals goal access_bp {kd.show(goal[0])}"),
                "aggrs": kd.parse_nr(goal[1], f"intervals goal aggrs {kd.show(goal[1])}"),
                "min_sample_us": kd.parse_time_us(goal[2], f"intervals goal min_sample {kd.show(goal[2])}"),
                "max_sample_us": kd.parse_time_us(goal[3], f"intervals goal max_sample {kd.show(goal[3])}")}}


def _nr_regions(a, i):
    rng = ["10", "1000"]
    if a.monitoring_nr_regions_range and i < len(a.monitoring_nr_regions_range):
        rng = list(a.monitoring_nr_regions_range[i])
    for j, opt in enumerate((a.minr, a.maxr)):
        if opt and i < len(opt) and opt[i] is not None:
            rng[j] = opt[i]
    lo, hi = (kd.parse_nr(v, f"nr_regions {kd.show(v)}") for v in rng)
    if lo > hi:
        raise ArgsError(f"nr_regions range {rng[0]} {rng[1]}: min > max")
    return {"min": lo, "max": hi}


def _adaptation_of(a, i):
    """``--adaptation`` of context ``i``: one per context in order, a single one for all."""
    v = getattr(a, "adaptation", None) or ["kernel"]
    return v[0] if len(v) == 1 else (v[i] if i < len(v) else "kernel")


def kdamonds_from_args(a, resolver: NodeResolver | None = None) -> dict:
    """The parsed damo options (see :mod:`damo_options`) as a validated kdamonds dict."""
    resolver = resolver or NodeResolver()
    if a.kdamonds:
        d = _load_json_arg(a.kdamonds, "--kdamonds")
        validate(d)
        return d
    target = a.deducible_target
    if target and target != "paddr":
        if re.fullmatch(r"[0-9]+", target):
            a.target_pid = [parse_pid(target, "<deducible string>")]
        else:
            d = _load_json_arg(target, "<deducible string>",
                               " (expected 'paddr', a process id or a kdamonds JSON file)")
            validate(d)
            return d
    if target == "paddr":
        a.ops = ["paddr"]
    for v in a.damon_addr_unit or []:
        if kd.parse_bytes(v, f"--damon_addr_unit {kd.show(v)}") != 1:
            raise ArgsError(f"--damon_addr_unit {v}: only 1 is supported")
    nr_ctxs = _count_ctxs(a)
    ops = _per_ctx(a.ops, nr_ctxs)
    pids = list(a.target_pid or [])
    nr_targets_total = max([len(pids), len(a.regions or []), len(a.numa_node or []), nr_ctxs])
    per_ctx_targets = _split(list(range(nr_targets_total)), a.nr_targets or [],
                             "--nr_targets", nr_ctxs, "context")
    pids += [None] * (nr_targets_total - len(pids))
    regions = _per_ctx(a.regions, nr_targets_total)
    nodes = _per_ctx(a.numa_node, nr_targets_total)
    for i in range(nr_ctxs):
        if ops[i] is None:
            ops[i] = "paddr" if (i >= len(a.target_pid or []) or a.target_pid[i] is None) \
                else "vaddr"
    for idx in a.obsolete_targets or []:
        if not 0 <= idx < nr_targets_total:
            raise ArgsError(f"--obsolete_targets {idx}: no such target")
    for idx in a.pause_ctx or []:
        if not 0 <= idx < nr_ctxs:
            raise ArgsError(f"--pause_ctx {idx}: no such context ({nr_ctxs} given)")
    sfilters = _split([_sample_filter(w) for w in a.sample_filter], a.nr_sample_filters or [],
                      "--nr_sample_filters", nr_ctxs, "context")
    schemes = _split(schemes_from_args(a), a.nr_schemes or [], "--nr_schemes", nr_ctxs,
                     "context")
    ctxs = []
    for i in range(nr_ctxs):
        targets = []
        for t in per_ctx_targets[i]:
            rs = _regions(regions[t]) if regions[t] else []
            if ops[i] == "paddr" and not rs:
                if nodes[t] is not None:
                    rs = _merge([r for n in nodes[t] for r in resolver.node_ranges(n)])
                else:
                    rs = list(resolver.default_paddr())
            elif nodes[t] is not None:
                raise ArgsError(f"--numa_node {' '.join(map(str, nodes[t]))}: only for paddr")
            targets.append({"pid": pids[t] if ops[i] in ("vaddr", "fvaddr") else None,
                            "obsolete": t in (a.obsolete_targets or []),
                            "regions": [{"start": s, "end": e} for s, e in rs]})
        ctxs.append({"ops": ops[i], "addr_unit": 1, "targets": targets,
                     "intervals": _intervals(a, i), "nr_regions": _nr_regions(a, i),
                     "probes": [], "sample_control": _sample_control(a, i, sfilters[i]),
                     "pause": i in (a.pause_ctx or []), "schemes": schemes[i]})
        ad = _adaptation_of(a, i)                    # damoncore extension (issue 14)
        if ad != "kernel":
            ctxs[-1][kd.ADAPTATION_FIELD] = ad
    nr_per_kd = a.nr_ctxs or [nr_ctxs]
    if sum(nr_per_kd) != nr_ctxs or any(n <= 0 for n in nr_per_kd):
        raise ArgsError(f"--nr_ctxs {' '.join(map(str, nr_per_kd))}: sums to {sum(nr_per_kd)} "
                        f"but there are {nr_ctxs} contexts")
    refresh = [kd.parse_time_ms(v, f"--refresh_stat {kd.show(v)}") for v in a.refresh_stat or []]
    kds, j = [], 0
    for k, n in enumerate(nr_per_kd):
        kds.append({"refresh_ms": refresh[k] if k < len(refresh) else 0,
                    "contexts": ctxs[j:j + n]})
        j += n
    d = {"kdamonds": kds}
    try:
        validate(d)
    except ArgsError:
        raise
    except InvalidConfig as e:
        raise ArgsError(str(e)) from e
    return d
