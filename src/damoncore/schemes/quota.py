"""Effective quota per charge window, and the score threshold that serves the best first.

Mirrors damos_adjust_quota(), damos_set_effective_quota() and damos_quota_score() in
mm/damon/core.c.  Goal metrics and region scores come from the ops backend's hooks
(``ctx.ops.metric``, ``ctx.ops.get_scheme_score``).
"""

from __future__ import annotations

import numpy as np

from .. import _regions
from ..errors import FeatureMissing
from ..feedback import feed_loop_next_input
from ..units import BP, MAX_SCORE, U64_MAX
from ..vocab import COLD_SCORE_ACTIONS, HOT_SCORE_ACTIONS, GoalMetric, GoalTuner
from .filters import core_filters_pass

#: the backend metric behind ``some_mem_psi_us``: each goal takes its own delta of it
PSI_TOTAL_METRIC = "some_mem_psi_total_us"


def goal_current_value(ctx, goal) -> int:
    """damos_set_quota_goal_current_value(): the goal's metric now, through the backend.

    ``user_input`` is whatever the user set; ``some_mem_psi_us`` is the PSI stall time
    since this goal's previous read (0 at its first read), so two PSI goals each see the
    whole delta."""
    if goal.metric == GoalMetric.USER_INPUT:
        return goal.current_value
    if goal.metric == GoalMetric.SOME_MEM_PSI_US:
        total = int(ctx.ops.metric(PSI_TOTAL_METRIC))
        last, goal.last_psi_total_us = goal.last_psi_total_us, total
        return 0 if last is None else total - last
    return int(ctx.ops.metric(goal.metric, nid=goal.nid, memcg_path=goal.memcg_path))


def quota_score(ctx, scheme) -> int:
    """damos_quota_score(): the highest current/target ratio over goals, in bp."""
    best = 0
    for g in scheme.quota.goals:
        if g.metric == GoalMetric.NODE_ELIGIBLE_MEM_BP:
            g.current_value = node_eligible_mem_bp(ctx, scheme, g.nid)
        else:
            g.current_value = goal_current_value(ctx, g)
        best = max(best, g.current_value * BP // g.target_value)
    return best


DISTANCE_METRICS = (GoalMetric.NODE_MEM_USED_BP, GoalMetric.NODE_MEM_FREE_BP)


def bytes_to_goal(ctx, goal) -> int:
    """Bytes still to move into (used goal) or out of (free goal) the node; 0 when met.

    Uses the goal's ``current_value`` as just refreshed by :func:`quota_score`.
    """
    missing_bp = goal.target_value - goal.current_value
    if missing_bp <= 0:
        return 0
    total = int(ctx.ops.metric("node_mem_total_bytes", nid=goal.nid))
    return missing_bp * total // BP


def set_effective_quota(ctx, scheme) -> None:
    """damos_set_effective_quota(): the size this window may charge (0 = unlimited)."""
    q, st = scheme.quota, scheme.quota_state
    if not q.time_ms and not q.goals:
        st.esz = q.sz_bytes
        st.paused = False
        return
    esz = U64_MAX
    st.paused = False
    if q.goals:
        score = quota_score(ctx, scheme)
        if q.goal_tuner == GoalTuner.DISTANCE and all(g.metric in DISTANCE_METRICS
                                                      for g in q.goals):
            st.esz_bp = 0
            esz = min(bytes_to_goal(ctx, g) for g in q.goals)
            if esz == 0:
                st.paused = True
        elif q.goal_tuner == GoalTuner.TEMPORAL:
            # goal met: do nothing this window; else run at the size quota (or unlimited)
            if score >= BP:
                st.paused = True
                st.esz_bp = 0
            else:
                st.esz_bp = q.sz_bytes * BP if q.sz_bytes else U64_MAX
            esz = st.esz_bp // BP if st.esz_bp != U64_MAX else U64_MAX
        else:
            st.esz_bp = feed_loop_next_input(max(st.esz_bp, BP), score)
            if q.sz_bytes:
                # anti-windup: beyond the hard limit the loop state only delays recovery
                st.esz_bp = min(st.esz_bp, q.sz_bytes * BP)
            esz = st.esz_bp // BP
    if q.time_ms:
        if st.total_charged_ns:
            throughput = st.total_charged_sz * 1_000_000 // st.total_charged_ns
        else:
            # the kernel's first guess, PAGE_SIZE * 1024 bytes per ms
            throughput = ctx.ops.page_size * 1024
        esz = min(throughput * q.time_ms, esz)
    if q.sz_bytes and q.sz_bytes < esz:
        esz = q.sz_bytes
    st.esz = esz


def action_scores(ctx, scheme, regions) -> np.ndarray:
    """The default get_scheme_score() (``Operations.get_scheme_score``): per region, the
    hot score for actions on hot memory, the cold score for actions on cold memory, else
    MAX_SCORE (uint8)."""
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


def scheme_scores(ctx, target, scheme) -> np.ndarray:
    """The backend's get_scheme_score() for every region of ``target``, checked: one
    uint8 score per region, at most MAX_SCORE (the histogram has no room above)."""
    got = np.ascontiguousarray(ctx.ops.get_scheme_score(ctx, target, scheme))
    n = target.regions.nr
    if got.shape != (n,) or (n and int(got.max()) > MAX_SCORE):
        raise RuntimeError(f"ops {ctx.ops.name!r} get_scheme_score returned "
                           f"{got.shape[0] if got.ndim else 'no'} scores for {n} regions, "
                           f"or one above {MAX_SCORE}")
    return got.astype(np.uint8, copy=False)


def pattern_mask(ctx, scheme, regions) -> np.ndarray:
    """__damos_valid_target() for every region (bool)."""
    p, a = scheme.access_pattern, ctx.attrs
    min_nr, max_nr = p.nr_accesses_bounds(a.aggr_samples)
    min_age, max_age = p.age_bounds(a.aggr_us)
    out = np.empty(regions.nr, dtype=np.uint8)
    u = lambda v: min(int(v), U64_MAX)
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
            st.esz_bp = q.sz_bytes * BP
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
            mask &= core_filters_pass(core, ti, r.start, r.end, bool(scheme.ops_filters),
                                      ctx.min_region)[0]
        mask = mask.view(np.uint8)
        _regions.score_histogram(r.start, r.end, scheme_scores(ctx, t, scheme), mask, hist)
    st.min_score = _regions.min_score_for(hist, min(st.esz, U64_MAX))


def node_eligible_mem_bp(ctx, scheme, nid) -> int:
    """damos_get_node_eligible_mem_bp() (mm tree, 7.2): of the present memory in regions
    that match the scheme's access pattern (size, nr_accesses, age: the pattern only, not
    the quota's score nor the filters), the share node ``nid`` holds, in bp; 0 when no
    memory is eligible.  The kernel answers only for paddr (it walks the folios); here any
    backend that can tell which node holds memory (``Operations.node_bytes``)."""
    total = on_node = 0
    for t in ctx.active_targets:
        r = t.regions
        m = pattern_mask(ctx, scheme, r)
        if not m.any():
            continue
        got = ctx.ops.node_bytes(ctx, t, r.start[m], r.end[m])
        if got is None:
            raise FeatureMissing("node placement queries",
                                 f"the {ctx.ops.name} backend cannot tell which node holds "
                                 f"memory (quota goal node_eligible_mem_bp)")
        total += sum(got.values())
        on_node += got.get(nid, 0)
    return on_node * BP // total if total else 0
