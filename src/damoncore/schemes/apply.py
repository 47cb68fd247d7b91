"""Applying schemes to regions (kdamond_apply_schemes() and damos_apply_scheme()).

Per scheme whose apply interval came: check watermarks, roll the quota window, then for each
target select, in address order, the regions that match the access pattern and score at or
above the quota's ``min_score``, resume after where the last window stopped, charge them
against the effective quota (splitting the region that crosses the boundary), drop those the
core filters reject, and hand the rest to the ops backend in one batch per target.

Unlike the kernel, which walks region by region and scheme by scheme, this batches one scheme
over one target at a time; when two schemes match the same region in the same sample, the
first scheme's quota split is visible to the second, as in the kernel, but the order of
their ops calls differs.
"""

from __future__ import annotations

import time

import numpy as np

from ..arrays import unique
from ..vocab import Action, FilterType, WatermarkMetric
from .filters import core_filters_pass
from .quota import adjust_quota, pattern_mask, scheme_scores


def apply_schemes(ctx, before=None) -> list:
    """Apply every scheme that is due; returns those that were.  ``before()`` runs once,
    before the first of them, if any is due (the core takes the regions as the schemes
    see them there)."""
    # due by sample count (the kernel's rule) or by the clock: a sample loop that cannot keep
    # its interval (a loaded host, TCG) must not stretch a 1 s apply interval with it
    now, n = ctx.clock.now_us(), ctx.passed_sample_intervals
    due = [s for s in ctx.schemes if n >= s.next_apply_sis
           or (s.next_apply_us is not None and now >= s.next_apply_us)]
    if not due:
        return due
    if before is not None:
        before()
    for s in due:
        update_watermarks(ctx, s)
        if s.active:
            adjust_quota(ctx, s)
            if not s.quota_state.paused:
                for ti, t in enumerate(ctx.targets):
                    # max_nr_snapshots deactivates the scheme (damon_do_apply_schemes())
                    if not t.obsolete and not s.snapshots_done \
                            and apply_to_target(ctx, s, ti, t):
                        s.stats.nr_snapshots += 1
        s.reschedule(ctx)
    return due


def update_watermarks(ctx, s) -> None:
    """damos_wmark_wait_us(): (de)activate the scheme by the watermark metric."""
    w = s.watermarks
    if w.metric == WatermarkMetric.NONE:
        s.active = True
        return
    now = ctx.clock.now_us()
    if now < s.next_watermark_check_us:
        return
    s.next_watermark_check_us = now + w.interval_us
    m = int(ctx.ops.metric(w.metric))
    if m > w.high or m < w.low:
        s.active = False
    elif w.mid <= m <= w.high and not s.active:
        pass
    else:
        s.active = True


def _split_at_addrs(regions, addrs, min_region) -> None:
    """Split regions at each address in ``addrs`` that falls strictly inside one."""
    addrs = unique(np.asarray(addrs, dtype=np.uint64))
    if regions.nr == 0 or len(addrs) == 0:
        return
    idx = np.searchsorted(regions.start, addrs, side="right") - 1
    ok = idx >= 0
    idx, addrs = idx[ok], addrs[ok]
    inside = (addrs > regions.start[idx]) & (addrs < regions.end[idx])
    if inside.any():
        regions.split_at(idx[inside], addrs[inside])


def apply_to_target(ctx, s, ti, t) -> bool:
    """Apply ``s`` to target ``ti``; True if the walk reached the target's last region (the
    kernel then counts a snapshot): not when an exhausted quota or the previous window's
    resume point cut it short."""
    st, r = s.quota_state, t.regions
    minr = ctx.min_region
    limited = s.quota.limited and st.esz != 0
    # an exhausted window acts on nothing, and keeps its resume point for the next one
    # (damon_do_apply_schemes() checks the quota before damos_skip_charged_region())
    if limited and st.charged_sz >= st.esz:
        return False
    # resume point of the previous window (damos_skip_charged_region())
    skip_below = 0
    if st.charge_target_from is not None:
        if ti < st.charge_target_from:
            return False
        if ti == st.charge_target_from:
            skip_below = st.charge_addr_from
            if skip_below and r.nr and int(r.end[-1]) <= skip_below:
                st.charge_target_from, st.charge_addr_from = None, 0
                return False
            _split_at_addrs(r, [skip_below - skip_below % minr], minr)
            st.charge_target_from, st.charge_addr_from = None, 0
    # exact per-region addr filter decisions need region boundaries at the filter edges,
    # aligned down to min_region as the kernel's damos_filter_match() cuts them
    addr_edges = [v for f in s.core_filters if f.filter_type == FilterType.ADDR
                  for v in f.aligned_range(minr)]
    if addr_edges:
        _split_at_addrs(r, addr_edges, minr)
    match = pattern_mask(ctx, s, r)
    if skip_below:
        match &= r.start >= np.uint64(skip_below - skip_below % minr)
    if limited:
        match &= scheme_scores(ctx, t, s) >= st.min_score
    idx = np.flatnonzero(match)
    if len(idx) == 0:
        return True
    sizes = (r.end[idx] - r.start[idx]).astype(np.uint64)
    passed, allowed = core_filters_pass(s.core_filters, ti, r.start[idx], r.end[idx],
                                        bool(s.ops_filters), minr)
    nr_zero_tried = 0
    if limited:
        # charge only regions the core filters pass; damos_apply_scheme() order
        room = st.esz - st.charged_sz
        charged = np.where(passed, sizes, 0).astype(np.uint64)
        cum = np.cumsum(charged, dtype=np.uint64)
        over = np.flatnonzero(cum > np.uint64(room))
        if len(over):
            k = int(over[0])
            before = int(cum[k - 1]) if k else 0
            part = (room - before) // minr * minr
            # a window left with less than min_region: the kernel tries every later
            # candidate with size 0 (stat only); an exactly used-up window skips them
            if before < room and part < room - before:
                nr_zero_tried = int(passed[k + 1:].sum()) + (0 if part else 1)
            if part:
                ridx = int(idx[k])
                r.split_at([ridx], [int(r.start[ridx]) + part])
                idx = idx[:k + 1].copy()
                idx[k] = ridx
                # indices after ridx shifted by one; only those up to k are kept
                sizes = np.append(sizes[:k], np.uint64(part))
                passed, allowed = passed[:k + 1], allowed[:k + 1]
            else:
                idx, sizes, passed, allowed = idx[:k], sizes[:k], passed[:k], allowed[:k]
    idx, sizes, allowed = idx[passed], sizes[passed], allowed[passed]
    if len(idx) == 0 and not nr_zero_tried:
        return True
    starts, ends = r.start[idx].copy(), r.end[idx].copy()
    t0 = time.perf_counter_ns()
    res = _apply(ctx, t, s, starts, ends, allowed) if len(idx) else None
    total = int(sizes.sum())
    dt = ctx.ops.apply_time_ns(total, time.perf_counter_ns() - t0)
    if limited:
        st.total_charged_ns += dt
        st.charged_sz += total
        if st.charged_sz >= st.esz:
            st.charge_target_from, st.charge_addr_from = ti, int(ends[-1])
    if s.action != Action.STAT and len(idx):
        r.age[idx] = 0
    _update_stats(s, len(idx) + nr_zero_tried, total, res, ctx.ops.page_size)
    # the quota ran out on the way: the walk reached the last region only if that region
    # was the one that used it up
    return not (limited and st.charged_sz >= st.esz) or (len(idx) > 0
                                                        and int(ends[-1]) == int(r.end[-1]))


def _apply(ctx, t, s, starts, ends, core_allowed):
    """ops.apply_scheme over the ranges: those a core filter allowed skip the ops filters
    (the kernel's ``core_filters_allowed``), the others get them; one call per kind."""
    if not s.ops_filters or not core_allowed.any():
        return ctx.ops.apply_scheme(ctx, t, s, starts, ends)
    if core_allowed.all():
        return ctx.ops.apply_scheme(ctx, t, s, starts, ends, ops_filters=[])
    res = None
    per_range = np.zeros(len(starts), np.uint64)
    exact = True
    for sel, filters in ((core_allowed, []), (~core_allowed, None)):
        got = ctx.ops.apply_scheme(ctx, t, s, starts[sel], ends[sel], ops_filters=filters)
        if got.region_sz_applied is None:
            exact = False
        else:
            per_range[sel] = got.region_sz_applied
        if res is None:
            res = got
        else:
            res.add(got)
    res.region_sz_applied = per_range if exact else None
    return res


def _update_stats(s, nr_tried, sz_tried, res, page_size) -> None:
    """damos_update_stat(), plus the migration accounting."""
    st = s.stats
    st.nr_tried += nr_tried
    st.sz_tried += sz_tried
    if res is None:
        return
    st.sz_applied += res.sz_applied
    if res.region_sz_applied is not None:
        st.nr_applied += int(np.count_nonzero(res.region_sz_applied))
    elif res.sz_applied:
        st.nr_applied += nr_tried
    st.sz_ops_filter_passed += res.sz_ops_filter_passed
    for (src, dst), sz in res.migrated.items():
        if src == dst:
            continue
        st.migrated[(src, dst)] = st.migrated.get((src, dst), 0) + sz
        st.sz_migrated += sz
        st.nr_migrated_pages += sz // page_size
        if s.action == Action.MIGRATE_HOT:
            st.sz_promoted += sz
        elif s.action == Action.MIGRATE_COLD:
            st.sz_demoted += sz
    for k, v in res.nr_failed.items():
        st.nr_failed[k] = st.nr_failed.get(k, 0) + v
