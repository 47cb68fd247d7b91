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


def make_snapshots(n=30):
    """A deterministic 3-target-region record: a hot band that moves up over time."""
    import numpy as np

    from damoncore.core.snapshot import Snapshot, TargetSnapshot
    MiB = 1 << 20
    snaps = []
    for i in range(n):
        start = np.arange(0, 64 * MiB, 8 * MiB, dtype=np.uint64)
        end = start + np.uint64(8 * MiB)
        hot = (i // 10) % 8
        nr = np.array([20 if j == hot else (2 if j == hot + 1 else 0) for j in range(8)],
                      np.uint32)
        age = np.array([i % 10 if j in (hot, hot + 1) else i for j in range(8)], np.uint32)
        snaps.append(Snapshot(i * 100_000, (i + 1) * 100_000, 5_000, 100_000, 20,
                              [TargetSnapshot(0, 4242, start, end, nr, age)]))
    return snaps
