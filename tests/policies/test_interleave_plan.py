"""Minimal re-weighting (policies.interleave.plan_moves) and the unseen scenario."""

import numpy as np
import pytest

from damoncore.policies.evaluation import interleave as ev
from damoncore.policies.interleave import InterleaveConfig, plan_moves

MiB, GiB = 1 << 20, 1 << 30
PAGE = 4096


def layout(weights, unit, rounds, base=1 << 40):
    """Runs of a weighted interleave: ``weights`` {node: w}, ``unit`` bytes a weight."""
    rs, re, rn, at = [], [], [], base
    for _ in range(rounds):
        for n, w in weights.items():
            rs.append(at)
            re.append(at + w * unit)
            rn.append(n)
            at += w * unit
    return np.array(rs), np.array(re), np.array(rn)


def apply(rs, re, rn, plan, surplus_nodes):
    """Bytes per node after the plan, and the bytes it moves: each plan piece moves the
    pages in it that are not on its node yet; those must come from surplus nodes."""
    nodes = [0, 1, 2, 3]
    out = {n: int((re - rs)[rn == n].sum()) for n in nodes}
    moved = 0
    ps, pe, pk = plan
    for s, e, k in zip(ps, pe, pk):
        dst = nodes[int(k)]
        lo, hi = np.maximum(rs, s), np.minimum(re, e)
        ov = hi > lo
        assert int((hi - lo)[ov].sum()) == e - s          # inside hot runs only
        for n, b in zip(rn[ov], (hi - lo)[ov]):
            if n != dst:
                assert n in surplus_nodes                 # only surplus pages move
                out[int(n)] -= int(b)
                out[dst] += int(b)
                moved += int(b)
    return out, moved


@pytest.mark.parametrize("old, new, unit", [
    ({0: 5, 1: 3, 2: 5, 3: 3}, [20, 12, 20, 3], MiB),
    ({0: 10, 1: 3, 2: 10, 3: 3}, [4, 3, 10, 3], MiB),
    ({0: 1, 1: 1, 2: 1, 3: 1}, [3, 0.001, 1, 1], PAGE),      # page-level kernel interleave
])
def test_plan_moves_only_the_surplus_and_reaches_the_ratio(old, new, unit):
    rs, re, rn = layout(old, unit, 64)
    total = int((re - rs).sum())
    shares = np.array(new, float) / sum(new)
    plan = plan_moves(rs, re, rn, np.ones(len(rs)), [0, 1, 2, 3], shares, PAGE)
    cur = np.array([int((re - rs)[rn == n].sum()) for n in range(4)], float)
    surplus = np.maximum(cur - shares * total, 0)
    after, moved = apply(rs, re, rn, plan, set(np.flatnonzero(surplus > 0).tolist()))
    assert surplus.sum() - 4 * PAGE <= moved <= surplus.sum() + 4 * PAGE   # the minimum
    got = np.array([after[n] for n in range(4)], float) / total
    # the deficits are dealt by weights of at most 20: within a few percent of the ratio
    assert got == pytest.approx(shares, abs=0.02)
    # in address order, and every surplus node gives from all over its runs
    assert (np.diff(plan[0]) > 0).all()
    for n in range(4) if unit > PAGE else ():      # (one chunk in the page-level case)
        if surplus[n] > PAGE:
            j = np.searchsorted(rs, plan[0], side="right") - 1
            given = j[rn[j] == n]
            assert given.min() < len(rs) // 8 and given.max() > 7 * len(rs) // 8


def test_a_page_level_two_node_plan_is_one_range_per_chunk():
    """The guest's case: 64 MiB interleaved 1:1 page by page over nodes 0 and 2, 3:1
    wanted: node 2 gives half of its pages, 16 MiB, as every other 1 MiB chunk of them; in
    a chunk its pages are joined across node 0's pages between them (already there)."""
    rs, re, rn = layout({0: 1, 2: 1}, PAGE, 8192)
    plan = plan_moves(rs, re, rn, np.ones(len(rs)), [0, 2], np.array([0.75, 0.25]), PAGE)
    assert set(plan[2].tolist()) == {0}
    assert len(plan[0]) == 32 and (plan[1] - plan[0]).max() <= 1 << 20
    moved = 0
    for s, e in zip(plan[0], plan[1]):
        j = (rs >= s) & (re <= e)
        assert ((rs < s) & (re > s)).sum() == 0               # whole pages
        moved += int((re - rs)[j & (rn == 2)].sum())
    assert moved == 16 << 20


def test_plan_moves_nothing_when_the_ratio_is_right():
    rs, re, rn = layout({0: 5, 1: 3, 2: 5, 3: 3}, MiB, 8)
    plan = plan_moves(rs, re, rn, np.ones(len(rs)), [0, 1, 2, 3],
                      np.array([5, 3, 5, 3]) / 16, PAGE)
    assert len(plan[0]) == 0


def test_unseen_scenario_reweighting_is_minimal_and_recovers_within_a_retune_interval():
    """The issue's numbers: 5:3:5:3 -> 20:12:20:3 moved 2216 MiB where about 408 MiB would
    do, and the policy needed 2 s to recover after the co-runner left.  Here the same
    machine (DRAM 50 GB/s, CXL 30 GB/s, a 3 GiB array, the co-runner on node 3 from 10 s
    to 20 s), 10 s phases."""
    r = ev.run_scenario("co-runner leaves", phase_s=10)
    assert [x["weights"] for x in r.retunes] == [{0: 20, 1: 12, 2: 20, 3: 3},
                                                 {0: 5, 1: 3, 2: 5, 3: 3}]
    for x in r.retunes:
        assert 0.95 * 408 * MiB <= x["minimum"] <= 1.05 * 408 * MiB
        assert x["moved"] <= 1.2 * x["minimum"]
    limit = InterleaveConfig(nodes=[0, 1]).reset_ms / 1e3
    assert all(x is not None and x <= limit for x in ev.recovery_s(r.points, 10))
    for ph, eq, hm, dy in ev.phase_means(r.rows, 10):
        assert dy >= 0.98 * max(eq, hm), (ph, eq, hm, dy)
    assert r.moves["all"].max_moves <= 2
