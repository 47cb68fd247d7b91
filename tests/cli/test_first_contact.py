"""Issue 11's concrete inputs, each run as a user runs it (the CLI as a process, in a fresh
directory): every one ended in a traceback, ran forever, was silently accepted or got a
misleading message.  Now each is one line on stderr naming the bad value, exit 2 for bad
input (1 for a missing package), nothing written."""

import json
import os
import zlib

import pytest

import hostile as h

BIG = "9" * 100_000


def _record_with(**snapshot_changes):
    kvs = json.loads(json.dumps(h.RECORD))
    kvs[0]["snapshots"][0].update(snapshot_changes)
    return json.dumps(kvs).encode()


def _region_end(v):
    kvs = json.loads(json.dumps(h.RECORD))
    kvs[0]["snapshots"][0]["regions"][0]["end"] = v
    return json.dumps(kvs).encode()


def _zero_sample_interval():
    kvs = json.loads(json.dumps(h.RECORD))
    kvs[0]["intervals"]["sample_us"] = 0
    for s in kvs[0]["snapshots"]:
        s.pop("sample_interval_us", None)
    return json.dumps(kvs).encode()


def _kdamonds_with(path, value):
    d = json.loads(json.dumps(h.KDAMONDS))
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return json.dumps(d).encode()


SCHEME0 = ("kdamonds", 0, "contexts", 0, "schemes", 0)
SIM = ["--backend", "sim", "--duration", "1s"]

# (id, argv, extra files, exit status, words the one stderr line must hold)
CASES = [
    ("sample 100k digits", ["start", *SIM, "-s", BIG], {}, 2, ["sample", "too long"]),
    ("target_pid 999999999", ["start", *SIM, "--target_pid", "999999999"], {}, 2,
     ["--target_pid", "999999999"]),
    ("target_pid not on the sim", ["start", *SIM, "--target_pid", "31337"], {}, 2,
     ["--target_pid 31337", "simulated"]),
    ("start 1", ["start", *SIM, "1"], {}, 2, ["pid 1", "simulated"]),
    ("contexts oops", ["start", *SIM, "--kdamonds", "k.json"],
     {"k.json": _kdamonds_with(("kdamonds", 0, "contexts"), "oops")}, 2,
     ["kdamonds[0].contexts", "list"]),
    ("access_pattern null", ["start", *SIM, "--kdamonds", "k.json"],
     {"k.json": _kdamonds_with(SCHEME0 + ("access_pattern",), None)}, 2,
     ["access_pattern", "null"]),
    ("goal 150%", ["start", *SIM, "--kdamonds", "k.json"],
     {"k.json": _kdamonds_with(SCHEME0 + ("quotas", "goals", 0, "target_value"), "150 %")},
     2, ["150 %", "above 100%"]),
    ("duration 2^70s", ["start", "--backend", "sim", "--duration", f"{2 ** 70}s"], {}, 2,
     ["--duration", "u64"]),
    ("duration 2^64 us", ["start", "--backend", "sim", "--duration", str(2 ** 64 - 1)], {}, 2,
     ["--duration", "2^63"]),
    ("demo duration 2^70s", ["demo", "--duration", f"{2 ** 70}s"], {}, 2, ["--duration"]),
    ("numa-migrate duration 2^70s", ["numa-migrate", "--backend", "sim", "--duration",
                                     f"{2 ** 70}s"], {}, 2, ["--duration"]),
    ("access rate 150%", ["start", *SIM, "--damos_action", "stat", "--damos_access_rate",
                          "150%", "max"], {}, 2, ["--damos_access_rate", "150%", "100%"]),
    ("quota space 2^70", ["start", *SIM, "--damos_action", "stat", "--damos_quota_interval",
                          "1s", "--damos_quota_space", str(2 ** 70)], {}, 2,
     ["quota space", "u64"]),
    ("aggr max", ["start", *SIM, "-a", "max"], {}, 2, ["2^32-1 samples"]),
    ("id list 0-99999999999", ["start", *SIM, "--sample_filter", "allow", "cpu",
                               "0-99999999999"], {}, 2, ["0-99999999999"]),
    ("kdamonds missing", ["start", *SIM, "--kdamonds", "nofile.json"], {}, 2,
     ["nofile.json", "no such file"]),
    ("kdamonds truncated", ["start", *SIM, "--kdamonds", "t.json"],
     {"t.json": b'{"kdamonds": [{"contexts": ['}, 2, ["'t.json'", "not valid JSON"]),
    ("record out nodir", ["record", *SIM, "-o", "nodir/x.data"], {}, 2,
     ["nodir", "does not exist"]),
    ("record out dir", ["record", *SIM, "-o", "adir"], {}, 2, ["adir", "directory"]),
    ("record out 5000 chars", ["record", *SIM, "-o", "a" * 5000], {}, 2, ["too long"]),
    ("record out unwritable", ["record", *SIM, "-o", "/proc/x.data"], {}, 2,
     ["/proc/x.data"]),
    ("report -i missing", ["report", "access", "-i", "missing"], {}, 2,
     ["missing", "no such file"]),
    ("report -i directory", ["report", "access", "-i", "adir"], {}, 2, ["adir", "directory"]),
    ("report -i bad JSON", ["report", "access", "-i", "b.data"], {"b.data": b"{bad"}, 2,
     ["b.data", "not a damo record file"]),
    ("report -i non-list", ["report", "access", "-i", "b.data"], {"b.data": b'{"a": 1}'}, 2,
     ["b.data"]),
    ("report -i negative end", ["report", "access", "-i", "b.data"],
     {"b.data": _region_end(-1)}, 2, ["b.data", "u64"]),
    ("report -i end before start", ["report", "wss", "-i", "b.data"],
     {"b.data": _region_end(0)}, 2, ["b.data", "start is not below its end"]),
    ("report -i inverted times", ["report", "heatmap", "-i", "b.data"],
     {"b.data": _record_with(end_time=0, start_time=10 ** 9)}, 2, ["b.data", "time"]),
    ("report -i sample interval 0", ["report", "access", "-i", "b.data"],
     {"b.data": _zero_sample_interval()}, 2, ["b.data", "not a damo record file"]),
    ("heatmap resol 0 0", ["report", "heatmap", "-i", "rec.data", "--resol", "0", "0"], {},
     2, ["--resol", "0"]),
    ("heatmap resol -1 10", ["report", "heatmap", "-i", "rec.data", "--resol", "-1", "10"],
     {}, 2, ["--resol", "-1"]),
    ("heatmap resol 2^70", ["report", "heatmap", "-i", "rec.data", "--resol", str(2 ** 70),
                            "10"], {}, 2, ["--resol", str(2 ** 70)]),
    ("heatmap output jpgz", ["report", "heatmap", "-i", "rec.data", "--output", "x.jpgz"], {},
     2, ["x.jpgz", ".jpgz"]),
    ("heatmap output nodir", ["report", "heatmap", "-i", "rec.data", "--output",
                              "nodir/h.png"], {}, 2, ["nodir", "does not exist"]),
    ("heatmap address_range 100 10", ["report", "heatmap", "-i", "rec.data",
                                      "--address_range", "100", "10"], {}, 2,
     ["--address_range 100 10"]),
    ("wss range step 0", ["report", "wss", "-i", "rec.data", "--range", "0", "100", "0"], {},
     2, ["--range 0 100 0", "step"]),
    ("wss range above 100", ["report", "wss", "-i", "rec.data", "--range", "0", "200", "50"],
     {}, 2, ["--range", "0..100"]),
    ("access snapshot_idx 99999", ["report", "access", "-i", "rec.data", "--snapshot_idx",
                                   "99999"], {}, 2, ["--snapshot_idx 99999", "12 snapshots"]),
    ("footprints after a sim record", ["report", "footprints"],
     {"damon.data.mem_footprint": None}, 2,
     ["damon.data.mem_footprint", "no such file", "real backend"]),
    ("footprints of garbage", ["report", "footprints", "-i", "garbage.bin"], {}, 2,
     ["garbage.bin", "mem_footprint"]),
    ("footprints of a record", ["report", "footprints", "-i", "rec.data"], {}, 2,
     ["rec.data", "mem_footprint"]),
]


@pytest.mark.parametrize("argv,files,status,words", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_issue_input(argv, files, status, words, tmp_path):
    with h.Workdir(files) as wd:
        rc, out, err = h.run_subprocess(argv, wd.path, {"XDG_RUNTIME_DIR": str(tmp_path)})
        h.check(argv, rc, out, err, wd, str(tmp_path / "damoncore"))
    assert rc == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert len(lines[0]) < 400


def test_matplotlib_missing_is_a_missing_python_package(tmp_path):
    """A heatmap image without matplotlib: exit 1, 'Python package', not 'kernel'."""
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(
            ["report", "heatmap", "-i", "rec.data", "--output", "h.png"], wd.path,
            {"PYTHONPATH": f"{h.SRC}{os.pathsep}{fake}"})
        h.check(["report"], rc, out, err, wd)
    assert rc == 1, err
    assert "Python package matplotlib" in err and "kernel" not in err
    assert "damoncore[plot]" in err


def test_debug_shows_the_traceback(tmp_path):
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(["--debug", "report", "access", "-i", "missing"],
                                        wd.path)
        assert rc != 0 and "Traceback" in err and "no such file" in err
        rc, out, err = h.run_subprocess(["report", "access", "-i", "missing"], wd.path,
                                        {"DAMONCORE_DEBUG": "1"})
        assert rc != 0 and "Traceback" in err


def test_a_good_record_still_reports(tmp_path):
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(["report", "access", "-i", "rec.data",
                                         "--snapshot_idx", "-1"], wd.path)
    assert rc == 0 and err == "" and "snapshot time: [1.100 s, 1.200 s]" in out
    assert zlib.decompress(h.FIXTURES["rec.data"])      # the fixture is damo's format


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_a_runtime_failure_naming_what_failed(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=h.SRC)
    with h.Workdir() as wd, open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "damoncore", "report", "access", "-i",
                            "rec.data"], cwd=wd.path, env=env, stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 1
        assert p.stderr == "damoncore: writing the standard output: No space left on device\n"
        # an output file must be a regular one: a device is refused before anything runs
        rc, out, err = h.run_subprocess(["args", "damon", "--backend", "sim", "--out",
                                         "/dev/full"], wd.path)
        assert rc == 2 and "'/dev/full': exists and is not a regular file" in err, err


def test_a_closed_pipe_is_not_an_error(tmp_path):
    import subprocess
    import sys

    from cli_helpers import make_snapshots

    from damoncore import records as rec
    r = rec.Record(0, 0, 0, 4242, {"sample_us": 5000, "aggr_us": 100000})
    r.snapshots = make_snapshots(2000)          # ~1 MB of report: more than a pipe holds
    rec.write_records([r], str(tmp_path / "big.data"))
    env = dict(os.environ, PYTHONPATH=h.SRC)
    with h.Workdir() as wd:
        p = subprocess.Popen([sys.executable, "-m", "damoncore", "report", "access", "-i",
                              str(tmp_path / "big.data")], cwd=wd.path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.readline()
        p.stdout.close()                # as `| head -1` does
        err = p.stderr.read().decode()
        p.wait(60)
    assert p.returncode == 0 and err == ""
