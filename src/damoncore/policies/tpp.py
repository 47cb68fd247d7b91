"""TPP-style memory tiering for N tiers, built from the public API only.

The seed talk's TPP-DAMON (samples/damon/mtier.c, damo's scripts/mem_tier.sh) generalized:
one context monitors each tier's node; on every tier but the last a ``migrate_cold`` scheme
demotes never-accessed memory one tier down, coldest first, aiming at ``free_bp`` free space
on that node; on every tier but the first a ``migrate_hot`` scheme promotes memory with an
access rate of at least ``hot_rate_pct`` one tier up, hottest first, aiming at ``used_bp``
utilization of the upper node.  Both run under a hard ``quota_bytes`` per ``reset_ms`` and
use the ``young`` filter so a page the sampler missed is not demoted, and only pages really
touched are promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.attrs import Attrs, IntervalsGoal
from ..core.context import Context
from ..core.target import Target
from ..errors import InvalidConfig
from ..schemes.scheme import AccessPattern, Filter, Quota, QuotaGoal, Scheme
from ..units import BP

MiB = 1 << 20


@dataclass
class TppConfig:
    """Knobs of the tiering policy (defaults: the talk's command line).

    ``tiers``: node ids, fastest first.  ``quota_bytes`` per ``reset_ms``: hard limit of
    each scheme.  ``used_bp``: wanted utilization of a promotion's destination (9970 =
    99.7%).  ``free_bp``: wanted free space of a demotion's source (50 = 0.5%).
    ``hot_rate_pct``: minimum access rate (percent of the max) to promote.
    ``apply_us``: scheme apply interval.  ``weights``: (sz, nr_accesses, age) permil.
    ``goal_tuner``: ``"distance"`` (default: move at most what is missing to the goal, so
    the upper node settles between ``100% - free`` and ``used``) or ``"consist"`` (the
    kernel's feedback loop, as the talk's command line gets).
    """

    tiers: list
    quota_bytes: int = 200 * MiB
    reset_ms: int = 1000
    apply_us: int = 1_000_000
    used_bp: int = 9970
    free_bp: int = 50
    hot_rate_pct: int = 5
    weights: tuple = (0, 100, 100)
    attrs: Attrs = field(default_factory=lambda: Attrs(
        ops_update_us=1_000_000,
        intervals_goal=IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=5_000,
                                     max_sample_us=10_000_000)))
    young_filters: bool = True
    goal_tuner: str = "distance"

    def __post_init__(self):
        if len(self.tiers) < 2:
            raise InvalidConfig(f"tiering needs at least two tiers, got {self.tiers}")
        if len(set(self.tiers)) != len(self.tiers):
            raise InvalidConfig(f"a node appears twice in tiers {self.tiers}")
        if not 0 < self.used_bp <= BP or not 0 < self.free_bp <= BP:
            raise InvalidConfig(f"used_bp/free_bp must be 1..10000, got "
                                f"{self.used_bp}/{self.free_bp}")
        if not 0 <= self.hot_rate_pct <= 100:
            raise InvalidConfig(f"hot_rate_pct must be 0..100, got {self.hot_rate_pct}")


def _quota(cfg, goal):
    ws, wn, wa = cfg.weights
    return Quota(sz_bytes=cfg.quota_bytes, reset_interval_ms=cfg.reset_ms, weight_sz=ws,
                 weight_nr_accesses=wn, weight_age=wa, goals=[goal], goal_tuner=cfg.goal_tuner, esz_start="sz")


def demote_scheme(cfg: TppConfig, nid: int, lower: int) -> Scheme:
    """Cold (0% access rate) memory of ``nid`` to ``lower``, aiming at ``free_bp`` free."""
    filters = [Filter("young", allow=False)] if cfg.young_filters else []
    return Scheme(AccessPattern(0, max_nr_accesses=0, nr_accesses_unit="percent"),
                  "migrate_cold", target_nid=lower, apply_interval_us=cfg.apply_us,
                  quota=_quota(cfg, QuotaGoal("node_mem_free_bp", cfg.free_bp, nid=nid)),
                  filters=filters, name=f"demote {nid}->{lower}")


def promote_scheme(cfg: TppConfig, nid: int, upper: int) -> Scheme:
    """Hot memory of ``nid`` to ``upper``, aiming at ``used_bp`` utilization of ``upper``."""
    filters = [Filter("young", allow=True)] if cfg.young_filters else []
    return Scheme(AccessPattern(min_nr_accesses=cfg.hot_rate_pct, nr_accesses_unit="percent"),
                  "migrate_hot", target_nid=upper, apply_interval_us=cfg.apply_us,
                  quota=_quota(cfg, QuotaGoal("node_mem_used_bp", cfg.used_bp, nid=upper)),
                  filters=filters, name=f"promote {nid}->{upper}")


def tpp_contexts(cfg: TppConfig, ops_for_node, node_ranges, seed: int = 0) -> list:
    """One context per tier node, with its demote and/or promote scheme.

    ``ops_for_node(nid)`` returns the ops backend monitoring that node's physical memory
    (all contexts of one simulated machine share its clock, so they can run in one
    :class:`~damoncore.core.context.Kdamond`); ``node_ranges(nid)`` its [start, end) ranges.
    """
    ctxs = []
    for i, nid in enumerate(cfg.tiers):
        schemes = []
        if i + 1 < len(cfg.tiers):
            schemes.append(demote_scheme(cfg, nid, cfg.tiers[i + 1]))
        if i > 0:
            schemes.append(promote_scheme(cfg, nid, cfg.tiers[i - 1]))
        ctxs.append(Context(ops_for_node(nid), [Target(ranges=node_ranges(nid))], cfg.attrs,
                            schemes=schemes, seed=seed + i, name=f"tier{i}:node{nid}"))
    return ctxs
