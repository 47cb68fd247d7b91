"""DAMOS scheme model: access pattern, action, quota, goals, watermarks, filters.

User-set fields follow the kernel's ``struct damos`` (include/linux/damon.h) and damo's
kdamonds JSON names; run-time state the engine owns lives in :class:`QuotaState` and
:class:`SchemeStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidConfig
from ..units import U64_MAX
from ..vocab import (MIGRATE_ACTIONS, Action, FilterType, GoalMetric, GoalTuner,
                     WatermarkMetric)

# the vocabulary's spellings, for option help and validation messages
ACTIONS = Action.names()
GOAL_METRICS = GoalMetric.names()
FILTER_TYPES = FilterType.names()
WATERMARK_METRICS = WatermarkMetric.names()
__all__ = ["ACTIONS", "GOAL_METRICS", "FILTER_TYPES", "WATERMARK_METRICS", "MIGRATE_ACTIONS",
           "U64_MAX", "AccessPattern", "QuotaGoal", "Quota", "Watermarks", "Filter",
           "SchemeStats", "QuotaState", "Scheme"]


def _range(name, lo, hi):
    if lo < 0 or hi < 0:
        raise InvalidConfig(f"{name} must be >= 0, got {lo}..{hi}")
    if lo > hi:
        raise InvalidConfig(f"{name} min {lo} > max {hi}")


@dataclass
class AccessPattern:
    """Which regions a scheme acts on (``damos_access_pattern``).

    ``sz``: bytes.  ``nr_accesses``: per aggregation interval, in ``nr_accesses_unit``:
    ``"samples"`` (raw, the kernel's) or ``"percent"`` of the max (damo's access rate,
    converted with the context's current ``aggr_samples``).  ``age``: in ``age_unit``:
    ``"aggr_intervals"`` (the kernel's) or ``"us"`` (converted with the current
    aggregation interval).
    """

    min_sz: int = 0
    max_sz: int = U64_MAX
    min_nr_accesses: int = 0
    max_nr_accesses: int = U64_MAX
    min_age: int = 0
    max_age: int = U64_MAX
    nr_accesses_unit: str = "samples"
    age_unit: str = "aggr_intervals"

    def __post_init__(self):
        _range("access pattern size", self.min_sz, self.max_sz)
        _range("access pattern nr_accesses", self.min_nr_accesses, self.max_nr_accesses)
        _range("access pattern age", self.min_age, self.max_age)
        if self.nr_accesses_unit not in ("samples", "percent"):
            raise InvalidConfig(f"nr_accesses_unit must be samples or percent, "
                                f"got {self.nr_accesses_unit!r}")
        if self.age_unit not in ("aggr_intervals", "us"):
            raise InvalidConfig(f"age_unit must be aggr_intervals or us, got {self.age_unit!r}")

    def nr_accesses_bounds(self, aggr_samples: int):
        """(min, max) in samples for the context's current aggregation."""
        if self.nr_accesses_unit == "samples":
            return self.min_nr_accesses, self.max_nr_accesses
        conv = lambda p: U64_MAX if p >= U64_MAX else p * aggr_samples // 100
        return conv(self.min_nr_accesses), conv(self.max_nr_accesses)

    def age_bounds(self, aggr_us: int):
        """(min, max) in aggregation intervals."""
        if self.age_unit == "aggr_intervals":
            return self.min_age, self.max_age
        conv = lambda a: U64_MAX if a >= U64_MAX else a // aggr_us
        return conv(self.min_age), conv(self.max_age)


@dataclass
class QuotaGoal:
    """A quota auto-tuning goal (``damos_quota_goal``).

    ``target_value`` and ``current_value`` are in the metric's unit: basis points for the
    ``*_bp`` metrics, microseconds for ``some_mem_psi_us``, anything for ``user_input``
    (whose ``current_value`` the user updates).  ``nid`` is needed for the node metrics,
    ``memcg_path`` for the memcg ones.  ``last_psi_total_us`` is engine state: the PSI
    total this goal read last (the kernel's ``last_psi_total``, one per goal).
    """

    metric: GoalMetric
    target_value: int
    current_value: int = 0
    nid: int | None = None
    memcg_path: str | None = None
    last_psi_total_us: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.metric = GoalMetric.parse(self.metric, "quota goal metric")
        if self.target_value <= 0:
            raise InvalidConfig(f"quota goal target_value must be > 0, got {self.target_value}")
        if self.metric.needs_nid and self.nid is None:
            raise InvalidConfig(f"quota goal metric {self.metric} needs a node id (nid)")
        if self.metric.needs_memcg and not self.memcg_path:
            raise InvalidConfig(f"quota goal metric {self.metric} needs a memcg path")


@dataclass
class Quota:
    """``damos_quota``: at most ``sz_bytes`` and ``time_ms`` of work per reset interval.

    0 means unlimited for ``sz_bytes``/``time_ms``.  ``weight_*`` are the prioritization
    weights (permil in damo; only their ratio matters; ``weight_sz`` is accepted and, as in
    the kernel, unused by the score).  ``goals`` auto-tune the effective size quota.
    ``goal_tuner``: ``"consist"`` (the kernel's feedback loop), ``"temporal"`` (kernel 7.1:
    act at the size quota until the goal is met, then pause) or ``"distance"`` (damoncore's:
    each window acts on at most the bytes still missing to the goal, under the size quota;
    for ``node_mem_used_bp``/``node_mem_free_bp`` goals that is
    ``(target - current) * node_bytes / 10000``, and 0 once a goal is met; other metrics
    fall back to the feedback loop).  ``distance`` suits tiering, where the kernel's
    proportional loop acts on the migration *rate* and so overshoots a fill level: at 100%
    used against a 99.7% goal it shrinks a 200 MiB/s promotion by 0.3% per window.

    Two departures from the kernel, both about the ``consist`` feedback loop with a size
    quota: the loop's state is capped at ``sz_bytes`` (the kernel lets it wind up far past
    the hard limit, so after a long under-achieving period it keeps acting at the hard
    limit for many windows once the goal is met); and ``esz_start="sz"`` starts the loop at
    the hard limit instead of the kernel's 1 byte (``"min"``, the default), which otherwise
    needs ~28 doubling windows to reach 200 MiB, and far more when the score is near the
    goal (at 88% of a used-memory goal the kernel grows 12% per window).
    """

    time_ms: int = 0
    sz_bytes: int = 0
    reset_interval_ms: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    goals: list = field(default_factory=list)
    goal_tuner: GoalTuner = GoalTuner.CONSIST
    esz_start: str = "min"

    def __post_init__(self):
        for n in ("time_ms", "sz_bytes", "reset_interval_ms", "weight_sz",
                  "weight_nr_accesses", "weight_age"):
            if getattr(self, n) < 0:
                raise InvalidConfig(f"quota {n} must be >= 0, got {getattr(self, n)}")
        self.goal_tuner = GoalTuner.parse(self.goal_tuner, "goal tuner")
        if self.esz_start not in ("min", "sz"):
            raise InvalidConfig(f"esz_start must be min or sz, got {self.esz_start!r}")
        for g in self.goals:
            if not isinstance(g, QuotaGoal):
                raise InvalidConfig("quota goals must be QuotaGoal objects")

    @property
    def limited(self) -> bool:
        return bool(self.time_ms or self.sz_bytes or self.goals)


@dataclass
class Watermarks:
    """``damos_watermarks``: activate the scheme only while the metric is in range.

    ``free_mem_rate`` in permil of system memory; the scheme is deactivated above ``high``
    or below ``low`` and activated again when it goes under ``mid``.
    """

    metric: WatermarkMetric = WatermarkMetric.NONE
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0

    def __post_init__(self):
        self.metric = WatermarkMetric.parse(self.metric, "watermarks metric")
        if self.metric != "none" and not (self.high >= self.mid >= self.low):
            raise InvalidConfig(f"watermarks need high >= mid >= low, got "
                                f"{self.high}/{self.mid}/{self.low}")


@dataclass
class Filter:
    """``damos_filter``: ``allow`` or reject memory that matches (or, with
    ``matching=False``, does not match) the filter's type.

    Core-handled types: ``addr`` (``address_range`` (start, end) bytes), ``target``
    (``target_idx``).  Ops-handled: ``anon``, ``active``, ``memcg`` (``memcg_path``),
    ``young``, ``hugepage_size`` (``hugepage_size`` (min, max) bytes), ``unmapped``.
    """

    filter_type: FilterType
    matching: bool = True
    allow: bool = False
    memcg_path: str | None = None
    address_range: tuple | None = None
    target_idx: int | None = None
    hugepage_size: tuple | None = None

    def __post_init__(self):
        self.filter_type = FilterType.parse(self.filter_type, "filter type")
        if self.filter_type == "addr":
            if not self.address_range or self.address_range[0] >= self.address_range[1]:
                raise InvalidConfig(f"addr filter needs a start < end range, "
                                    f"got {self.address_range}")
        if self.filter_type == "target" and self.target_idx is None:
            raise InvalidConfig("target filter needs target_idx")
        if self.filter_type == "memcg" and not self.memcg_path:
            raise InvalidConfig("memcg filter needs memcg_path")
        if self.filter_type == "hugepage_size":
            if not self.hugepage_size or self.hugepage_size[0] > self.hugepage_size[1]:
                raise InvalidConfig(f"hugepage_size filter needs min <= max, "
                                    f"got {self.hugepage_size}")

    @property
    def handled_by_core(self) -> bool:
        return self.filter_type.handled_by_core

    def aligned_range(self, min_region: int) -> tuple:
        """An addr filter's range with both edges aligned down to ``min_region`` (the
        kernel's damos_filter_match()): regions are cut there, never inside a page."""
        a, b = self.address_range
        return a - a % min_region, b - b % min_region


@dataclass
class SchemeStats:
    """Per-scheme counters: the kernel's, plus the migration accounting users ask for.

    ``nr_*``/``sz_*`` are the kernel's per-region counters (``damos_stat``).
    ``nr_migrated_pages``/``sz_migrated``: pages/bytes actually moved;
    ``migrated``: {(src_nid, dst_nid): bytes}; ``sz_promoted``/``sz_demoted``: bytes moved
    to a faster/slower node (as judged by the backend's node order); ``nr_failed``:
    {reason: pages}.  ``nr_snapshots`` (kernel 7.0): the monitoring snapshots the scheme
    walked, counted as damon_do_apply_schemes() does: once per target whose last region the
    walk of an apply interval reached (a walk cut short by an exhausted quota does not
    count).
    """

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    qt_exceeds: int = 0
    nr_snapshots: int = 0
    sz_migrated: int = 0
    nr_migrated_pages: int = 0
    sz_promoted: int = 0
    sz_demoted: int = 0
    migrated: dict = field(default_factory=dict)
    nr_failed: dict = field(default_factory=dict)


@dataclass
class QuotaState:
    """Engine-owned quota state (the kernel's private ``damos_quota`` fields)."""

    esz: int = 0
    esz_bp: int = 0
    charged_sz: int = 0
    charged_from_us: int = 0
    charge_target_from: int | None = None
    charge_addr_from: int = 0
    total_charged_sz: int = 0
    total_charged_ns: int = 0
    min_score: int = 0
    window_started: bool = False
    paused: bool = False


class Scheme:
    """An access-aware operation scheme (``struct damos``).

    ``action``: one of :data:`ACTIONS`.  ``target_nid``: destination node of
    migrate_hot/migrate_cold; ``dests``: [(nid, weight), ...] to spread the migrated
    memory over several nodes by weight (overrides ``target_nid``).
    ``apply_interval_us``: 0 means every aggregation interval.  ``max_nr_snapshots``
    (kernel 7.0; 0: no limit): once ``stats.nr_snapshots`` reaches it the scheme is
    deactivated: it tries and applies nothing more (its quota windows still roll).
    """

    def __init__(self, access_pattern: AccessPattern | None = None, action: str = Action.STAT,
                 target_nid: int | None = None, dests=(), apply_interval_us: int = 0,
                 quota: Quota | None = None, watermarks: Watermarks | None = None,
                 filters=(), name: str | None = None, max_nr_snapshots: int = 0):
        action = Action.parse(action, "action")
        self.access_pattern = access_pattern or AccessPattern()
        self.action = action
        self.dests = [(int(n), int(w)) for n, w in dests]
        for n, w in self.dests:
            if n < 0 or w < 0:
                raise InvalidConfig(f"dests entries need nid >= 0 and weight >= 0, got {n}:{w}")
        if self.dests and sum(w for _, w in self.dests) == 0:
            raise InvalidConfig("dests weights sum to 0")
        if action in MIGRATE_ACTIONS and target_nid is None and not self.dests:
            raise InvalidConfig(f"action {action} needs target_nid or dests")
        if target_nid is not None and target_nid < 0:
            raise InvalidConfig(f"target_nid must be >= 0, got {target_nid}")
        self.target_nid = target_nid
        if apply_interval_us < 0:
            raise InvalidConfig(f"apply_interval_us must be >= 0, got {apply_interval_us}")
        self.apply_interval_us = int(apply_interval_us)
        if not 0 <= max_nr_snapshots <= U64_MAX:
            raise InvalidConfig(f"max_nr_snapshots must be in 0..2^64-1, got {max_nr_snapshots}")
        self.max_nr_snapshots = int(max_nr_snapshots)
        self.quota = quota or Quota()
        self.watermarks = watermarks or Watermarks()
        self.filters = list(filters)
        for f in self.filters:
            if not isinstance(f, Filter):
                raise InvalidConfig("filters must be Filter objects")
        self.name = name
        self.stats = SchemeStats()
        self.quota_state = QuotaState()
        self.next_apply_sis = 0
        self.next_apply_us = None     # the same due time on the context's clock
        self.active = True
        self.next_watermark_check_us = 0

    @property
    def core_filters(self):
        return [f for f in self.filters if f.handled_by_core]

    @property
    def ops_filters(self):
        return [f for f in self.filters if not f.handled_by_core]

    @property
    def snapshots_done(self) -> bool:
        """max_nr_snapshots reached: the scheme is deactivated."""
        return bool(self.max_nr_snapshots) and self.stats.nr_snapshots >= self.max_nr_snapshots

    def destinations(self):
        """[(nid, weight)] the migration goes to."""
        if self.dests:
            return list(self.dests)
        return [(self.target_nid, 1)] if self.target_nid is not None else []

    def reschedule(self, ctx) -> None:
        a = ctx.attrs
        interval = self.apply_interval_us or a.aggr_us
        self.next_apply_sis = ctx.passed_sample_intervals + max(1, interval // a.sample_us)
        self.next_apply_us = ctx.clock.now_us() + interval

    def __repr__(self):
        return f"Scheme({self.action}, pattern={self.access_pattern})"
