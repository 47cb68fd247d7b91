"""The seed talk's command line, unchanged, falls back to simulated memory where the real
paddr backend cannot run (no idle page tracking or no node 1), and says why."""

import os
import subprocess
import sys

import pytest

SEED = """--numa_node 0 --monitoring_intervals_goal 4% 3 5ms 10s
 --damos_action migrate_cold 1 --damos_access_rate 0% 0% --damos_apply_interval 1s
 --damos_quota_interval 1s --damos_quota_space 200MB --damos_quota_goal node_mem_free_bp 0.5% 0
 --damos_filter reject young
 --numa_node 1 --monitoring_intervals_goal 4% 3 5ms 10s
 --damos_action migrate_hot 0 --damos_access_rate 5% max --damos_apply_interval 1s
 --damos_quota_interval 1s --damos_quota_space 200MB --damos_quota_goal node_mem_used_bp 99.7% 0
 --damos_filter allow young --damos_nr_quota_goals 1 1 --damos_nr_filters 1 1
 --nr_targets 1 1 --nr_schemes 1 1 --nr_ctxs 1 1""".split()

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def run(*extra):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    return subprocess.run([sys.executable, "-m", "damoncore.cli.main", "start", *SEED,
                           "--duration", "30s", "--no_status_socket", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(os.path.exists("/sys/kernel/mm/page_idle/bitmap")
                    and os.path.exists("/sys/devices/system/node/node1"),
                    reason="this machine can run the seed command for real")
def test_seed_command_runs_unchanged_on_simulated_memory():
    p = run()
    assert p.returncode == 0, p.stderr
    first = p.stderr.splitlines()[0]
    assert first.startswith("using simulated memory (--sim_preset seed):")
    assert "CONFIG_IDLE_PAGE_TRACKING" in first or "node" in first
    last = p.stderr.strip().splitlines()[-1]
    assert "migrate_cold" in last and "migrate_hot" in last


def test_distance_tuner_moves_memory_where_the_kernel_loop_crawls():
    p = run("--damos_quota_goal_tuner", "distance", "--damos_quota_goal_tuner", "distance")
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "migrate_hot applied 0 B" not in last, last
