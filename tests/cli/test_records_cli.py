"""``damoncore record`` as a user runs it: a bad --out fails before anything starts and
touches nothing, an old output becomes ``.old``, a run killed with SIGKILL half-way leaves
a file every report reads, and SIGINT/SIGTERM/SIGHUP end it with the file complete."""

import json
import os
import signal
import subprocess
import sys
import time
import zlib

import pytest

from damoncore import records as rec

from cli_helpers import SRC, run_cli

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="perf sampling needs root")


def _start(out, *argv):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "damoncore.cli.main", "record",
                             "--no_status_socket", "--quiet", "-o", str(out), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _wait_for_snapshots(path, n, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            got = sum(len(r.snapshots) for r in rec.read_records(str(path)))
        except (OSError, ValueError):
            got = 0
        if got >= n:
            return got
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} snapshots in {timeout}s")


def _contiguous(snaps):
    assert snaps[0].start_us == 0
    assert all(a.end_us == b.start_us for a, b in zip(snaps, snaps[1:]))


def test_sigkill_half_way_leaves_a_file_every_report_reads(tmp_path):
    out = tmp_path / "damon.data"
    p = _start(out, "--backend", "sim", "--duration", "1h", "--output_flush_sec", "0.2")
    try:
        _wait_for_snapshots(out, 100, p)
        time.sleep(0.5)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL
    [r] = rec.read_records(str(out))
    assert len(r.snapshots) >= 100
    _contiguous(r.snapshots)
    checks = {"access": "total size: 12.000 GiB", "wss": "# <percentile> <wss>",
              "heatmap": "# access_frequency"}
    for report, needle in checks.items():
        q = run_cli("report", report, "-i", str(out))
        assert q.returncode == 0 and needle in q.stdout, (report, q.stderr)
    q = run_cli("report", "access", "-i", str(out), "--snapshot_idx", "-1", "--json",
                "--raw_number")
    [last] = json.loads(q.stdout)[0]["snapshots"]
    assert last["end_time"] == r.snapshots[-1].end_us * 1000


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_end_the_run_with_the_file_complete(tmp_path, sig):
    out = tmp_path / "damon.data"
    p = _start(out, "--backend", "sim", "--duration", "1h")
    try:
        _wait_for_snapshots(out, 20, p)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    kvs = json.loads(zlib.decompress(out.read_bytes()))     # a finished zlib stream
    assert len(kvs) == 1 and len(kvs[0]["snapshots"]) >= 20
    assert sorted(os.listdir(tmp_path)) == ["damon.data"]


def test_two_contexts_end_as_damo_layout(tmp_path):
    from cli_helpers import SEED
    out = tmp_path / "damon.data"
    r = run_cli("record", *SEED, "--backend", "sim", "--sim_preset", "tiering",
                "--duration", "30s", "--no_status_socket", "--quiet", "-o", str(out),
                timeout=300)
    assert r.returncode == 0, r.stderr
    kvs = json.loads(zlib.decompress(out.read_bytes()))
    assert [(k["kdamond_idx"], k["context_idx"]) for k in kvs] == [(0, 0), (1, 0)]
    for kv in kvs:
        snaps = kv["snapshots"]
        assert snaps and all(a["end_time"] <= b["start_time"]
                             for a, b in zip(snaps, snaps[1:]))


def test_existing_output_is_renamed_old(tmp_path):
    out = tmp_path / "damon.data"
    out.write_bytes(b"the previous recording")
    r = run_cli("record", "--backend", "sim", "--duration", "1s", "--no_status_socket",
                "--quiet", "-o", str(out), "--do_record", "access")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "damon.data.old").read_bytes() == b"the previous recording"
    assert rec.read_records(str(out))[0].snapshots


@pytest.mark.parametrize("out, needle", [
    ("nodir/damon.data", "does not exist"),
    (".", "is a directory"),
    ("x" * 5000, "too long"),
    ("x" * 240, "too long"),                     # no room for .mem_footprint.old
    ("file/damon.data", "ot a directory"),
    ("/proc/damon.data", "/proc"),
    ("/dev/null", "not a regular file"),
])
def test_bad_out_exits_2_before_anything_and_touches_nothing(tmp_path, out, needle):
    (tmp_path / "file").write_text("keep")
    (tmp_path / "damon.data").write_text("keep too")
    before = {p: os.stat(tmp_path / p).st_mtime_ns for p in os.listdir(tmp_path)}
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-m", "damoncore.cli.main", "record", "--backend",
                        "sim", "--duration", "1h", "--no_status_socket", "-o", out],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30                 # it did not monitor for an hour
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("value", ["x", "-1", "1q", "", "9" * 100000], ids=["x", "neg", "unit", "empty", "100k-digits"])
def test_bad_output_flush_sec_exits_2(tmp_path, value):
    r = run_cli("record", "--backend", "sim", "--duration", "1s", "--no_status_socket",
                "-o", str(tmp_path / "damon.data"), "--output_flush_sec", value)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--output_flush_sec" in lines[0]
    assert os.listdir(tmp_path) == []


@needs_root
def test_sigkill_keeps_the_footprints_and_the_record_of_a_real_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nb = b'x' * (64 << 20)\nprint('ready', flush=True)\n"
                              "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    out = tmp_path / "damon.data"
    p = _start(out, "--target_pid", str(child.pid), "--sample_primitives", "page_fault",
               "--duration", "60s")
    try:
        _wait_for_snapshots(out, 10, p)
        time.sleep(2.5)
        p.kill()
        p.wait()
    finally:
        child.kill()
        child.wait()
        p.kill()
    snaps = rec.read_footprints(f"{out}.mem_footprint")
    assert len(snaps) >= 2
    assert all(s["footprints"][0]["pid"] == child.pid for s in snaps)
    assert snaps[0]["footprints"][0]["footprint"]["resident"] * 4096 >= 64 << 20
    q = run_cli("report", "footprints", "-i", f"{out}.mem_footprint")
    assert q.returncode == 0 and "# <percentile> <rss>" in q.stdout, q.stderr
    assert len(rec.read_records(str(out))[0].snapshots) >= 10
    assert run_cli("report", "access", "-i", str(out)).returncode == 0
