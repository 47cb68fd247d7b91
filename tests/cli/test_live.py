"""``tune`` and ``stop`` on running ``start``/``record``/``numa-migrate`` processes, from the
outside: real processes, the CLI as a user types it.

- a size quota tuned online takes effect in the next charge window (the window the commit
  lands in keeps the old effective quota, as the kernel's does), with the scheme's stats
  carried over;
- bad input is refused with one line and exit 2, and the run goes on unchanged (its status
  identical before and after);
- ``stop`` ends the run as SIGTERM does: exit 0, record complete, socket gone.
"""

import json
import time

from damoncore.records import read_records

from live_helpers import MiB, Run, scheme0

# one paddr context over the tiering preset's CXL node, a stat scheme whose size quota is
# used up in the first apply of each 60 s (simulated) window: what a window tries is its
# quota, exactly
QUOTA_SPEC = ["--numa_node", "1", "-s", "5ms", "-a", "100ms", "--damos_action", "stat",
              "--damos_quota_interval", "60s", "--damos_quota_space"]
START = ["--backend", "sim", "--sim_preset", "tiering", "--quiet"]


def _one_line_error(r):
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("damoncore: error: ") and "Traceback" not in r.stderr


def test_tune_a_quota_online_refuse_bad_input_and_stop(tmp_path):
    with Run(tmp_path, *START, *QUOTA_SPEC, "32MB") as run:
        seen = run.wait_for(lambda st: scheme0(st)["stats"]["sz_tried"] >= 64 * MiB)
        r = run.cli("tune", "--json", *QUOTA_SPEC, "16MB")
        assert r.returncode == 0, r.stderr
        committed = json.loads(r.stdout)["committed_at_us"][0][0]
        later = set()

        def three_windows_after(st):
            w = scheme0(st)["quota"]["window_start_us"]
            if w > committed:
                later.add(w)
            return len(later) >= 3
        seen += run.wait_for(three_windows_after)
        windows = {}
        for st in seen:
            s = scheme0(st)
            windows.setdefault(s["quota"]["window_start_us"], []).append(
                (st["kdamonds"][0]["contexts"][0]["now_us"], s["effective_sz_bytes"],
                 s["stats"]["sz_tried"]))
        starts = sorted(windows)
        tried = {w: windows[w][-1][2] - windows[p][-1][2] for p, w in zip(starts, starts[1:])}
        at_commit = max(w for w in starts if w <= committed)
        for w in starts:
            esz = {e for _, e, _ in windows[w]}
            # the quota in use: the old one up to the end of the window the commit landed in
            assert esz == ({16 * MiB} if w > committed else {32 * MiB}), (w, committed, esz)
            if w in tried:
                assert tried[w] == (16 if w > committed else 32) * MiB
        assert windows[at_commit][-1][1] == 32 * MiB
        # the commit kept the stats: the tried bytes only ever grew
        all_tried = [x[2] for w in starts for x in windows[w]]
        assert all_tried == sorted(all_tried)

        # bad input, caught here (a size) and by the run (a node it does not have)
        params = run.cli("status", "--kdamonds")
        assert params.returncode == 0, params.stderr
        for bad in (["--damos_quota_space", "-3MB"], ["--damos_quota_space", "16MB",
                                                     "--numa_node", "9"]):
            r = run.cli("tune", *QUOTA_SPEC[:-1], *bad)
            _one_line_error(r)
        assert "--numa_node 9" in r.stderr and "(the run is unchanged)" in r.stderr
        assert run.cli("status", "--kdamonds").stdout == params.stdout
        # paused, nothing moves: the status is the same, number for number, around a bad
        # tune (and then a bad kdamonds JSON)
        r = run.cli("tune", *QUOTA_SPEC, "16MB", "--pause_ctx", "0")
        assert r.returncode == 0, r.stderr
        before = run.cli("status", "--json")
        assert json.loads(before.stdout)["kdamonds"][0]["contexts"][0]["pause"] is True
        _one_line_error(run.cli("tune", *QUOTA_SPEC, "1PB1"))
        kd = json.loads(run.cli("status", "--kdamonds").stdout)
        kd["kdamonds"][0]["contexts"][0]["schemes"][0]["quotas"]["sz_bytes"] = "lots"
        _one_line_error(run.cli("tune", "--kdamonds", json.dumps(kd)))
        time.sleep(0.3)
        assert run.cli("status", "--json").stdout == before.stdout
        assert run.proc.poll() is None

        r = run.cli("stop")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        # stop returns once the run has ended
        assert run.proc.poll() is not None or run.proc.wait(5) is not None
        code, err = run.finish()
        assert code == 0, err
        assert not run.sock.exists()


def test_stop_ends_a_record_with_a_complete_file(tmp_path):
    out = tmp_path / "live.data"
    with Run(tmp_path, "--backend", "sim", "--quiet", "-o", str(out), "--damos_action",
             "stat", command="record") as run:
        run.wait_for(lambda st: st["kdamonds"][0]["contexts"][0]["nr_aggregations"] > 20)
        r = run.cli("stop")
        assert r.returncode == 0, r.stderr
        code, err = run.finish()
        assert code == 0, err
    snaps = [s for rec in read_records(str(out)) for s in rec.snapshots]
    assert len(snaps) > 20


def test_stop_and_tune_find_their_run(tmp_path):
    r = Run.cli(type("R", (), {"env": {"XDG_RUNTIME_DIR": str(tmp_path)}})(), "stop")
    assert r.returncode == 1 and "no running damoncore" in r.stderr
    with Run(tmp_path, *START, "--damos_action", "stat") as a, \
            Run(tmp_path, *START, "--damos_action", "stat") as b:
        r = a.cli("tune", "--damos_action", "stat")
        assert r.returncode == 2 and "2 damoncore runs are live" in r.stderr
        assert str(a.proc.pid) in r.stderr and str(b.proc.pid) in r.stderr
        r = a.cli("stop", "--pid", str(b.proc.pid))
        assert r.returncode == 0, r.stderr
        assert b.finish()[0] == 0 and a.proc.poll() is None
        r = a.cli("stop", "--pid", str(b.proc.pid))
        assert r.returncode == 1 and "no damoncore run answers" in r.stderr
        r = a.cli("stop", "--socket", str(a.sock))
        assert r.returncode == 0 and a.finish()[0] == 0


def test_status_kdamonds_round_trips_through_tune(tmp_path):
    with Run(tmp_path, *START, *QUOTA_SPEC, "32MB") as run:
        run.wait_for(lambda st: scheme0(st)["stats"]["nr_tried"] > 0)
        spec = tmp_path / "spec.json"
        spec.write_text(run.cli("status", "--kdamonds").stdout)
        tried = scheme0(run.status())["stats"]["sz_tried"]
        r = run.cli("tune", "--kdamonds", str(spec))
        assert r.returncode == 0 and "committed to 1 context" in r.stdout, r.stderr
        assert scheme0(run.status())["stats"]["sz_tried"] >= tried
        assert run.cli("status", "--kdamonds").stdout == spec.read_text()


def test_numa_migrate_takes_status_tune_and_stop(tmp_path):
    with Run(tmp_path, "--backend", "sim", "--duration", "1000h",
             command="numa-migrate") as run:
        st = run.wait_for(lambda st: all(c["nr_aggregations"] > 5
                                         for c in st["kdamonds"][0]["contexts"]))[-1]
        assert len(st["kdamonds"]) == 1 and len(st["kdamonds"][0]["contexts"]) >= 2
        # its own parameters, edited and committed back: a shorter sampling interval
        kd = json.loads(run.cli("status", "--kdamonds", "--raw").stdout)
        for c in kd["kdamonds"][0]["contexts"]:
            c["intervals"]["sample_us"] = 4000
        r = run.cli("tune", "--kdamonds", json.dumps(kd))
        assert r.returncode == 0, r.stderr
        got = json.loads(run.cli("status", "--kdamonds", "--raw").stdout)
        # (the policy rewrites its schemes' filters and goals as it runs)
        assert [c["intervals"] for c in got["kdamonds"][0]["contexts"]] == \
            [c["intervals"] for c in kd["kdamonds"][0]["contexts"]]
        st = run.status()
        assert {c["sample_us"] for c in st["kdamonds"][0]["contexts"]} == {4000}
        r = run.cli("stop")
        assert r.returncode == 0, r.stderr
        code, err = run.finish()
        assert code == 0, err
