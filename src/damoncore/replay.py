"""Scheme replay: what DAMOS schemes would have done over a recorded access pattern.

:func:`replay` runs the real scheme engine (:func:`damoncore.schemes.apply.apply_schemes`:
patterns, scores, quotas and their windows, goal tuners, watermarks, core filters)
deterministically over the aggregations of a record (ours or damo's), on a simulated
placement (:class:`damoncore.sim.placement.Placement`) instead of memory: no root, no
kernel.  Each recorded aggregation is one *window*: the engine gets that aggregation's
regions (start, end, nr_accesses, age), the intervals in force, the sample count and the
clock time the recording context had when its schemes applied, then every due scheme
applies; what each scheme tried, applied and moved in the window is reported
(:class:`WindowStats`).

What makes a replay reproduce a recorded run exactly (same schemes, apply interval a
multiple of the aggregation interval, no ops filters, no time quota): a record written by
:class:`damoncore.records.RecordWriter` from a run with schemes holds the regions as the
schemes saw them (after the merge, before any applied; ``Snapshot.schemes_view``) and the
moving sum where it differs from ``nr_accesses * 10000``, so every pattern, score and quota
decision is the run's; quota windows, apply times and goal feedback follow the same clock.
The record's own per-scheme stats (``Snapshot.scheme_stats``) come along in
:attr:`WindowStats.recorded` for comparison.  A run tuned while it recorded wrote the
schemes each commit set (``Snapshot.schemes_committed``); replaying the record's own
schemes (``follow_commits``) commits them at the same windows, with the same semantics
(:func:`damoncore.core.commit.commit_schemes`: stats and quota charge state kept).

Where a replay can only approximate: a damo (kernel) record holds the regions after the
schemes applied (ages of regions acted upon are reset); ages are the record's, so the
replayed schemes' own age resets last only for the window they happen in; an apply
interval that is not a multiple of the aggregation interval applies at the first
aggregation after it is due; ``young`` is judged per region (accessed in the aggregation);
time quotas charge the bytes tried at a modelled throughput; node goals need node
capacities.  Ops filters other than ``young`` and goals on metrics a placement cannot
give (PSI, memcg, LRU lists) are refused up front (:func:`check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import kdamonds as kd
from .core.attrs import IntervalsGoal
from .core.commit import commit_schemes
from .core.regions import Regions
from .core.target import Target
from .errors import ActionNotSupported, InvalidConfig
from .ops.replay import DEFAULT_THROUGHPUT, ReplayOps, unsupported
from .records import STATS_KEYS
from .schemes.apply import apply_schemes
from .sim.placement import Placement
from .units import BP

#: the per-window counters (a subset of the record's stats keys, plus the effective quota)
WINDOW_KEYS = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed",
               "qt_exceeds", "sz_migrated")


@dataclass
class WindowStats:
    """One scheme in one recorded aggregation.

    Counters are this window's (deltas of the kernel's cumulative ``damos_stat``):
    ``sz_tried``/``nr_tried`` bytes/regions the scheme tried, ``sz_applied`` bytes its
    action took effect on, ``sz_migrated`` bytes moved between nodes, ``migrated``
    {(src, dst): bytes}; ``effective_sz_bytes`` the quota in force (0: unlimited);
    ``goals`` each goal's current value.  ``due``: the scheme applied in this window.
    ``recorded``: the recorded run's own counters for this window and scheme (same keys),
    where the record holds them.
    """

    kdamond_idx: int
    context_idx: int
    scheme_idx: int
    window: int
    start_us: int
    end_us: int
    due: bool
    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    qt_exceeds: int = 0
    sz_migrated: int = 0
    effective_sz_bytes: int = 0
    migrated: dict = field(default_factory=dict)
    goals: list = field(default_factory=list)
    recorded: dict | None = None


@dataclass
class ReplayResult:
    """Every window of every scheme, in time order; the contexts as replayed
    ((kdamond_idx, context_idx, Context)); the final placement; notes on approximations."""

    windows: list
    contexts: list
    placement: Placement
    notes: list = field(default_factory=list)


def _groups(records) -> dict:
    """{(kdamond_idx, context_idx): [records sorted by target id]} in index order."""
    out = {}
    for r in records:
        out.setdefault((r.kdamond_idx, r.context_idx), []).append(r)
    return {k: sorted(v, key=lambda r: r.target_id) for k, v in sorted(out.items())}


def _target_index(recs) -> list:
    """The target index of each record: its target id when those are small distinct
    numbers (ours, damo's from sysfs), else its rank (kernel pointers from traces)."""
    ids = [r.target_id for r in recs]
    if len(set(ids)) == len(ids) and all(0 <= i < 1 << 16 for i in ids):
        return ids
    return list(range(len(recs)))


def check(contexts, placement: Placement) -> None:
    """InvalidConfig naming the first scheme a replay cannot run (before anything runs)."""
    for ki, ci, ctx in contexts:
        for si, s in enumerate(ctx.schemes):
            _check_scheme(f"kdamond {ki} context {ci} scheme {si} ({s.action})", ctx, s,
                          placement)


def _check_scheme(where, ctx, s, placement: Placement) -> None:
    why = unsupported(s)
    if why:
        raise InvalidConfig(f"{where}: {why}")
    try:
        ctx.check_scheme(s)
    except ActionNotSupported as e:
        raise InvalidConfig(f"{where}: {e}") from None
    need = [g.nid for g in s.quota.goals
            if g.metric in ("node_mem_used_bp", "node_mem_free_bp")]
    if s.quota.goal_tuner == "distance":
        need += [g.nid for g in s.quota.goals]
    if s.watermarks.metric == "free_mem_rate":
        need += placement.nodes
    for nid in need:
        if nid not in placement.capacities:
            raise InvalidConfig(f"{where}: its goals or watermarks need node {nid}'s "
                                f"capacity (--node_capacity {nid} <size>)")


def _commits(run, placement: Placement) -> dict:
    """{window: [Scheme]}: the schemes the recorded run's online commits set, parsed and
    checked (InvalidConfig naming the window) before anything runs."""
    out = {}
    for k in range(run.nr_windows):
        c = next((s.schemes_committed for _, s in run.snaps(k)
                  if s.schemes_committed is not None), None)
        if c is None:
            continue
        where = f"kdamond {run.kdamond_idx} context {run.context_idx} window {k}"
        try:
            schemes = [kd.scheme_from_dict(x) for x in c["schemes"]]
        except InvalidConfig as e:
            raise InvalidConfig(f"{where}: the schemes a commit set: {e}") from None
        for si, s in enumerate(schemes):
            _check_scheme(f"{where} scheme {si} ({s.action}), set by a commit", run.ctx, s,
                          placement)
        out[k] = (c["time_us"], c["sample_intervals"], schemes)
    return out


class _Run:
    """One recorded context replayed: its windows, in order."""

    def __init__(self, key, ctx, recs):
        self.kdamond_idx, self.context_idx = key
        self.ctx, self.recs = ctx, recs
        self.index = _target_index(recs)
        space = "vaddr" if any(r.pid is not None for r in recs) else "paddr"
        ctx.ops.space = space
        n = max(self.index) + 1 if self.index else 0
        targets = [Target() for _ in range(n)]
        for i, r in zip(self.index, recs):
            targets[i] = Target(pid=r.pid)
        for t in targets:
            t.obsolete = True
        ctx.targets = targets
        self.nr_windows = max((len(r.snapshots) for r in recs), default=0)
        self.k = 0
        self.stats_before = None
        self.commits = {}     # window -> (clock us, sample intervals, schemes) of a commit

    def snaps(self, k):
        return [(i, r.snapshots[k]) for i, r in zip(self.index, self.recs)
                if k < len(r.snapshots)]

    def next_end_us(self) -> int:
        return max(s.end_us for _, s in self.snaps(self.k))


def _set_intervals(ctx, snap, started: bool) -> None:
    """The recorded intervals of ``snap`` in force, as the run's tuning set them (the
    replay itself does not tune)."""
    a = ctx.attrs
    if (a.sample_us, a.aggr_us) == (snap.sample_us, snap.aggr_us) and started:
        return
    try:
        new = replace(a, sample_us=snap.sample_us, aggr_us=snap.aggr_us,
                      intervals_goal=IntervalsGoal())
    except InvalidConfig as e:
        raise InvalidConfig(f"the record's intervals: {e}") from None
    ctx.set_attrs(new)


def _counters(s) -> dict:
    st = s.stats
    d = {k: int(getattr(st, k)) for k in WINDOW_KEYS}
    d["migrated"] = dict(st.migrated)
    return d


def _recorded(snaps, k_prev_stats, si):
    """The recorded run's window counters of scheme ``si`` (None if not recorded)."""
    stats = next((s.scheme_stats for _, s in snaps if s.scheme_stats), None)
    if stats is None or si >= len(stats):
        return None, stats
    prev = k_prev_stats[si] if k_prev_stats and si < len(k_prev_stats) else {}
    return {k: int(stats[si].get(k, 0)) - int(prev.get(k, 0)) for k in STATS_KEYS}, stats


def _step(run: _Run, out: list) -> None:
    """Replay window ``run.k`` of one context."""
    ctx, k = run.ctx, run.k
    snaps = run.snaps(k)
    first = snaps[0][1]
    clock = ctx.ops.clock
    if k == 0:
        _set_intervals(ctx, first, started=False)
        clock.t = min(s.start_us for _, s in snaps)
        ctx.passed_sample_intervals = 0
        for s in ctx.schemes:
            s.reschedule(ctx)
        ctx.started = True
        run.prev_recorded = None
    else:
        # the run's tuning happened at the end of the previous aggregation
        _set_intervals(ctx, first, started=True)
    end_sis = ctx.passed_sample_intervals + ctx.attrs.aggr_samples
    if k in run.commits:
        # as the run took it: between two samples of this window, at its clock time
        at_us, at_sis, schemes = run.commits[k]
        clock.t = max(clock.t, at_us)
        ctx.passed_sample_intervals = min(max(ctx.passed_sample_intervals, at_sis), end_sis)
        commit_schemes(ctx, _Schemes(schemes))
    ctx.passed_sample_intervals = end_sis
    clock.t = max(s.end_us for _, s in snaps)
    present = {i for i, _ in snaps}
    for i, t in enumerate(ctx.targets):
        t.obsolete = i not in present
    for i, s in snaps:
        t = s.targets[0]
        nr = t.nr_accesses.astype(np.uint32)
        bp = t.nr_accesses_bp if t.nr_accesses_bp is not None else nr * np.uint32(BP)
        ctx.targets[i].regions = Regions(t.start.copy(), t.end.copy(), nr.copy(),
                                         np.array(bp, np.uint32), nr.copy(),
                                         t.age.astype(np.uint32).copy())
        ctx.ops.placement.cover(ctx.ops.key(ctx.targets[i]), t.start, t.end)
    before = [_counters(s) for s in ctx.schemes]
    due = apply_schemes(ctx)
    start_us = min(s.start_us for _, s in snaps)
    rec_stats = None
    for si, s in enumerate(ctx.schemes):
        after = _counters(s)
        w = WindowStats(run.kdamond_idx, run.context_idx, si, k, start_us, clock.t,
                        s in due, effective_sz_bytes=int(s.quota_state.esz),
                        goals=[int(g.current_value) for g in s.quota.goals])
        for key in WINDOW_KEYS:
            setattr(w, key, after[key] - before[si][key])
        w.migrated = {p: v - before[si]["migrated"].get(p, 0)
                      for p, v in after["migrated"].items()
                      if v != before[si]["migrated"].get(p, 0)}
        w.recorded, rec_stats = _recorded(snaps, run.prev_recorded, si)
        out.append(w)
    if rec_stats is None:
        rec_stats = next((s.scheme_stats for _, s in snaps if s.scheme_stats), None)
    run.prev_recorded = rec_stats
    run.k += 1


@dataclass
class _Schemes:
    """What :func:`commit_schemes` reads of a source context."""

    schemes: list


def build_contexts(kdamonds: dict, placement: Placement,
                   throughput: int = DEFAULT_THROUGHPUT) -> list:
    """The kdamonds JSON's contexts on replay backends: [(kdamond_idx, context_idx, ctx)]."""
    built = kd.build_contexts(kdamonds, lambda c: ReplayOps(placement, c.get("ops", "paddr"),
                                                           throughput))
    return [(ki, ci, c) for ki, ctxs in enumerate(built) for ci, c in enumerate(ctxs)]


def replay(records, kdamonds: dict, placement: Placement | None = None,
           throughput: int = DEFAULT_THROUGHPUT, follow_commits: bool = False) -> ReplayResult:
    """Replay the schemes of ``kdamonds`` (damo's kdamonds JSON; its targets are ignored:
    the record's are used) over ``records`` (:func:`damoncore.records.read_records`).
    ``follow_commits``: commit the schemes the recorded run's online commits set, at the
    windows they took effect in (for replaying a record's own schemes,
    :func:`recorded_kdamonds`).

    The JSON's contexts, in order, replay the record's (kdamond, context) pairs, in
    order; their counts must match.  ``placement`` (default: everything on node 0) is
    where the bytes are and where actions move them; ``throughput`` (bytes/s) is what time
    quotas charge.  Raises InvalidConfig (before replaying anything) for what cannot be
    replayed.
    """
    placement = placement if placement is not None else Placement()
    groups = _groups(records)
    contexts = build_contexts(kdamonds, placement, throughput)
    if len(contexts) != len(groups):
        raise InvalidConfig(
            f"the schemes name {len(contexts)} context(s), the record holds "
            f"{len(groups)} ({', '.join(f'kdamond {a} context {b}' for a, b in groups)}): "
            f"give one context of schemes per recorded context, in order")
    check(contexts, placement)
    if not any(r.snapshots for r in records):
        raise InvalidConfig("the record holds no snapshot")
    runs = [_Run(key, c, recs) for (ki, ci, c), (key, recs) in zip(contexts, groups.items())]
    notes = []
    for run in runs:
        where = f"kdamond {run.kdamond_idx} context {run.context_idx}"
        if follow_commits:
            run.commits = _commits(run, placement)
            if run.commits:
                notes.append(f"{where}: the run's schemes were tuned online; the schemes "
                             f"each commit set are committed before window(s) "
                             f"{', '.join(map(str, sorted(run.commits)))}")
        aggrs = {s.aggr_us for r in run.recs for s in r.snapshots}
        for si, s in enumerate(run.ctx.schemes):
            if s.apply_interval_us and any(s.apply_interval_us % a for a in aggrs):
                notes.append(f"{where} scheme {si}: apply interval "
                             f"{kd.fmt_time_us(s.apply_interval_us)} is not a multiple of "
                             f"every recorded aggregation interval: applied at the first "
                             f"aggregation after it is due")
            if s.quota.time_ms:
                notes.append(f"{where} scheme {si}: its time quota charges the bytes tried "
                             f"at {kd.fmt_sz(run.ctx.ops.throughput, exact=False)}/s")
            if s.ops_filters:
                notes.append(f"{where} scheme {si}: young filters are judged per region "
                             f"(accessed in the aggregation or not)")
    out = []
    # contexts interleave in time as they ran (they share the placement)
    while True:
        live = [r for r in runs if r.k < r.nr_windows]
        if not live:
            break
        _step(min(live, key=lambda r: r.next_end_us()), out)
    return ReplayResult(out, [(r.kdamond_idx, r.context_idx, r.ctx) for r in runs],
                        placement, notes)


def recorded_kdamonds(records) -> dict | None:
    """The kdamonds JSON of the schemes a record (ours) was made with, its contexts in
    record order; None when the record does not hold them."""
    groups = _groups(records)
    ctxs = []
    for key, recs in groups.items():
        schemes = next((r.schemes for r in recs if r.schemes is not None), None)
        if schemes is None:
            return None
        iv = recs[0].intervals or {}
        ctxs.append({"ops": "vaddr" if recs[0].pid is not None else "paddr",
                     "targets": [{"pid": recs[0].pid, "regions": []}],
                     "intervals": {k: iv[k] for k in ("sample_us", "aggr_us", "ops_update_us")
                                   if k in iv},
                     "schemes": schemes})
    return {"kdamonds": [{"contexts": [c]} for c in ctxs]}
