"""The status socket: private (0600 in a 0700 dir) and telling the live numbers."""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from damoncore.cli import status as status_cmd
from damoncore.cli.status_server import StatusServer, query, status_of
from damoncore.core.attrs import Attrs
from damoncore.core.context import Context, Kdamond
from damoncore.core.target import Target
from damoncore.ops.base import Operations
from damoncore.schemes.scheme import AccessPattern, Quota, Scheme

from cli_helpers import SEED, SRC, run_cli


class _AllHot(Operations):
    name = "test"

    def check_accesses(self, ctx):
        return [np.ones(t.regions.nr, np.uint8) for t in ctx.targets]


def test_in_process_server_reports_live_stats(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    s = Scheme(AccessPattern(min_nr_accesses=1), "stat",
               quota=Quota(sz_bytes=1 << 20, reset_interval_ms=10))
    ctx = Context(_AllHot(), [Target(ranges=[(0, 64 << 20)])],
                  Attrs(sample_us=1000, aggr_us=5000), [s])
    kd = Kdamond([ctx])
    th = threading.Thread(target=kd.run, args=(2_000_000,), daemon=True)
    srv = StatusServer(lambda: status_of([[ctx]]))
    try:
        th.start()
        d = os.path.dirname(srv.path)
        assert srv.path == os.path.join(str(tmp_path), "damoncore", f"{os.getpid()}.sock")
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        deadline = time.time() + 10
        while ctx.nr_aggregations < 3 and time.time() < deadline:
            time.sleep(0.05)
        st = query(srv.path)
        c = st["kdamonds"][0]["contexts"][0]
        assert c["sample_us"] == 1000 and c["aggr_us"] == 5000
        assert c["nr_regions"] >= 10     # min_nr_regions after the first split
        sc = c["schemes"][0]
        assert sc["action"] == "stat" and sc["stats"]["nr_tried"] > 0
        assert sc["effective_sz_bytes"] > 0
        text = status_cmd.render(st)
        assert "scheme 0: stat" in text and "tried" in text
    finally:
        kd.stop()
        th.join(5)
        srv.close()
    assert not os.path.exists(srv.path)


def test_sim_start_subprocess_status(tmp_path):
    pytest.importorskip("damoncore.ops.sim")
    pytest.importorskip("damoncore.sim.presets")
    env = dict(os.environ, PYTHONPATH=SRC, XDG_RUNTIME_DIR=str(tmp_path))
    p = subprocess.Popen([sys.executable, "-m", "damoncore.cli.main", "start", "--backend",
                          "sim", "--sim_preset", "tiering", "--duration", "1h", "--quiet",
                          *SEED], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    sock = tmp_path / "damoncore" / f"{p.pid}.sock"
    try:
        deadline = time.time() + 60
        while not sock.exists() and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert sock.exists(), p.stderr.read() if p.poll() is not None else "no socket"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        st = None
        while time.time() < deadline:
            st = query(str(sock))
            if all(c["nr_aggregations"] > 5 for k in st["kdamonds"] for c in k["contexts"]):
                break
            time.sleep(0.2)
        assert [len(k["contexts"]) for k in st["kdamonds"]] == [1, 1]
        demote = st["kdamonds"][0]["contexts"][0]["schemes"][0]
        promote = st["kdamonds"][1]["contexts"][0]["schemes"][0]
        assert (demote["action"], demote["target_nid"]) == ("migrate_cold", 1)
        assert (promote["action"], promote["target_nid"]) == ("migrate_hot", 0)
        assert demote["goals"][0]["metric"] == "node_mem_free_bp"
        assert demote["goals"][0]["target_value"] == 50
        assert promote["goals"][0]["target_value"] == 9970
        for key in ("nr_tried", "sz_tried", "nr_applied", "sz_applied",
                    "sz_ops_filter_passed", "qt_exceeds", "sz_promoted", "sz_demoted",
                    "migrated"):
            assert key in demote["stats"]
        r = run_cli("status", "--json", env={"XDG_RUNTIME_DIR": str(tmp_path)})
        assert r.returncode == 0 and json.loads(r.stdout)["pid"] == p.pid
        r = run_cli("status", "--pid", str(p.pid), env={"XDG_RUNTIME_DIR": str(tmp_path)})
        assert r.returncode == 0 and "migrate_cold -> 1" in r.stdout
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert not sock.exists()


def test_status_without_server_is_an_error(tmp_path):
    r = run_cli("status", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert r.returncode == 1 and "no running damoncore start" in r.stderr
