"""Stop signals and dead runs, with real processes and real signals.

SIGINT, SIGTERM and SIGHUP end every long-running command (start, record, demo,
numa-migrate) with exit 0, no traceback and no socket left; a record ended so is readable.
A run killed by SIGKILL leaves its socket behind: ``status`` removes it and reports the
live run.
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import SRC, run_cli

pytest.importorskip("damoncore.sim.presets")


def _spawn(argv, xdg, cwd):
    env = dict(os.environ, PYTHONPATH=SRC, XDG_RUNTIME_DIR=str(xdg))
    return subprocess.Popen([sys.executable, "-m", "damoncore", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_running(p, sock=None, timeout=60):
    """Until ``sock`` exists (start, record) or the first output line (demo, numa-migrate);
    then the run is in its monitoring loop."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if sock is not None:
            if sock.exists():
                return
            time.sleep(0.05)
        elif select.select([p.stdout], [], [], 0.1)[0]:
            p.stdout.readline()
            return
    out, err = p.communicate(timeout=5) if p.poll() is not None else ("", "")
    pytest.fail(f"the run did not start: rc {p.poll()}\n{out}\n{err}")


CASES = [
    ("start", signal.SIGINT), ("start", signal.SIGTERM), ("start", signal.SIGHUP),
    ("record", signal.SIGHUP), ("record", signal.SIGTERM),
    ("demo", signal.SIGINT), ("demo", signal.SIGHUP),
    ("numa-migrate", signal.SIGTERM), ("numa-migrate", signal.SIGINT),
]
ARGV = {"start": ["start", "--backend", "sim", "--damos_action", "stat"],
        "record": ["record", "--backend", "sim", "-o", "out.data"],
        "demo": ["demo", "--duration", "1h", "--every", "100ms"],
        "numa-migrate": ["numa-migrate", "--backend", "sim", "--duration", "1h"]}


@pytest.mark.parametrize("cmd,sig", CASES, ids=[f"{c}-{s.name}" for c, s in CASES])
def test_a_stop_signal_ends_the_run_cleanly(cmd, sig, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    p = _spawn(ARGV[cmd], xdg, tmp_path)
    sock = xdg / "damoncore" / f"{p.pid}.sock"
    try:
        _wait_running(p, sock if cmd in ("start", "record") else None)
        time.sleep(0.3)                 # well inside the loop
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "damoncore:" not in err, err
    assert not sock.exists()
    assert not list((xdg / "damoncore").glob("*.sock")) if (xdg / "damoncore").exists() \
        else True
    if cmd == "record":
        r = run_cli("report", "access", "-i", str(tmp_path / "out.data"), "--snapshot_idx",
                    "-1")
        assert r.returncode == 0 and "snapshot" in r.stdout, r.stderr
    if cmd in ("demo", "numa-migrate"):
        assert f"stopped by {sig.name}" in out


def test_status_skips_and_removes_a_killed_runs_socket(tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    argv = ["start", "--backend", "sim", "--quiet"]
    dead, live = _spawn(argv, xdg, tmp_path), _spawn(argv, xdg, tmp_path)
    socks = {p.pid: xdg / "damoncore" / f"{p.pid}.sock" for p in (dead, live)}
    try:
        for p in (dead, live):
            _wait_running(p, socks[p.pid])
        dead.send_signal(signal.SIGKILL)
        dead.wait(30)
        assert socks[dead.pid].exists()         # what SIGKILL leaves behind
        env = {"XDG_RUNTIME_DIR": str(xdg)}
        r = run_cli("status", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"pid {live.pid}\n") and f"pid {dead.pid}" not in r.stdout
        assert not socks[dead.pid].exists() and socks[live.pid].exists()
        r = run_cli("status", "--pid", str(dead.pid), env=env)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "gone" in r.stderr
        r = run_cli("status", "--pid", str(live.pid), "--json", env=env)
        assert r.returncode == 0 and f'"pid": {live.pid}' in r.stdout
    finally:
        for p in (dead, live):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)
    assert live.returncode == 0
    assert not socks[live.pid].exists()


def test_a_new_run_sweeps_dead_sockets(tmp_path):
    d = tmp_path / "xdg" / "damoncore"
    d.mkdir(parents=True, mode=0o700)
    import socket as socket_mod
    # a socket nobody listens on, named for a pid that does not exist
    gone = d / "4194303.sock"
    s = socket_mod.socket(socket_mod.AF_UNIX)
    s.bind(str(gone))
    s.close()
    keep = d / "notes.sock"             # not <pid>.sock: never touched
    keep.write_text("x")
    r = run_cli("start", "--backend", "sim", "--duration", "10ms", "--quiet",
                env={"XDG_RUNTIME_DIR": str(tmp_path / "xdg")})
    assert r.returncode == 0, r.stderr
    assert not gone.exists() and keep.exists()


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def test_ctrl_c_on_a_process_pool_ends_every_process_with_one_line(tmp_path):
    """eval-sampling's pool gets the terminal's SIGINT too (the whole process group): the
    parent ends the pool, the workers do not die mid-cell, nothing is left, one line."""
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.Popen([sys.executable, "-m", "damoncore", "eval-sampling", "--seeds", "3",
                          "--workers", "2", "--quiet"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.time() + 60
        while len(_children(p.pid)) < 2 and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        time.sleep(1.5)                 # the workers are in their first cells
        assert p.poll() is None, p.communicate()
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130 and err == "damoncore: interrupted by SIGINT\n", err
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("pool workers outlived the run")
