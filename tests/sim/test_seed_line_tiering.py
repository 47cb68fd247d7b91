"""The seed talk's TPP command line with the ``temporal`` goal tuner on the simulated
tiering machine (``--backend sim --sim_preset tiering``): the hot set is promoted to DRAM
within a minute and DRAM's use never passes the 99.7% goal by more than one quota window.

The run goes through ``start.run`` (the CLI's own path from argv to a running Kdamond);
the preset's machine is only instrumented: every migration logs the clock, node 0's use
and the hot set's share on node 0.
"""

import os
import sys

import pytest

from damoncore.cli import backends, start
from damoncore.cli.main import build_parser
from damoncore.sim import presets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "cli"))
from cli_helpers import SEED, run_cli  # noqa: E402

MiB = 1 << 20
QUOTA = 200 * MiB                 # the line's --damos_quota_space 200MB (damo: binary)
TEMPORAL = ["--damos_quota_goal_tuner", "temporal"] * 2      # one per scheme, as damo


def _instrumented(seed):
    m, info = presets.tiering(seed=seed)
    pid, (hot_start, hot_end) = info["pid"], info["hot"]
    log = []
    move = m.move_keys

    def logged(ks, ke, dst):
        res = move(ks, ke, dst)
        log.append((m.now_us, m.node_used(0),
                    m.node_bytes(pid, hot_start, hot_end)[0] / (hot_end - hot_start),
                    res.moved))
        return res
    m.move_keys = logged
    return m, info, log


def _run(monkeypatch, seed, duration="60s"):
    m, info, log = _instrumented(seed)
    monkeypatch.setattr(backends, "sim_machine", lambda preset: (m, info["pid"]))
    args = build_parser().parse_args(["start", *SEED, *TEMPORAL, "--backend", "sim",
                                      "--sim_preset", "tiering", "--duration", duration,
                                      "--quiet", "--no_status_socket"])
    kdamonds = start.run(args)
    return m, log, kdamonds


@pytest.mark.parametrize("seed", [0, 1])
def test_hot_set_reaches_dram_within_a_minute_without_overshoot(monkeypatch, seed):
    m, log, kdamonds = _run(monkeypatch, seed)
    dram = m.nodes[0].capacity_bytes
    goal = dram * 9970 // 10000
    assert log, "nothing was migrated"
    reached = [t for t, _, share, _ in log if share >= 0.95]
    assert reached and reached[0] <= 60_000_000, f"hot share on DRAM: {log[-1][2]:.3f}"
    overshoot = max(used for _, used, _, _ in log) - goal
    assert overshoot <= QUOTA, f"node 0 {overshoot / MiB:.1f} MiB over the 99.7% goal"
    # promotion went CXL -> DRAM only, demotion DRAM -> CXL only
    assert {pair for *_, moved in log for pair in moved} <= {(1, 0), (0, 1)}
    [[cold_ctx], [hot_ctx]] = kdamonds
    assert hot_ctx.schemes[0].stats.sz_applied >= 0.95 * 2 * 1024 * MiB
    assert cold_ctx.schemes[0].stats.sz_applied > 0


def test_cli_seed_line_reports_promotion():
    p = run_cli("start", *SEED, *TEMPORAL, "--backend", "sim", "--sim_preset", "tiering",
                "--duration", "30s", "--no_status_socket", timeout=300)
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "migrate_hot applied" in last and "migrate_hot applied 0 B" not in last, last


def test_tiering_preset_starts_as_tpp_finds_it():
    m, info = presets.tiering()
    dram = m.nodes[0].capacity_bytes
    assert 0.995 < m.node_used(0) / dram < 0.997          # between the two goals
    hot = info["hot"][1] - info["hot"][0]
    assert m.node_bytes(info["pid"], *info["hot"]).tolist() == [0, hot, 0]   # all on CXL
