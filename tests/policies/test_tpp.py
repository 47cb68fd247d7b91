"""TPP tiering on the simulated tiering topology (node 0 DRAM, node 1 CXL)."""

import pytest

from damoncore import InvalidConfig
from damoncore.policies.evaluation import tpp as eval_tpp
from damoncore.policies.tpp import TppConfig

MiB = 1 << 20


def test_tpp_converges_to_the_used_goal_with_the_hot_set_on_dram():
    rows = list(eval_tpp.run(seconds=50, seed=1))
    # the hard quota: never more than 200 MiB promoted or demoted in a 1 s window
    assert max(max(r[3], r[4]) for r in rows) <= 200 * MiB
    # from the 6th second on, node 0 stays within 0.3 percentage points of 99.7% used
    settled = [r[1] for r in rows[5:]]
    assert all(abs(u - 99.7) <= 0.3 for u in settled), settled
    # and the hot set (which started entirely on node 1) ends on node 0
    assert rows[0][2] < 0.5
    assert rows[-1][2] >= 0.95, rows[-1]
    assert sum(r[3] for r in rows) >= 0.95 * 1024 * MiB


@pytest.mark.parametrize("kw, word", [
    (dict(tiers=[0]), "two tiers"),
    (dict(tiers=[0, 0]), "twice"),
    (dict(tiers=[0, 1], used_bp=0), "used_bp"),
    (dict(tiers=[0, 1], hot_rate_pct=101), "hot_rate_pct"),
])
def test_tpp_config_validation(kw, word):
    with pytest.raises(InvalidConfig, match=word):
        TppConfig(**kw)


def test_n_tiers_get_demote_and_promote_along_the_chain():
    from damoncore.ops.sim import SimOps
    from damoncore.policies.tpp import tpp_contexts
    from damoncore.sim.presets import seed_machine
    m = seed_machine(1 << 30, 1 << 30)
    ctxs = tpp_contexts(TppConfig(tiers=[0, 1, 3]), lambda n: SimOps(m, space="paddr"),
                        lambda n: [m.node_range(n)])
    got = [[(s.action, s.target_nid) for s in c.schemes] for c in ctxs]
    assert got == [[("migrate_cold", 1)], [("migrate_cold", 3), ("migrate_hot", 0)],
                   [("migrate_hot", 1)]]
    assert [c.targets[0].ranges for c in ctxs] == [[m.node_range(n)] for n in (0, 1, 3)]
