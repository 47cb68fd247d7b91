import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")
BLOCK = 128 << 20

# the TPP command line of the seed talk (= damo's scripts/mem_tier.sh)
SEED = ("--numa_node 0 --monitoring_intervals_goal 4% 3 5ms 10s "
        "--damos_action migrate_cold 1 --damos_access_rate 0% 0% --damos_apply_interval 1s "
        "--damos_quota_interval 1s --damos_quota_space 200MB "
        "--damos_quota_goal node_mem_free_bp 0.5% 0 --damos_filter reject young "
        "--numa_node 1 --monitoring_intervals_goal 4% 3 5ms 10s "
        "--damos_action migrate_hot 0 --damos_access_rate 5% max --damos_apply_interval 1s "
        "--damos_quota_interval 1s --damos_quota_space 200MB "
        "--damos_quota_goal node_mem_used_bp 99.7% 0 --damos_filter allow young "
        "--damos_nr_quota_goals 1 1 --damos_nr_filters 1 1 "
        "--nr_targets 1 1 --nr_schemes 1 1 --nr_ctxs 1 1").split()


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def sysfs(tmp_path):
    """Two nodes of 4 memory blocks each: node 0 = [0, 512M), node 1 = [512M, 1G)."""
    root = str(tmp_path / "sys")
    _write(f"{root}/devices/system/node/online", "0-1\n")
    _write(f"{root}/devices/system/memory/block_size_bytes", f"{BLOCK:x}\n")
    for idx in range(8):
        os.makedirs(f"{root}/devices/system/node/node{idx // 4}/memory{idx}")
        _write(f"{root}/devices/system/memory/memory{idx}/phys_index", f"{idx:x}\n")
        _write(f"{root}/devices/system/memory/memory{idx}/online", "1\n")
    return root


def run_cli(*argv, env=None, timeout=60):
    e = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "damoncore.cli.main", *argv],
                          capture_output=True, text=True, env=e, timeout=timeout)
