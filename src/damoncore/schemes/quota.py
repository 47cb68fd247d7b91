"""Effective quota per charge window, and the score threshold that serves the best first.

Mirrors damos_adjust_quota(), damos_set_effective_quota() and damos_quota_score() in
mm/damon/core.c.
"""

from __future__ import annotations

import numpy as np

from .. import _regions
from ..core.feedback import ULONG_MAX, feed_loop_next_input
from .filters import core_filters_pass
from .metrics import metric_value
from .scheme import COLD_SCORE_ACTIONS, HOT_SCORE_ACTIONS

PAGE_SIZE = 4096
MAX_SCORE = 99


def quota_score(ctx, scheme) -> int:
    """damos_quota_score(): the highest current/target ratio over goals, in bp."""
    best = 0
    for g in scheme.quota.goals:
        if g.metric != "user_input":
            g.current_value = metric_value(ctx, g.metric, g.nid, g.memcg_path)
        best = max(best, g.current_value * 10000 // g.target_value)
    return best


DISTANCE_METRICS = ("node_mem_used_bp", "node_mem_free_bp")


def bytes_to_goal(ctx, goal) -> int:
    """Bytes still to move into (used goal) or out of (free goal) the node; 0 when met.

    Uses the goal's ``current_value`` as just refreshed by :func:`quota_score`.
    """
    missing_bp = goal.target_value - goal.current_value
    if missing_bp <= 0:
        return 0
    total = metric_value(ctx, "node_mem_total_bytes", goal.nid)
    return missing_bp * total // 10000


def set_effective_quota(ctx, scheme) -> None:
    """damos_set_effective_quota(): the size this window may charge (0 = unlimited)."""
    q, st = scheme.quota, scheme.quota_state
    if not q.time_ms and not q.goals:
        st.esz = q.sz_bytes
        st.paused = False
        return
    esz = ULONG_MAX
    st.paused = False
    if q.goals:
        score = quota_score(ctx, scheme)
        if q.goal_tuner == "distance" and all(g.metric in DISTANCE_METRICS for g in q.goals):
            st.esz_bp = 0
            esz = min(bytes_to_goal(ctx, g) for g in q.goals)
            if esz == 0:
                st.paused = True
        elif q.goal_tuner == "temporal":
            # goal met: do nothing this window; else run at the size quota (or unlimited)
            if score >= 10000:
                st.paused = True
                st.esz_bp = 0
            else:
                st.esz_bp = q.sz_bytes * 10000 if q.sz_bytes else ULONG_MAX
            esz = st.esz_bp // 10000 if st.esz_bp != ULONG_MAX else ULONG_MAX
        else:
            st.esz_bp = feed_loop_next_input(max(st.esz_bp, 10000), score)
            if q.sz_bytes:
                # anti-windup: beyond the hard limit the loop state only delays recovery
                st.esz_bp = min(st.esz_bp, q.sz_bytes * 10000)
            esz = st.esz_bp // 10000
    if q.time_ms:
        if st.total_charged_ns:
            throughput = st.total_charged_sz * 1_000_000 // st.total_charged_ns
        else:
            throughput = PAGE_SIZE * 1024
        esz = min(throughput * q.time_ms, esz)
    if q.sz_bytes and q.sz_bytes < esz:
        esz = q.sz_bytes
    st.esz = esz


def scores_for(ctx, scheme, regions) -> np.ndarray:
    """get_scheme_score(): hot score, cold score or the max, per region (uint8)."""
    out = np.empty(regions.nr, dtype=np.uint8)
    if scheme.action in HOT_SCORE_ACTIONS or scheme.action in COLD_SCORE_ACTIONS:
        q, a = scheme.quota, ctx.attrs
        _regions.hot_scores(regions.nr_accesses_bp, regions.age, a.aggr_samples, a.aggr_us,
                            q.weight_nr_accesses, q.weight_age, out)
        if scheme.action in COLD_SCORE_ACTIONS:
            np.subtract(MAX_SCORE, out, out=out)
    else:
        out.fill(MAX_SCORE)
    return out


def pattern_mask(ctx, scheme, regions) -> np.ndarray:
    """__damos_valid_target() for every region (bool)."""
    p, a = scheme.access_pattern, ctx.attrs
    min_nr, max_nr = p.nr_accesses_bounds(a.aggr_samples)
    min_age, max_age = p.age_bounds(a.aggr_us)
    out = np.empty(regions.nr, dtype=np.uint8)
    u = lambda v: min(int(v), ULONG_MAX)
    _regions.pattern_mask(regions.start, regions.end, regions.nr_accesses_bp, regions.age,
                          u(p.min_sz), u(p.max_sz), u(min_nr), u(max_nr), u(min_age),
                          u(max_age), out)
    return out.view(bool)


def adjust_quota(ctx, scheme) -> None:
    """damos_adjust_quota(): roll the charge window, then set ``min_score``."""
    q, st, s = scheme.quota, scheme.quota_state, scheme
    if not q.limited:
        return
    now = ctx.clock.now_us()
    if not st.window_started:
        st.window_started = True
        if q.esz_start == "sz" and q.sz_bytes:
            st.esz_bp = q.sz_bytes * 10000
        st.charged_from_us = now
        set_effective_quota(ctx, scheme)
    # the apply that lands within half a sample of the window end rolls it: apply times
    # are counted in samples, so an exact comparison skips every other window when the
    # apply and reset intervals are equal
    elif now + ctx.attrs.sample_us // 2 >= st.charged_from_us + q.reset_interval_ms * 1000:
        if st.esz and st.charged_sz >= st.esz:
            s.stats.qt_exceeds += 1
        st.total_charged_sz += st.charged_sz
        st.charged_from_us = now
        st.charged_sz = 0
        set_effective_quota(ctx, scheme)
    hist = np.zeros(MAX_SCORE + 1, dtype=np.uint64)
    core = scheme.core_filters
    for ti, t in enumerate(ctx.targets):
        if t.obsolete:
            continue
        r = t.regions
        mask = pattern_mask(ctx, scheme, r)
        if core:
            # damon/next: memory the core filters reject does not compete for the quota
            mask &= core_filters_pass(core, ti, r.start, r.end, bool(scheme.ops_filters))
        mask = mask.view(np.uint8)
        _regions.score_histogram(r.start, r.end, scores_for(ctx, scheme, r), mask, hist)
    st.min_score = _regions.min_score_for(hist, min(st.esz, ULONG_MAX))
