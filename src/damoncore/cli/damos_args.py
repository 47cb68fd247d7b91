"""The ``--damos_*`` options -> scheme dicts of the kdamonds JSON (damo's semantics)."""

from __future__ import annotations

from .. import kdamonds as kd
from ..schemes.scheme import ACTIONS, GOAL_METRICS, MIGRATE_ACTIONS, U64_MAX
from ..units import BP
from ..vocab import BP_METRICS
from .damo_options import NID_MAX, ArgsError

U32_MAX = (1 << 32) - 1

NO_ARG_FILTERS = ("anon", "active", "young", "unmapped")


def _split(items, counts, what, nr_owners, owner):
    """Distribute ``items`` by ``counts`` (one count per owner)."""
    if not counts:
        if nr_owners != 1 and items:
            raise ArgsError(f"{what} is required for multiple {owner}s")
        counts = [len(items)] + [0] * (nr_owners - 1)
    if len(counts) != nr_owners:
        raise ArgsError(f"{what} {' '.join(map(str, counts))}: {len(counts)} numbers for "
                        f"{nr_owners} {owner}(s)")
    if any(c < 0 for c in counts) or sum(counts) != len(items):
        raise ArgsError(f"{what} {' '.join(map(str, counts))}: sums to {sum(counts)} but "
                        f"{len(items)} given")
    out, i = [], 0
    for c in counts:
        out.append(items[i:i + c])
        i += c
    return out


def _filter(words):
    """New form '<allow|reject> [none] <type> [args]'; returns (dict, words used)."""
    if len(words) < 2 or words[0] not in ("allow", "reject", "deny", "block"):
        raise ArgsError(f"--damos_filter {kd.show(' '.join(words))}: expected <allow|reject> "
                        "[none] <type> [args]")
    i = 1
    matching = words[i] != "none"
    i += 0 if matching else 1
    if i >= len(words):
        raise ArgsError(f"--damos_filter {kd.show(' '.join(words))}: no filter type")
    ftype, i = words[i], i + 1
    f = {"filter_type": ftype, "matching": matching, "allow": words[0] == "allow",
         "memcg_path": None, "address_range": None, "damon_target_idx": None,
         "hugepage_size": None}
    need = {"memcg": 1, "addr": 2, "target": 1, "hugepage_size": 2}.get(ftype)
    if need is None and ftype not in NO_ARG_FILTERS:
        raise ArgsError(f"--damos_filter: unknown filter type {kd.show(ftype)}")
    if need:
        if len(words) - i < need:
            raise ArgsError(f"--damos_filter {kd.show(' '.join(words))}: {ftype} needs {need} "
                            "argument(s)")
        args = words[i:i + need]
        if ftype == "memcg":
            f["memcg_path"] = args[0]
        elif ftype == "addr":
            f["address_range"] = {"start": kd.parse_bytes(args[0], "addr filter start"),
                                  "end": kd.parse_bytes(args[1], "addr filter end")}
        elif ftype == "target":
            f["damon_target_idx"] = kd.parse_nr(args[0], "target filter index")
        else:
            f["hugepage_size"] = [kd.parse_bytes(x, "hugepage_size") for x in args]
        i += need
    return f, i


def _filters(option_words):
    """All --damos_filter options; damo's new form first, then the old one per option."""
    words = [w for ws in option_words for w in ws]
    try:
        out = []
        while words:
            f, n = _filter(words)
            out.append(f)
            words = words[n:]
        return out
    except ArgsError as new_err:
        out = []
        for ws in option_words:
            # old form: <type> <matching|nomatching> [args] [allow|reject]
            if len(ws) < 2 or ws[1] not in ("matching", "nomatching"):
                raise new_err
            rest = ws[2:]
            verdict = "reject"
            if rest and rest[-1] in ("allow", "pass", "reject", "deny", "block"):
                verdict = "allow" if rest[-1] in ("allow", "pass") else "reject"
                rest = rest[:-1]
            conv = [verdict] + ([] if ws[1] == "matching" else ["none"]) + [ws[0]] + rest
            f, n = _filter(conv)
            if n != len(conv):
                raise ArgsError(f"--damos_filter {kd.show(' '.join(ws))}: extra words") from None
            out.append(f)
        return out


def _goal(words):
    if not 2 <= len(words) <= 4:
        raise ArgsError(f"--damos_quota_goal {kd.show(' '.join(words))}: expected <metric> "
                        "<target value> [nid] [memcg path]")
    metric, target, opt = words[0], words[1], words[2:]
    if metric not in GOAL_METRICS:
        raise ArgsError(f"--damos_quota_goal: unknown metric {kd.show(metric)} "
                        f"(known: {', '.join(GOAL_METRICS)})")
    what = f"--damos_quota_goal {metric} target"
    g = {"metric": metric, "nid": None, "memcg_path": None, "current_value": 0}
    if metric in BP_METRICS:
        g["target_value"] = kd.parse_ratio(target, BP, what, limit=BP)
    elif metric == "some_mem_psi_us":
        g["target_value"] = kd.parse_time_us(target, what)
    else:
        g["target_value"] = kd.parse_nr(target, what)
    wanted = {"node_mem_used_bp": 1, "node_mem_free_bp": 1, "node_memcg_used_bp": 2,
              "node_memcg_free_bp": 2, "node_eligible_mem_bp": 1,
              "user_input": 1}.get(metric, 0)
    if len(opt) != wanted:
        raise ArgsError(f"--damos_quota_goal {kd.show(' '.join(words))}: {metric} takes {wanted} "
                        "optional value(s) (nid, memcg path, or user_input current value)")
    if metric == "user_input":
        g["current_value"] = kd.parse_nr(opt[0], "user_input current value")
    elif wanted:
        g["nid"] = kd.parse_nr(opt[0], f"--damos_quota_goal {metric} nid {kd.show(opt[0])}")
        if wanted == 2:
            g["memcg_path"] = opt[1]
    return g


# --- schemes ---------------------------------------------------------------------------
def _action(words):
    action = words[0]
    if action not in ACTIONS:
        raise ArgsError(f"--damos_action: unknown action {kd.show(action)} (known: {', '.join(ACTIONS)})")
    nid, dests = None, []
    if action in MIGRATE_ACTIONS:
        rest = words[1:]
        if len(rest) == 0 or (len(rest) > 1 and len(rest) % 2):
            raise ArgsError(f"--damos_action {kd.show(' '.join(words))}: {action} needs a target "
                            "node id or <nid> <weight> pairs")
        try:
            if len(rest) == 1:
                nid = int(rest[0])
            else:
                dests = [{"id": int(rest[i]), "weight": int(rest[i + 1])}
                         for i in range(0, len(rest), 2)]
        except ValueError:
            raise ArgsError(f"--damos_action {kd.show(' '.join(words))}: bad node id or weight") \
                from None
        if (nid is not None and not 0 <= nid <= NID_MAX) or \
                any(not 0 <= d["id"] <= NID_MAX or not 0 <= d["weight"] <= U32_MAX
                    for d in dests):
            raise ArgsError(f"--damos_action {kd.show(' '.join(words))}: bad node id or weight")
    elif len(words) > 1:
        raise ArgsError(f"--damos_action {kd.show(' '.join(words))}: {action} takes no arguments")
    return action, nid, dests


def _access_rate(text, what):
    return kd.parse_percent(text, what, limit=100)


def _pair(vals, parse, what):
    lo, hi = (parse(v, f"{what} {kd.show(v)}") for v in vals)
    if lo > hi:
        raise ArgsError(f"{what} {vals[0]} {vals[1]}: min > max")
    return lo, hi


def _quota(q, goals, tuner):
    if len(q) > 6:
        raise ArgsError(f"--damos_quotas {kd.show(' '.join(map(str, q)))}: more than 6 values")
    q = list(q) + [None] * (6 - len(q))
    w = [kd.parse_ratio(x if x is not None else 0, 1000, f"quota weight {kd.show(x)}", U32_MAX)
         for x in q[3:]]
    return {"time_ms": kd.parse_time_ms(q[0] if q[0] is not None else 0, f"quota time {kd.show(q[0])}"),
            "sz_bytes": kd.parse_bytes(q[1] if q[1] is not None else 0, f"quota space {kd.show(q[1])}"),
            "reset_interval_ms": kd.parse_time_ms(q[2] if q[2] is not None else "max",
                                                  f"quota interval {kd.show(q[2])}"),
            "fail_charge_num": 0, "fail_charge_denom": 0, "goals": goals,
            "goal_tuner": tuner or "consist", "effective_sz_bytes": 0,
            "weights": {"sz_permil": w[0], "nr_accesses_permil": w[1], "age_permil": w[2]}}


def schemes_from_args(a) -> list:
    """The --damos_* options as a list of scheme dicts (damo's semantics)."""
    damos_opts = [k for k, v in vars(a).items() if k.startswith("damos_") and v
                  and k != "damos_action"]
    n = len(a.damos_action)
    if not n:
        if damos_opts:
            raise ArgsError(f"--{damos_opts[0]} given without --damos_action")
        return []
    if a.damos_quotas and a.damos_quota_interval:
        raise ArgsError("--damos_quotas and --damos_quota_interval cannot be used together")
    for name in ("damos_quota_time", "damos_quota_space", "damos_quota_weights"):
        if getattr(a, name) and len(getattr(a, name)) > len(a.damos_quota_interval):
            # damo silently drops these without an interval; say so instead
            raise ArgsError(f"--{name} {' '.join(map(str, getattr(a, name)[-1:]))}: needs a "
                            "--damos_quota_interval for the same scheme")
    quotas = [list(q) for q in a.damos_quotas]
    for i, iv in enumerate(a.damos_quota_interval):
        t = a.damos_quota_time[i] if i < len(a.damos_quota_time) else 0
        s = a.damos_quota_space[i] if i < len(a.damos_quota_space) else 0
        w = a.damos_quota_weights[i] if i < len(a.damos_quota_weights) else [1, 1, 1]
        quotas.append([t, s, iv, *w])
    for name, vals in (("damos_sz_region", a.damos_sz_region),
                       ("damos_access_rate", a.damos_access_rate), ("damos_age", a.damos_age),
                       ("damos_apply_interval", a.damos_apply_interval),
                       ("damos_quotas", quotas), ("damos_wmarks", a.damos_wmarks),
                       ("damos_quota_goal_tuner", a.damos_quota_goal_tuner),
                       ("damos_quota_time", a.damos_quota_time),
                       ("damos_quota_space", a.damos_quota_space),
                       ("damos_quota_weights", a.damos_quota_weights),
                       ("damos_max_nr_snapshots", a.damos_max_nr_snapshots)):
        if len(vals) > n:
            raise ArgsError(f"--{name}: given {len(vals)} times for {n} scheme(s)")
    if a.damos_quota_fail_charge_ratio:
        raise ArgsError(f"--damos_quota_fail_charge_ratio "
                        f"{' '.join(a.damos_quota_fail_charge_ratio[0])}: not supported")
    if a.damos_quota_goal and (not quotas or any(len(q) < 3 for q in quotas)):
        raise ArgsError("--damos_quota_goal needs a quota reset interval "
                        "(--damos_quota_interval or the 3rd --damos_quotas value)")
    goals = _split([_goal(g) for g in a.damos_quota_goal], a.damos_nr_quota_goals,
                   "--damos_nr_quota_goals", n, "scheme")
    filters = _split(a.damos_filter, a.damos_nr_filters, "--damos_nr_filters", n, "scheme")
    out = []
    for i in range(n):
        action, nid, dests = _action(a.damos_action[i])
        sz = _pair(a.damos_sz_region[i], kd.parse_bytes, "--damos_sz_region") \
            if i < len(a.damos_sz_region) else (0, U64_MAX)
        acc = _pair(a.damos_access_rate[i], _access_rate, "--damos_access_rate") \
            if i < len(a.damos_access_rate) else (0, U64_MAX)
        age = _pair(a.damos_age[i], kd.parse_time_us, "--damos_age") \
            if i < len(a.damos_age) else (0, U64_MAX)
        tuner = a.damos_quota_goal_tuner[i] if i < len(a.damos_quota_goal_tuner) else None
        if tuner not in (None, "consist", "temporal", "distance"):
            raise ArgsError(f"--damos_quota_goal_tuner: unknown tuner {kd.show(tuner)}")
        q = _quota(quotas[i] if i < len(quotas) else [], goals[i], tuner)
        if goals[i] and i >= len(quotas):
            raise ArgsError(f"--damos_quota_goal for scheme {i} needs a quota reset interval")
        wm = a.damos_wmarks[i] if i < len(a.damos_wmarks) else ["none", 0, 0, 0, 0]
        if wm[0] not in ("none", "free_mem_rate"):
            raise ArgsError(f"--damos_wmarks: unknown metric {kd.show(wm[0])} (none, free_mem_rate)")
        s = {"action": action, "dests": dests}
        if action in MIGRATE_ACTIONS:
            s["target_nid"] = nid
        s["access_pattern"] = {"sz_bytes": {"min": sz[0], "max": sz[1]},
                               "nr_accesses": {"min": f"{acc[0]} %", "max": f"{acc[1]} %"},
                               "age": {"min": age[0], "max": age[1]}}
        s["apply_interval_us"] = kd.parse_time_us(
            a.damos_apply_interval[i], f"--damos_apply_interval {kd.show(a.damos_apply_interval[i])}") \
            if i < len(a.damos_apply_interval) else 0
        s["quotas"] = q
        s["watermarks"] = {"metric": wm[0],
                           "interval_us": kd.parse_time_us(wm[1], f"watermarks interval {kd.show(wm[1])}"),
                           **{f"{k}_permil": kd.parse_ratio(v, 1000, f"watermark {kd.show(v)}", limit=1000)
                              for k, v in zip(("high", "mid", "low"), wm[2:])}}
        s["filters"] = _filters(filters[i])
        if i < len(a.damos_max_nr_snapshots):
            v = a.damos_max_nr_snapshots[i]
            s["stats"] = {"max_nr_snapshots": kd.parse_nr(
                v, f"--damos_max_nr_snapshots {kd.show(v)}")}
        out.append(s)
    return out
