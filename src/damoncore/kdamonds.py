"""damo's kdamonds JSON (``damo args damon --format json``) <-> damoncore objects.

The layout (kdamonds -> contexts -> targets/intervals/nr_regions/sample_control/schemes)
and the field names are damo's, so a file written by ``damo args damon`` starts here and
ours starts damo.  Values are human strings ("5 ms", "200.000 MiB", "4 %") by default and
plain numbers with ``raw=True``; the reader takes either.  Where damo's human form would
round a value ("117.738 MiB"), we print the exact value instead so that every field
damoncore models survives a round trip.

Unit rules (damo's): sizes are binary ("200MB" = 200 MiB); a plain time number is in the
field's unit (us for ``*_us``, ms for ``*_ms``); a plain ratio number is in the field's unit
(bp, permil) and a "%" suffix means percent; "min"/"max" are 0 and 2**64-1.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .core.adaptation import KernelAdaptation
from .core.adaptations import ADAPTATIONS
from .core.attrs import Attrs, IntervalsGoal
from .core.context import Context
from .core.reports import SampleFilter
from .core.target import Target
from .errors import InvalidConfig
from .linux.formats import CpulistError, parse_cpulist
from .units import BP
from .vocab import BP_METRICS
from .schemes.scheme import (MIGRATE_ACTIONS, U64_MAX, AccessPattern, Filter, Quota,
                             QuotaGoal, Scheme, Watermarks)

_SZ_UNITS = {"B": 0, "K": 10, "KB": 10, "KiB": 10, "M": 20, "MB": 20, "MiB": 20,
             "G": 30, "GB": 30, "GiB": 30, "T": 40, "TB": 40, "TiB": 40,
             "P": 50, "PB": 50, "PiB": 50, "E": 60, "EB": 60, "EiB": 60}
_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
       "h": 3600 * 10**9, "d": 86400 * 10**9}
_NUM = r"[0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+"
_TIME_RE = re.compile(rf"\s*({_NUM})\s*(ns|us|ms|s|m|h|d)?\s*")
# a u64 has 20 digits; the longest value a user can mean ("18,446,744,073,709,551,615 ns")
# is far shorter than this, and longer ones would cost quadratic time to convert
_MAX_TEXT = 64


def show(text, limit: int = 40) -> str:
    """``text`` for an error message: repr'd, and cut if long (a 100k-digit value)."""
    r = repr(text)
    return r if len(r) <= limit else f"{r[:limit]}...({len(str(text))} characters)"


def _bad(what, text, problem) -> InvalidConfig:
    """'<what> <value>: <problem>', the value left out where ``what`` names it already."""
    shown = show(text)
    return InvalidConfig(f"{what}: {problem}" if shown in str(what) or str(text) in str(what)
                         else f"{what} {shown}: {problem}")


def _u64(v: int, text, what) -> int:
    if not 0 <= v <= U64_MAX:
        raise _bad(what, text, "out of the u64 range 0..2^64-1")
    return v


def _num(text, what) -> Fraction:
    s = str(text).strip().replace(",", "")
    if len(s) > _MAX_TEXT:
        raise _bad(what, text, "too long for a number")
    if not re.fullmatch(_NUM.replace(",]*", "]*"), s):
        raise _bad(what, text, "not a number")
    return Fraction(s)


def _int(v: Fraction, text, what) -> int:
    if v.denominator != 1:
        raise _bad(what, text, "not a whole number")
    return int(v)


def parse_nr(text, what="number") -> int:
    """Plain count: 1,000 / 'min' / 'max'; 0..2^64-1."""
    if isinstance(text, bool):
        raise _bad(what, text, "not a number")
    if isinstance(text, int):
        return _u64(text, text, what)
    if text in ("min", "max"):
        return 0 if text == "min" else U64_MAX
    return _u64(_int(_num(text, what), text, what), text, what)


def parse_bytes(text, what="size") -> int:
    """'200MB', '4 KiB', '4096', '200.000 MiB' -> bytes (binary units, as damo); 0..2^64-1."""
    if isinstance(text, bool):
        raise _bad(what, text, "not a size (e.g. 4096, 4K, 200MB)")
    if isinstance(text, int):
        return _u64(text, text, what)
    s = str(text).strip()
    if s in ("min", "max"):
        return 0 if s == "min" else U64_MAX
    m = re.fullmatch(rf"({_NUM})\s*([A-Za-z]*)", s) if len(s) <= _MAX_TEXT else None
    if not m or m.group(2) not in _SZ_UNITS and m.group(2) != "":
        raise _bad(what, text, "not a size (e.g. 4096, 4K, 200MB)")
    v = Fraction(m.group(1).replace(",", "")) * (1 << _SZ_UNITS.get(m.group(2), 0))
    return _u64(int(v), text, what)


def _parse_time(text, unit_ns: int, what: str) -> int:
    if isinstance(text, bool):
        raise _bad(what, text, "not a time (e.g. 5ms, 1s, 1m, 100us)")
    if isinstance(text, int):
        return _u64(text, text, what)
    s = str(text).strip()
    if s in ("min", "max"):
        return 0 if s == "min" else U64_MAX
    if len(s) > _MAX_TEXT:
        raise _bad(what, text, "too long for a time")
    pos, total, n = 0, Fraction(0), 0
    while pos < len(s):
        m = _TIME_RE.match(s, pos)
        if not m or m.end() == pos or (m.group(2) is None and n + 1 < len(s.split())):
            raise _bad(what, text, "not a time (e.g. 5ms, 1s, 1m, 100us)")
        total += Fraction(m.group(1).replace(",", "")) * (_NS[m.group(2)] if m.group(2)
                                                          else unit_ns)
        pos, n = m.end(), n + 1
    if n == 0:
        raise _bad(what, text, "empty time")
    return _u64(int(total / unit_ns), text, what)


def parse_time_ns(text, what="time") -> int:
    return _parse_time(text, 1, what)


def parse_time_us(text, what="interval") -> int:
    return _parse_time(text, _NS["us"], what)


def parse_time_ms(text, what="interval") -> int:
    return _parse_time(text, _NS["ms"], what)


def parse_ratio(text, scale: int, what="ratio", limit: int | None = None) -> int:
    """'4%' / '4 %' -> 4 * scale / 100; a plain number is already in the unit (bp, permil).

    ``limit`` (e.g. ``scale``: at most 100%) bounds every value but 'max'.
    """
    if isinstance(text, bool):
        raise _bad(what, text, "not a number")
    if isinstance(text, (int, float)):
        if text != text or text in (float("inf"), float("-inf")):
            raise _bad(what, text, "not a number")
        v = Fraction(text)
    else:
        s = str(text).strip()
        if s in ("min", "max"):
            return 0 if s == "min" else U64_MAX
        if s.endswith("%"):
            v = _num(s[:-1], what) * scale / 100
        else:
            v = _num(s, what)
    v = _u64(_int(v, text, what), text, what)
    if limit is not None and v > limit:
        raise _bad(what, text, f"above {fmt_ratio(limit, scale)}".replace(" %", "%"))
    return v


def parse_percent(text, what="access rate", limit: int | None = None) -> int:
    return parse_ratio(text, 100, what, limit)


# --- human formatting (damo's _damo_fmt_str behaviour; exact where damo would round) -------
def fmt_nr(n, raw=False):
    if raw:
        return int(n)
    return f"{int(n):,}"


def fmt_sz(n, raw=False, exact=True):
    """damo's format_sz; ``exact`` prints bytes where 3 decimals would round (for JSON)."""
    if raw:
        return int(n)
    if n == U64_MAX:
        return "max"
    for shift, name in ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"),
                        (10, "KiB")):
        if n > 1 << shift:
            s = f"{n / (1 << shift):.3f} {name}"
            return s if not exact or parse_bytes(s) == n else f"{n} B"
    return f"{n} B"


def fmt_ns(ns: int) -> str:
    """damo's format_time_ns: the largest unit with up to 3 decimals."""
    if ns >= _NS["h"]:
        h, rest = divmod(ns, _NS["h"])
        return f"{h} h" + (f" {fmt_ns(rest)}" if rest else "")
    if ns >= _NS["m"]:
        mi, rest = divmod(ns, _NS["m"])
        if rest == 0:
            return f"{mi} m"
        if rest % _NS["s"] == 0:
            return f"{mi} m {rest // _NS['s']} s"
        return f"{mi} m {rest / _NS['s']:.3f} s"
    for u in ("s", "ms", "us"):
        if ns >= _NS[u]:
            return f"{ns // _NS[u]} {u}" if ns % _NS[u] == 0 else f"{ns / _NS[u]:.3f} {u}"
    return f"{ns} ns"


def fmt_time_us(us, raw=False, exact=True):
    if raw:
        return int(us)
    if us >= U64_MAX:
        return "max"
    s = fmt_ns(us * 1000)
    return s if not exact or parse_time_us(s) == us else f"{us} us"


def _fmt_exact(value, unit_ns, raw):
    """damo's format_time_*_exact: every unit spelled out ("1 m 30 s"), '0 ns' for 0."""
    if raw:
        return int(value)
    if value >= U64_MAX:
        return "max"
    ns, words = value * unit_ns, []
    for u in ("d", "h", "m", "s", "ms", "us", "ns"):
        if ns >= _NS[u]:
            q, ns = divmod(ns, _NS[u])
            words.append(f"{q:,} {u}")
    return " ".join(words) or "0 ns"


def fmt_time_us_exact(us, raw=False):
    return _fmt_exact(us, _NS["us"], raw)


def fmt_time_ms_exact(ms, raw=False):
    return _fmt_exact(ms, _NS["ms"], raw)


def fmt_ratio(value, scale, raw=False):
    """bp (scale 10000) or permil (1000) as damo's '0.5 %'."""
    if raw:
        return int(value)
    pct = Fraction(value) * 100 / scale
    whole = int(pct)
    frac = f"{float(pct - whole):.7f}".rstrip("0")[2:]
    return f"{whole:,}.{frac} %" if frac else f"{whole:,} %"


# --- cpulists (sample filters) ----------------------------------------------------------
IDLIST_MAX = 1 << 22    # PID_MAX_LIMIT; far above any cpu number
IDLIST_LEN = 1 << 16


def parse_idlist(text, what="cpu list") -> frozenset:
    """'0-4,7' -> {0,1,2,3,4,7}: linux.formats' cpulist parser, ids bounded, empty refused."""
    try:
        ids = parse_cpulist(text, what, IDLIST_MAX, IDLIST_LEN)
    except CpulistError as e:
        raise _bad(what, text, e.problem) from None
    if not ids:
        raise _bad(what, text, "not an id list (e.g. 0-4,7)")
    return frozenset(ids)


def fmt_idlist(ids) -> str:
    ids, parts, i = sorted(ids), [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)



# --- objects -> dict ----------------------------------------------------------------------
def ops_space(ops) -> str:
    """The damo ``ops`` name (paddr, vaddr, fvaddr) of a backend: its declared space."""
    return str(ops.space)


def _region(a, b, raw):
    return {"start": fmt_nr(a, raw), "end": fmt_nr(b, raw)}


def _pattern_to_dict(p: AccessPattern, raw):
    if p.nr_accesses_unit == "percent":
        nr = [f"{fmt_nr(v, raw)} %" for v in (p.min_nr_accesses, p.max_nr_accesses)]
    else:
        nr = [f"{fmt_nr(v, raw)} samples" for v in (p.min_nr_accesses, p.max_nr_accesses)]
    if p.age_unit == "us":
        age = [fmt_time_us_exact(v, raw) for v in (p.min_age, p.max_age)]
    else:
        age = [f"{fmt_nr(v, raw)} aggr_intervals" for v in (p.min_age, p.max_age)]
    return {"sz_bytes": {"min": fmt_sz(p.min_sz, raw), "max": fmt_sz(p.max_sz, raw)},
            "nr_accesses": {"min": nr[0], "max": nr[1]},
            "age": {"min": age[0], "max": age[1]}}


def _filter_to_dict(f: Filter, raw):
    return {"filter_type": f.filter_type, "matching": f.matching, "allow": f.allow,
            "memcg_path": f.memcg_path,
            "address_range": _region(*f.address_range, raw) if f.address_range else None,
            "damon_target_idx": fmt_nr(f.target_idx, raw) if f.target_idx is not None
            else None,
            "hugepage_size": [fmt_sz(x, raw) for x in f.hugepage_size]
            if f.hugepage_size else None}


def scheme_to_dict(s: Scheme, raw=False) -> dict:
    """One scheme as damo's kdamonds JSON scheme object."""
    q = s.quota
    d = {"action": s.action,
         "dests": [{"id": n, "weight": w} for n, w in s.dests]}
    if s.action in MIGRATE_ACTIONS:
        d["target_nid"] = s.target_nid
    d["access_pattern"] = _pattern_to_dict(s.access_pattern, raw)
    d["apply_interval_us"] = fmt_time_us(s.apply_interval_us, raw)
    d["quotas"] = {
        "time_ms": fmt_time_ms_exact(q.time_ms, raw),
        "sz_bytes": fmt_sz(q.sz_bytes, raw),
        "reset_interval_ms": fmt_time_ms_exact(q.reset_interval_ms, raw),
        "fail_charge_num": fmt_nr(0, raw), "fail_charge_denom": fmt_nr(0, raw),
        "goals": [{"metric": g.metric,
                   "nid": fmt_nr(g.nid, raw) if g.nid is not None else None,
                   "memcg_path": g.memcg_path,
                   "target_value": fmt_nr(g.target_value, raw),
                   "current_value": fmt_nr(g.current_value, raw)} for g in q.goals],
        "goal_tuner": q.goal_tuner,
        "effective_sz_bytes": fmt_sz(s.quota_state.esz, raw),
        "weights": {"sz_permil": fmt_ratio(q.weight_sz, 1000, raw),
                    "nr_accesses_permil": fmt_ratio(q.weight_nr_accesses, 1000, raw),
                    "age_permil": fmt_ratio(q.weight_age, 1000, raw)}}
    w = s.watermarks
    d["watermarks"] = {"metric": w.metric, "interval_us": fmt_time_us_exact(w.interval_us, raw),
                       "high_permil": fmt_ratio(w.high, 1000, raw),
                       "mid_permil": fmt_ratio(w.mid, 1000, raw),
                       "low_permil": fmt_ratio(w.low, 1000, raw)}
    d["filters"] = [_filter_to_dict(f, raw) for f in s.filters]
    if s.max_nr_snapshots:
        # damo keeps max_nr_snapshots with the stats (sysfs: schemes/<N>/stats/); written
        # only when set, so that the default document stays damo's ``args damon`` output
        d["stats"] = {"max_nr_snapshots": fmt_nr(s.max_nr_snapshots, raw)}
    return d


def _sample_filter_to_dict(f: SampleFilter):
    return {"filter_type": f.filter_type, "matching": f.matching, "allow": f.allow,
            "cpumask": fmt_idlist(f.cpus) if f.filter_type == "cpumask" else None,
            "tid_arr": fmt_idlist(f.tids) if f.filter_type == "threads" else None}


def context_to_dict(ctx: Context, raw=False) -> dict:
    a, g = ctx.attrs, ctx.attrs.intervals_goal
    return {
        "ops": ops_space(ctx.ops),
        "addr_unit": fmt_nr(1, raw) if raw else "1 B",
        "targets": [{"pid": t.pid, "obsolete": t.obsolete,
                     "regions": [_region(s, e, raw) for s, e in t.ranges]}
                    for t in ctx.targets],
        "intervals": {"sample_us": fmt_time_us(a.sample_us, raw),
                      "aggr_us": fmt_time_us(a.aggr_us, raw),
                      "ops_update_us": fmt_time_us(a.ops_update_us, raw),
                      "intervals_goal": {"access_bp": fmt_ratio(g.access_bp, BP, raw),
                                         "aggrs": fmt_nr(g.aggrs, raw),
                                         "min_sample_us": fmt_time_us(g.min_sample_us, raw),
                                         "max_sample_us": fmt_time_us(g.max_sample_us, raw)}},
        "nr_regions": {"min": fmt_nr(a.min_nr_regions, raw),
                       "max": fmt_nr(a.max_nr_regions, raw)},
        "probes": [],
        "sample_control": {
            "primitives_enabled": {"page_table": "page_table" in ctx.primitives,
                                   "page_fault": "page_fault" in ctx.primitives},
            "sample_filters": [_sample_filter_to_dict(f) for f in ctx.sample_filters]},
        "pause": ctx.pause,
        "schemes": [scheme_to_dict(s, raw) for s in ctx.schemes],
        **_adaptation_to_dict(ctx),
    }


#: the context field naming its region adaptation: a damoncore extension that damo ignores;
#: written only when it is not the kernel's algorithm (the default), so damo's files match
ADAPTATION_FIELD = "damoncore_adaptation"


def _adaptation_to_dict(ctx) -> dict:
    ad = ctx.adaptation
    return {} if type(ad) is KernelAdaptation else {ADAPTATION_FIELD: ad.name}


def adaptation_from_name(name, what=ADAPTATION_FIELD):
    """A new instance of the adaptation registered as ``name``."""
    if not isinstance(name, str) or name not in ADAPTATIONS:
        raise InvalidConfig(f"{what} {name!r}: unknown adaptation (known: "
                            f"{', '.join(ADAPTATIONS)})")
    return ADAPTATIONS[name]()


def kdamonds_to_dict(kdamonds, raw=False) -> dict:
    """``{"kdamonds": [...]}`` for a list of kdamonds, each a list of contexts."""
    return {"kdamonds": [{"refresh_ms": 0,
                          "contexts": [context_to_dict(c, raw) for c in ctxs]}
                         for ctxs in kdamonds]}


# --- dict -> objects ----------------------------------------------------------------------
# The shape of damo's kdamonds JSON: which keys hold an object, a list, a number (an int or
# damo's human string), a string, a boolean; ``None`` in a tuple means the key may be null.
# Keys left out take their defaults; unknown keys are ignored (newer damo versions add some).
_N, _S, _B = "number", "string", "boolean"
_MINMAX = {"min": _N, "max": _N}
_REGION = {"start": _N, "end": _N}
_SCHEMA_SCHEME = {
    "action": _S, "dests": [{"id": _N, "weight": _N}], "target_nid": (_N, None),
    "access_pattern": {"sz_bytes": _MINMAX, "nr_accesses": _MINMAX, "age": _MINMAX},
    "apply_interval_us": _N,
    "quotas": {"time_ms": _N, "sz_bytes": _N, "reset_interval_ms": _N,
               "fail_charge_num": _N, "fail_charge_denom": _N, "goal_tuner": _S,
               "effective_sz_bytes": (_N, None),
               "goals": [{"metric": _S, "nid": (_N, None), "memcg_path": (_S, None),
                          "target_value": _N, "current_value": _N}],
               "weights": {"sz_permil": _N, "nr_accesses_permil": _N, "age_permil": _N}},
    "watermarks": {"metric": _S, "interval_us": _N, "high_permil": _N, "mid_permil": _N,
                   "low_permil": _N},
    "filters": [{"filter_type": _S, "matching": _B, "allow": _B, "filter_pass": _B,
                 "memcg_path": (_S, None), "address_range": (_REGION, None),
                 "damon_target_idx": (_N, None), "hugepage_size": (_MINMAX, [_N], None)}],
    "stats": ({"max_nr_snapshots": _N}, None),
}
_SCHEMA = {"kdamonds": [{
    "refresh_ms": (_N, None),
    "contexts": [{
        "ops": _S, "addr_unit": _N, "pause": (_B, _S),
        "targets": [{"pid": (_N, None), "obsolete": (_B, _S), "regions": [_REGION]}],
        "intervals": {"sample_us": _N, "aggr_us": _N, "ops_update_us": _N,
                      "intervals_goal": {"access_bp": _N, "aggrs": _N,
                                         "min_sample_us": _N, "max_sample_us": _N}},
        "nr_regions": _MINMAX,
        "sample_control": {"primitives_enabled": {"page_table": _B, "page_fault": _B},
                           "sample_filters": [{"filter_type": _S, "matching": _B,
                                               "allow": _B, "cpumask": (_S, None),
                                               "tid_arr": (_S, None)}]},
        "schemes": [_SCHEMA_SCHEME]}]}]}
_MAX_ITEMS = 1 << 16
OPS = ("paddr", "vaddr", "fvaddr")
_U32 = (1 << 32) - 1     # the kernel's unsigned int fields (quota weights)
_NID_MAX = (1 << 31) - 1  # node ids are ints    # far more contexts, targets, schemes, regions than anyone runs


def _fits(v, spec) -> bool:
    if spec is None:
        return v is None
    if spec == _N:
        return (isinstance(v, (int, float, str)) and not isinstance(v, bool))
    if spec == _S:
        return isinstance(v, str)
    if spec == _B:
        return isinstance(v, bool)
    if isinstance(spec, dict):
        return isinstance(v, dict)
    return isinstance(v, list)


def _kind(spec) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    return f"a {spec}"


def check_shape(v, spec=None, where="kdamonds JSON") -> None:
    """Raise :class:`InvalidConfig` naming the first value of the wrong type (a list where
    an object belongs, null where a number belongs, ...) by its path in the document."""
    spec = _SCHEMA if spec is None else spec
    alts = spec if isinstance(spec, tuple) else (spec,)
    if not any(_fits(v, a) for a in alts):
        got = "null" if v is None else type(v).__name__.replace("dict", "object") \
            .replace("str", "string").replace("bool", "boolean")
        raise InvalidConfig(f"{where}: expected {' or '.join(map(_kind, alts))}, got {got} "
                            f"{show(v, 30)}")
    sub = next(a for a in alts if _fits(v, a))
    if isinstance(sub, dict):
        for key, s in sub.items():
            if key in v:
                check_shape(v[key], s, f"{where}.{key}" if where != "kdamonds JSON" else key)
    elif isinstance(sub, list):
        if len(v) > _MAX_ITEMS:
            raise InvalidConfig(f"{where}: {len(v)} entries, more than {_MAX_ITEMS}")
        for i, x in enumerate(v):
            check_shape(x, sub[0], f"{where}[{i}]")


def _get(d, key, what, default=None):
    if not isinstance(d, dict):
        raise InvalidConfig(f"{what}: expected an object, got {d!r}")
    return d.get(key, default)


def _unit_pair(kv, parse_plain, units, what):
    """('5 %', 'max') -> ([5, MAX], 'percent'); the unit word decides, like damo."""
    vals, unit = [], None
    for key in ("min", "max"):
        text = _get(kv, key, what, key)
        s = str(text).strip()
        u = next((name for word, name in units if s.endswith(word)), None)
        if u is not None:
            word = next(w for w, n in units if n == u and s.endswith(w))
            v = parse_nr(s[: -len(word)].strip() or "x", what)
        else:
            u, v = "plain", parse_plain(text, what)
        if unit not in (None, u):
            raise InvalidConfig(f"{what}: min and max use different units ({kv!r})")
        unit = u
        vals.append(v)
    return vals, unit


def _pattern_from_dict(kv) -> AccessPattern:
    kv = kv or {}
    sz = _get(kv, "sz_bytes", "access_pattern", {}) or {}
    nr, nr_unit = _unit_pair(_get(kv, "nr_accesses", "access_pattern", {}) or {},
                             parse_percent, (("%", "percent"), ("samples", "samples")),
                             "nr_accesses")
    age, age_unit = _unit_pair(_get(kv, "age", "access_pattern", {}) or {}, parse_time_us,
                               (("aggr_intervals", "aggr_intervals"),), "age")
    if nr_unit != "samples":
        for v, key in zip(nr, ("min", "max")):
            if 100 < v < U64_MAX:
                raise InvalidConfig(f"access_pattern nr_accesses {key} {v} %: above 100%")
    return AccessPattern(
        min_sz=parse_bytes(sz.get("min", "min"), "sz_bytes min"),
        max_sz=parse_bytes(sz.get("max", "max"), "sz_bytes max"),
        min_nr_accesses=nr[0], max_nr_accesses=nr[1],
        nr_accesses_unit="samples" if nr_unit == "samples" else "percent",
        min_age=age[0], max_age=age[1],
        age_unit="aggr_intervals" if age_unit == "aggr_intervals" else "us")


def _range_from(kv, what):
    if kv is None:
        return None
    if isinstance(kv, dict):
        return (parse_bytes(kv.get("start"), what), parse_bytes(kv.get("end"), what))
    return (parse_bytes(kv[0], what), parse_bytes(kv[1], what))


def _filter_from_dict(kv) -> Filter:
    allow = kv.get("allow", kv.get("filter_pass", False))
    ftype = kv.get("filter_type")
    tidx = kv.get("damon_target_idx")
    return Filter(ftype, matching=bool(kv.get("matching", True)), allow=bool(allow),
                  memcg_path=kv.get("memcg_path") or None,
                  address_range=_range_from(kv.get("address_range"), "filter address_range")
                  if ftype == "addr" else None,
                  target_idx=parse_nr(tidx, "damon_target_idx") if tidx is not None else None,
                  hugepage_size=_range_from(kv.get("hugepage_size"), "hugepage_size")
                  if ftype == "hugepage_size" else None)




def _goal_from_dict(kv) -> QuotaGoal:
    metric = kv.get("metric", "user_input")
    tv = kv.get("target_value")
    if metric in BP_METRICS:
        target = parse_ratio(tv, BP, f"{metric} target", limit=BP)
    elif metric == "some_mem_psi_us":
        target = parse_time_us(tv, f"{metric} target")
    else:
        target = parse_nr(tv, f"{metric} target")
    nid = kv.get("nid")
    return QuotaGoal(metric, target,
                     current_value=parse_nr(kv.get("current_value", 0), "current_value"),
                     nid=parse_nr(nid, "goal nid") if nid is not None else None,
                     memcg_path=kv.get("memcg_path"))


def _quota_from_dict(kv) -> Quota:
    kv = kv or {}
    for k in ("fail_charge_num", "fail_charge_denom"):
        if parse_nr(kv.get(k, 0), k) != 0:
            raise InvalidConfig(f"quotas {k} {kv[k]!r}: not supported by damoncore")
    w = kv.get("weights") or {}
    return Quota(time_ms=parse_time_ms(kv.get("time_ms", 0), "quota time_ms"),
                 sz_bytes=parse_bytes(kv.get("sz_bytes", 0), "quota sz_bytes"),
                 reset_interval_ms=parse_time_ms(kv.get("reset_interval_ms", "max"),
                                                 "quota reset_interval_ms"),
                 weight_sz=parse_ratio(w.get("sz_permil", 0), 1000, "sz_permil", _U32),
                 weight_nr_accesses=parse_ratio(w.get("nr_accesses_permil", 0), 1000,
                                                "nr_accesses_permil", _U32),
                 weight_age=parse_ratio(w.get("age_permil", 0), 1000, "age_permil", _U32),
                 goals=[_goal_from_dict(g) for g in kv.get("goals", [])],
                 goal_tuner=kv.get("goal_tuner") or "consist")


def scheme_from_dict(kv) -> Scheme:
    wm = kv.get("watermarks") or {}
    tnid = kv.get("target_nid")
    # the run-time stats of a damo status dump are ignored; max_nr_snapshots is a parameter
    max_snaps = (kv.get("stats") or {}).get("max_nr_snapshots", 0)
    return Scheme(
        access_pattern=_pattern_from_dict(kv.get("access_pattern")),
        action=kv.get("action", "stat"),
        target_nid=parse_nr(tnid, "target_nid") if tnid is not None else None,
        dests=[(parse_nr(x["id"], "dest id"), parse_nr(x["weight"], "dest weight"))
               for x in kv.get("dests", [])],
        apply_interval_us=parse_time_us(kv.get("apply_interval_us", 0), "apply_interval_us"),
        quota=_quota_from_dict(kv.get("quotas")),
        watermarks=Watermarks(
            metric=wm.get("metric", "none"),
            interval_us=parse_time_us(wm.get("interval_us", 0), "watermarks interval_us"),
            high=parse_ratio(wm.get("high_permil", 0), 1000, "high_permil", limit=1000),
            mid=parse_ratio(wm.get("mid_permil", 0), 1000, "mid_permil", limit=1000),
            low=parse_ratio(wm.get("low_permil", 0), 1000, "low_permil", limit=1000)),
        filters=[_filter_from_dict(f) for f in kv.get("filters", [])],
        max_nr_snapshots=parse_nr(max_snaps, "max_nr_snapshots"))


def parse_bool(v, what) -> bool:
    """A JSON boolean, or the sysfs/damo words for one (Y/N, true/false)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("y", "yes", "true", "1", "n", "no",
                                                     "false", "0"):
        return v.strip().lower() in ("y", "yes", "true", "1")
    raise _bad(what, v, "expected true or false (or Y/N)")


def _sample_filter_from_dict(kv) -> SampleFilter:
    t = kv.get("filter_type")
    return SampleFilter(t, allow=bool(kv.get("allow", True)),
                        matching=bool(kv.get("matching", True)),
                        cpus=parse_idlist(kv["cpumask"], "cpumask")
                        if t == "cpumask" else frozenset(),
                        tids=parse_idlist(kv["tid_arr"], "tid_arr")
                        if t == "threads" else frozenset())


def check_aggr_samples(sample_us: int, aggr_us: int, what: str) -> None:
    """nr_accesses is a u32: at most 2^32-1 samples per aggregation."""
    if sample_us > 0 and aggr_us // sample_us > _U32:
        raise InvalidConfig(f"{what} {aggr_us} us / {sample_us} us: more than 2^32-1 "
                            f"samples per aggregation (nr_accesses is a u32)")


def context_from_dict(kv, ops) -> Context:
    """One context of the kdamonds JSON, running on ``ops``."""
    if parse_bytes(kv.get("addr_unit", 1), "addr_unit") != 1:
        raise InvalidConfig(f"addr_unit {kv['addr_unit']!r}: only 1 is supported")
    if kv.get("probes"):
        raise InvalidConfig("probes: data attribute probes are not supported by damoncore")
    pause = parse_bool(kv.get("pause", False), "pause")
    iv = kv.get("intervals") or {}
    g = iv.get("intervals_goal") or {}
    nr = kv.get("nr_regions") or {}
    attrs = Attrs(
        sample_us=parse_time_us(iv.get("sample_us", "5ms"), "sample_us"),
        aggr_us=parse_time_us(iv.get("aggr_us", "100ms"), "aggr_us"),
        ops_update_us=parse_time_us(iv.get("ops_update_us", "1s"), "ops_update_us"),
        min_nr_regions=parse_nr(nr.get("min", 10), "nr_regions min"),
        max_nr_regions=parse_nr(nr.get("max", 1000), "nr_regions max"),
        intervals_goal=IntervalsGoal(
            access_bp=parse_ratio(g.get("access_bp", 0), BP, "access_bp", limit=BP),
            aggrs=parse_nr(g.get("aggrs", 0), "aggrs"),
            min_sample_us=parse_time_us(g.get("min_sample_us", 0), "min_sample_us"),
            max_sample_us=parse_time_us(g.get("max_sample_us", 0), "max_sample_us")))
    check_aggr_samples(attrs.sample_us, attrs.aggr_us, "aggr_us / sample_us")
    targets = []
    for i, t in enumerate(kv.get("targets", [])):
        pid = t.get("pid")
        if pid is not None:
            pid = parse_nr(pid, f"target {i} pid")
            if not 0 < pid <= _NID_MAX:
                raise InvalidConfig(f"target {i} pid {pid}: not a process id")
        ranges = [_range_from(r, f"target {i} region") for r in t.get("regions", [])]
        for a, b in ranges:
            if a >= b:
                raise InvalidConfig(f"target {i} region {a}-{b}: start >= end")
        tgt = Target(pid=pid, ranges=ranges)
        # a commit source's mark: the running target of this index is to be removed
        tgt.obsolete = parse_bool(t.get("obsolete", False), f"target {i} obsolete")
        targets.append(tgt)
    if not targets:
        raise InvalidConfig("targets: a context needs at least one target")
    sc = kv.get("sample_control") or {}
    pe = sc.get("primitives_enabled") or {"page_table": True}
    prims = tuple(p for p in ("page_table", "page_fault") if pe.get(p))
    return Context(ops, targets=targets, attrs=attrs,
                   adaptation=adaptation_from_name(kv.get(ADAPTATION_FIELD, "kernel")),
                   schemes=[scheme_from_dict(s) for s in kv.get("schemes", [])],
                   primitives=prims, pause=pause,
                   sample_filters=[_sample_filter_from_dict(f)
                                   for f in sc.get("sample_filters", [])])


def build_contexts(kdamonds_dict, ops_factory) -> list:
    """One list of :class:`Context` per kdamond; ``ops_factory(ctx_dict) -> Operations``.

    Every malformed value raises :class:`InvalidConfig` naming it.
    """
    check_shape(kdamonds_dict, {"kdamonds": _SCHEMA["kdamonds"]})
    kds = kdamonds_dict.get("kdamonds")
    if not isinstance(kds, list):
        raise InvalidConfig("kdamonds: expected a list of kdamonds")
    check_shape(kdamonds_dict)
    out = []
    for i, kd in enumerate(kds):
        ctxs = []
        for j, c in enumerate(kd.get("contexts", [])):
            if c.get("ops", "paddr") not in OPS:
                raise InvalidConfig(f"kdamond {i} context {j}: ops {show(c['ops'])} is not "
                                    f"one of {', '.join(OPS)}")
            try:
                ctxs.append(context_from_dict(c, ops_factory(c)))
            except InvalidConfig as e:
                raise InvalidConfig(f"kdamond {i} context {j}: {e}") from e
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                raise InvalidConfig(f"kdamond {i} context {j}: bad field "
                                    f"({type(e).__name__}: {e})") from e
        out.append(ctxs)
    return out
