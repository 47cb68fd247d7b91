"""``record`` writes damo's ``<record file>.mem_footprint``: statm of real target processes
and /proc/meminfo once a second, read back by ``report footprints``."""

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from cli_helpers import run_cli
from damoncore.cli import record_footprint as rf
from damoncore.errors import DamonError

PAGE = 4096
MiB = 1 << 20
STATM_KEYS = ["size", "resident", "shared", "trs", "lrs", "drs", "dt"]
SYS_KEYS = ["total", "free", "available", "buffers", "cached"]

# touches `mib` MiB, says so, then lives `secs` seconds (counted from when the file
# `after` appears, if given: record creates its output just before monitoring starts, so
# a loaded machine's slow start-up does not outlive the child)
CHILD = ("import os, sys, time\nb = b'x' * ({mib} << 20)\nprint('ready', flush=True)\n"
         "while {after!r} and not os.path.exists({after!r}):\n    time.sleep(0.01)\n"
         "time.sleep({secs})\n")

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                 reason="perf sampling of real memory needs root")


def _child(mib, secs, after=""):
    c = subprocess.Popen([sys.executable, "-c", CHILD.format(mib=mib, secs=secs,
                                                              after=str(after))],
                         stdout=subprocess.PIPE, text=True)
    assert c.stdout.readline().strip() == "ready"
    return c


def _statm(pid):
    with open(f"/proc/{pid}/statm") as f:
        return dict(zip(STATM_KEYS, map(int, f.read().split())))


def _meminfo_total_kib():
    with open("/proc/meminfo") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal:"))


def _record(out, *argv, timeout=90):
    return run_cli("record", "--no_status_socket", "--quiet", "-o", str(out), *argv,
                   timeout=timeout)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _check_layout(snaps, pids):
    for s in snaps:
        assert sorted(s) == ["footprints", "time"]
        assert [fp["pid"] for fp in s["footprints"]] == list(pids) + [None]
        for fp in s["footprints"][:-1]:
            assert list(fp["footprint"]) == STATM_KEYS
        sys_fp = s["footprints"][-1]["footprint"]
        assert list(sys_fp) == SYS_KEYS
        assert sys_fp["total"] == _meminfo_total_kib()
        assert 0 < sys_fp["free"] <= sys_fp["total"]
        assert 0 < sys_fp["available"] <= sys_fp["total"]


@needs_root
def test_footprints_follow_the_target_statm(tmp_path):
    child = _child(64, 60)
    try:
        out = tmp_path / "damon.data"
        r = _record(out, "--target_pid", str(child.pid), "--sample_primitives", "page_fault",
                    "--duration", "3s")
        assert r.returncode == 0, r.stderr
        statm = _statm(child.pid)          # the child only sleeps: its memory is steady
    finally:
        child.kill()
        child.wait()
    path = f"{out}.mem_footprint"
    assert _mode(path) == 0o600 and _mode(out) == 0o600     # damo's default permission
    snaps = json.load(open(path))
    assert 3 <= len(snaps) <= 6
    _check_layout(snaps, [child.pid])
    gaps = [b["time"] - a["time"] for a, b in zip(snaps, snaps[1:])]
    assert all(0.9 <= g <= 1.6 for g in gaps), gaps        # one snapshot a second
    for s in snaps:
        fp = s["footprints"][0]["footprint"]
        assert abs(fp["size"] - statm["size"]) <= 0.01 * statm["size"]
        assert abs(fp["resident"] - statm["resident"]) <= 0.02 * statm["resident"]
        assert fp["resident"] * PAGE >= 64 * MiB

    r = run_cli("report", "footprints", "rss", "--raw_number", "-i", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "# <percentile> <rss>"
    median = next(int(ln.split()[1]) for ln in lines if ln.split()[0] == "50")
    assert abs(median - statm["resident"] * PAGE) <= 0.02 * statm["resident"] * PAGE
    r = run_cli("report", "footprints", "-i", path)
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("# <")] == \
        ["# <percentile> <vsz>", "# <percentile> <rss>", "# <percentile> <sys_used>"]


@needs_root
def test_target_exiting_mid_record_ends_it_cleanly(tmp_path):
    out = tmp_path / "damon.data"
    child = _child(32, 2.5, after=out)
    reaper = threading.Thread(target=child.wait)    # reaped at once, as by a shell
    reaper.start()
    statm = _statm(child.pid)
    t0 = time.monotonic()
    r = _record(out, "--target_pid", str(child.pid), "--sample_primitives", "page_fault")
    elapsed = time.monotonic() - t0
    reaper.join()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stderr == ""
    assert elapsed < 30                    # no --duration: the target's exit ended it
    snaps = json.load(open(f"{out}.mem_footprint"))
    assert len(snaps) >= 2
    _check_layout(snaps, [child.pid])
    fps = [s["footprints"][0]["footprint"] for s in snaps]
    assert fps[0]["resident"] * PAGE >= 32 * MiB
    # its statm while alive, zeros once gone (damo); a snapshot taken while the exiting
    # process tears its memory down reads in between
    assert abs(fps[0]["size"] - statm["size"]) <= 0.01 * statm["size"]
    for fp in fps:
        assert fp == dict.fromkeys(STATM_KEYS, 0) or fp["size"] <= 1.01 * statm["size"]
    assert run_cli("report", "footprints", "-i", f"{out}.mem_footprint").returncode == 0


@needs_root
def test_one_of_two_targets_exiting_reads_as_zeros(tmp_path):
    out = tmp_path / "damon.data"
    short, long_ = _child(32, 1.5, after=out), _child(16, 60)
    reaper = threading.Thread(target=short.wait)
    reaper.start()
    try:
        r = _record(out, "--target_pid", str(short.pid), "--target_pid", str(long_.pid),
                    "--sample_primitives", "page_fault", "--duration", "4s")
        assert r.returncode == 0, r.stderr
        statm = _statm(long_.pid)
    finally:
        long_.kill()
        long_.wait()
        reaper.join()
    snaps = json.load(open(f"{out}.mem_footprint"))
    _check_layout(snaps, [short.pid, long_.pid])
    assert snaps[-1]["footprints"][0]["footprint"] == dict.fromkeys(STATM_KEYS, 0)
    for s in snaps:
        assert abs(s["footprints"][1]["footprint"]["size"] - statm["size"]) <= \
            0.01 * statm["size"]


@needs_root
def test_paddr_records_the_system_footprint_only(tmp_path):
    out = tmp_path / "damon.data"
    r = _record(out, "paddr", "--sample_primitives", "page_fault", "--duration", "2s",
                "--output_permission", "640")
    assert r.returncode == 0, r.stderr
    path = f"{out}.mem_footprint"
    assert _mode(path) == 0o640 and _mode(out) == 0o640
    snaps = json.load(open(path))
    assert len(snaps) >= 2
    _check_layout(snaps, [])
    r = run_cli("report", "footprints", "--raw_number", "-i", path)
    assert r.returncode == 0, r.stderr
    vals = {}
    for ln in r.stdout.splitlines():
        if ln.startswith("# <"):
            metric = ln.split("<")[2].rstrip(">")
        elif ln.split()[0] == "50":
            vals[metric] = int(ln.split()[1])
    assert vals["vsz"] == 0 and vals["rss"] == 0
    assert 0 < vals["sys_used"] < _meminfo_total_kib() * 1024


@pytest.mark.parametrize("argv, needle", [
    (["--output_permission", "999"], "--output_permission 999"),
    (["--output_permission", "6x0"], "--output_permission 6x0"),
    (["--output_permission", "1000"], "--output_permission 1000"),
    (["--output_permission=-1"], "--output_permission -1"),
    (["--do_record", "access", "bogus"], "'bogus'"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, argv, needle):
    out = tmp_path / "damon.data"
    r = run_cli("record", "--backend", "sim", "--duration", "1s", "-o", str(out), *argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert os.listdir(tmp_path) == []


def test_simulated_run_writes_no_footprints_and_moves_the_old_file(tmp_path):
    out = tmp_path / "damon.data"
    (tmp_path / "damon.data.mem_footprint").write_text("old")
    r = run_cli("record", "--backend", "sim", "--duration", "1s", "--no_status_socket",
                "-o", str(out), "--output_permission", "604")
    assert r.returncode == 0, r.stderr
    assert "memory footprints not recorded" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["damon.data", "damon.data.mem_footprint.old"]
    assert (tmp_path / "damon.data.mem_footprint.old").read_text() == "old"
    assert _mode(out) == 0o604


def test_do_record_access_only_leaves_footprints_alone(tmp_path):
    out = tmp_path / "damon.data"
    (tmp_path / "damon.data.mem_footprint").write_text("old")
    r = run_cli("record", "--backend", "sim", "--duration", "1s", "--no_status_socket",
                "--quiet", "-o", str(out), "--do_record", "access")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert sorted(os.listdir(tmp_path)) == ["damon.data", "damon.data.mem_footprint"]


# --- the module on a fake procfs ----------------------------------------------------------
def _procfs(root, statms, meminfo=True):
    for pid, text in statms.items():
        os.makedirs(root / str(pid), exist_ok=True)
        (root / str(pid) / "statm").write_text(text)
    if meminfo:
        (root / "meminfo").write_text("MemTotal:  1000 kB\nMemFree:  400 kB\n"
                                      "MemAvailable:  600 kB\nBuffers:  10 kB\n"
                                      "Cached:  100 kB\nSwapCached:  0 kB\n")


def test_proc_and_sys_footprints(tmp_path):
    _procfs(tmp_path, {7: "10 5 2 1 0 3 0\n", 8: "garbage\n"})
    root = str(tmp_path)
    assert rf.proc_footprint(7, root) == dict(zip(STATM_KEYS, [10, 5, 2, 1, 0, 3, 0]))
    assert rf.proc_footprint(8, root) == dict.fromkeys(STATM_KEYS, 0)
    assert rf.proc_footprint(9, root) == dict.fromkeys(STATM_KEYS, 0)      # gone
    assert rf.sys_footprint(root) == {"total": 1000, "free": 400, "available": 600,
                                      "buffers": 10, "cached": 100}
    s = rf.snapshot([7, 9], root)
    assert [fp["pid"] for fp in s["footprints"]] == [7, 9, None]


def test_sampler_period_and_failure(tmp_path):
    _procfs(tmp_path, {7: "10 5 2 1 0 3 0\n"})
    sampler = rf.FootprintSampler([7, 7], str(tmp_path), period_s=0.05).start()
    time.sleep(0.3)
    os.unlink(tmp_path / "7" / "statm")                  # the process exits
    time.sleep(0.2)
    snaps = sampler.stop()
    assert 5 <= len(snaps) <= 12
    assert all(len(s["footprints"]) == 2 for s in snaps)   # one entry per distinct pid
    sizes = [s["footprints"][0]["footprint"]["size"] for s in snaps]
    assert sizes[0] == 10 and sizes[-1] == 0 and sorted(sizes, reverse=True) == sizes
    bad = rf.FootprintSampler([], str(tmp_path / "nowhere"), period_s=0.05).start()
    time.sleep(0.1)
    with pytest.raises(DamonError, match="memory footprint recording failed"):
        bad.stop()


def test_target_pids_of_kdamonds():
    d = {"kdamonds": [{"contexts": [
        {"ops": "vaddr", "targets": [{"pid": 5}, {"pid": 6}]},
        {"ops": "paddr", "targets": [{"pid": None}]}]},
        {"contexts": [{"ops": "vaddr", "targets": [{"pid": 5}]}]}]}
    assert rf.target_pids(d) == [5, 6]
