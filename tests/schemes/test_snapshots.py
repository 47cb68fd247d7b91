"""DAMOS ``nr_snapshots`` and ``max_nr_snapshots`` (kernel 7.0), as documented and as
damon_do_apply_schemes() counts them: a snapshot counts when the walk of an apply interval
reaches a target's last region; once ``nr_snapshots`` reaches ``max_nr_snapshots`` the
scheme is deactivated."""

import pytest

from damoncore import Attrs, Context, InvalidConfig, Target
from damoncore import kdamonds as kd
from damoncore.schemes.scheme import AccessPattern, Quota, Scheme
from fakes import HotRangeOps

MiB, GiB = 1 << 20, 1 << 30
ATTRS = Attrs(sample_us=1000, aggr_us=10_000, ops_update_us=1_000_000)


def run(scheme, nr_targets=1, duration_us=200_000):
    ops = HotRangeOps(hot=[(0, 8 * GiB)], p_hot=1.0)
    targets = [Target(ranges=[(i * GiB, i * GiB + 64 * MiB)]) for i in range(nr_targets)]
    ctx = Context(ops, targets, ATTRS, [scheme])
    rows = []
    ctx.add_callback(lambda c, snap: rows.append((scheme.stats.nr_snapshots,
                                                  scheme.stats.nr_tried,
                                                  scheme.stats.sz_applied)))
    ctx.run(duration_us)
    return ctx, rows


def test_one_snapshot_per_apply_interval():
    s = Scheme(AccessPattern(), "stat")
    ctx, rows = run(s)
    # apply interval 0: every aggregation, and every aggregation walks the whole target
    assert s.stats.nr_snapshots == ctx.nr_aggregations == len(rows) == 20
    s = Scheme(AccessPattern(), "stat", apply_interval_us=50_000)
    ctx, _ = run(s)
    assert s.stats.nr_snapshots == 4


def test_the_kernel_counts_each_target_walked():
    s = Scheme(AccessPattern(), "stat")
    ctx, _ = run(s, nr_targets=2)
    assert s.stats.nr_snapshots == 2 * ctx.nr_aggregations


def test_a_walk_cut_short_by_the_quota_is_not_a_snapshot():
    # 4 KiB per 100 ms window of all-hot memory: every walk stops at the first region
    s = Scheme(AccessPattern(min_nr_accesses=1), "pageout",
               quota=Quota(sz_bytes=4096, reset_interval_ms=100))
    _, rows = run(s)
    assert s.stats.nr_tried >= 2 and s.stats.nr_snapshots == 0
    # room for everything: every walk counts
    s = Scheme(AccessPattern(min_nr_accesses=1), "pageout",
               quota=Quota(sz_bytes=GiB, reset_interval_ms=100))
    ctx, _ = run(s)
    assert s.stats.nr_snapshots == ctx.nr_aggregations


def test_max_nr_snapshots_deactivates_the_scheme():
    s = Scheme(AccessPattern(), "pageout", max_nr_snapshots=3)
    _, rows = run(s)
    assert rows[2][0] == 3 and s.stats.nr_snapshots == 3
    # nothing is tried or applied after the third snapshot
    assert rows[-1][1:] == rows[2][1:] and rows[2][1] > rows[1][1]
    assert s.snapshots_done
    with pytest.raises(InvalidConfig):
        Scheme(max_nr_snapshots=-1)


def test_max_nr_snapshots_round_trips_in_damo_field_names():
    """damo keeps it with the stats: schemes[i].stats.max_nr_snapshots."""
    s = Scheme(AccessPattern(), "stat", max_nr_snapshots=7)
    ctx = Context(HotRangeOps(), [Target(ranges=[(0, 64 * MiB)])], ATTRS, [s])
    d = kd.context_to_dict(ctx)
    assert d["schemes"][0]["stats"] == {"max_nr_snapshots": "7"}
    back = kd.context_from_dict(d, HotRangeOps())
    assert back.schemes[0].max_nr_snapshots == 7
    s.max_nr_snapshots = 0               # unset: no stats key, as damo's args damon
    assert "stats" not in kd.context_to_dict(ctx)["schemes"][0]
    # a damo status dump's run-time stats are ignored, max_nr_snapshots taken
    d["schemes"][0]["stats"] = {"nr_tried": "12", "nr_snapshots": "5",
                                "max_nr_snapshots": "9"}
    got = kd.context_from_dict(d, HotRangeOps()).schemes[0]
    assert got.max_nr_snapshots == 9 and got.stats.nr_tried == 0
