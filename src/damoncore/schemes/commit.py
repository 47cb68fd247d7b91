"""Committing new scheme parameters to running schemes (damos_commit() and
damon_commit_schemes() in mm/damon/core.c).

A commit copies what the user sets and keeps what the engine learned: the statistics
(``SchemeStats``, ``nr_snapshots`` included), the quota's charge state (``QuotaState``:
effective size and the feedback loop's ``esz_bp``, the window's start and charge, the resume
point, the throughput estimate), the next apply time and the watermark state.  So a new size
quota takes effect when the current charge window ends, as in the kernel, where the
effective quota is recomputed only at a window's roll.
"""

from __future__ import annotations

from ..vocab import GoalMetric
from .scheme import Quota, QuotaGoal, Scheme


def commit_goal(dst: QuotaGoal, src: QuotaGoal) -> None:
    """damos_commit_quota_goal(): ``current_value`` is the user's only for user_input."""
    dst.metric = src.metric
    dst.target_value = src.target_value
    if dst.metric == GoalMetric.USER_INPUT:
        dst.current_value = src.current_value
    dst.nid = src.nid
    dst.memcg_path = src.memcg_path


def commit_goals(dst: Quota, src: Quota) -> None:
    """damos_commit_quota_goals(): goal i takes src's goal i; extra ones go or are added."""
    kept = dst.goals[:len(src.goals)]
    for d, s in zip(kept, src.goals):
        commit_goal(d, s)
    for s in src.goals[len(kept):]:
        g = QuotaGoal(s.metric, s.target_value, nid=s.nid, memcg_path=s.memcg_path)
        commit_goal(g, s)
        kept.append(g)
    dst.goals = kept


def commit_quota(dst: Quota, src: Quota) -> None:
    """damos_commit_quota(): the user's fields; the charge state (QuotaState) is kept.

    ``esz_start`` is no kdamonds JSON field, so a commit leaves it as it was.
    """
    dst.reset_interval_ms = src.reset_interval_ms
    dst.time_ms = src.time_ms
    dst.sz_bytes = src.sz_bytes
    commit_goals(dst, src)
    dst.goal_tuner = src.goal_tuner
    dst.weight_sz = src.weight_sz
    dst.weight_nr_accesses = src.weight_nr_accesses
    dst.weight_age = src.weight_age


def commit_scheme(dst: Scheme, src: Scheme) -> None:
    """damos_commit(): ``src``'s parameters into ``dst``; stats and run-time state stay.

    The watermarks are evaluated again at the next apply (the kernel copies them with their
    ``activated`` state reset and checks them before the next sample).
    """
    dst.access_pattern = src.access_pattern
    dst.action = src.action
    dst.apply_interval_us = src.apply_interval_us
    commit_quota(dst.quota, src.quota)
    dst.watermarks = src.watermarks
    dst.next_watermark_check_us = 0
    dst.target_nid = src.target_nid
    dst.dests = list(src.dests)
    dst.filters = list(src.filters)
    dst.max_nr_snapshots = src.max_nr_snapshots
    dst.name = src.name if src.name is not None else dst.name
