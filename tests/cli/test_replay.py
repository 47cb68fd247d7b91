"""``damoncore replay`` from the outside: record a simulated run with schemes, replay the
same schemes over the record, compare window by window with what the run itself did (the
stats the record carries); replay a record in damo's own format; bad input."""

import json
import os
import zlib

import pytest

from cli_helpers import SEED, run_cli

MiB = 1 << 20

# scenario A: intervals auto-tuning on (the aggregation interval grows from 100 ms), every
# scheme applies at every aggregation; quotas with score weights, a consist goal tuner on a
# user_input goal (its quota grows from 1 byte), core addr filters
TUNED = ("--monitoring_intervals_goal 4% 3 5ms 10s "
         "--damos_action migrate_cold 1 --damos_access_rate 0% 0% --damos_age 1s max "
         "--damos_quota_interval 1s --damos_quota_space 100MB --damos_quota_weights 0 100 100 "
         "--damos_action migrate_hot 0 --damos_access_rate 5% max --damos_quota_interval 1s "
         "--damos_quota_space 50MB "
         "--damos_action stat --damos_access_rate 0% max --damos_quota_interval 300ms "
         "--damos_quota_space 300MB --damos_quota_goal user_input 100 1 "
         "--damos_filter reject addr 1G 2G "
         "--damos_nr_quota_goals 0 0 1 --damos_nr_filters 0 0 1").split()
# scenario B: fixed intervals, apply intervals of 500 ms and 1 s (multiples of 100 ms), a
# pageout scheme with an allow-addr filter, quota windows shorter than the apply interval
FIXED = ("--damos_action pageout --damos_access_rate 0% 0% --damos_apply_interval 500ms "
         "--damos_quota_interval 200ms --damos_quota_space 64MB "
         "--damos_filter allow addr 0 1536M "
         "--damos_action migrate_hot 1 --damos_access_rate 50% max --damos_apply_interval 1s "
         "--damos_quota_interval 1s --damos_quota_space 200MB --damos_quota_weights 0 1 0 "
         "--damos_nr_filters 1 0").split()


def _record(tmp_path, opts, duration="20s", name="r.data"):
    out = str(tmp_path / name)
    r = run_cli("record", "--backend", "sim", "--duration", duration, "-o", out, "--quiet",
                "--no_status_socket", *opts)
    assert r.returncode == 0, r.stderr
    return out


def _recorded_windows(path):
    """{(kdamond, context, scheme): [(nr_tried, sz_tried) per window]} straight from the
    file: the deltas of the cumulative stats the run wrote with each snapshot."""
    with open(path, "rb") as f:
        data = f.read()
    recs = json.loads(zlib.decompress(data) if data[:1] not in (b"[", b"{") else data)
    out = {}
    for rec in recs:
        if rec["target_id"] != 0:
            continue
        prev = None
        for snap in rec["snapshots"]:
            stats = snap["damoncore_schemes"]
            for si, st in enumerate(stats):
                p = prev[si] if prev and si < len(prev) else {"nr_tried": 0, "sz_tried": 0}
                out.setdefault((rec["kdamond_idx"], rec["context_idx"], si), []).append(
                    (st["nr_tried"] - p["nr_tried"], st["sz_tried"] - p["sz_tried"]))
            prev = stats
    return out


def _replayed_windows(stdout):
    out = {}
    for w in json.loads(stdout)["windows"]:
        out.setdefault((w["kdamond_idx"], w["context_idx"], w["scheme_idx"]), []).append(
            (w["nr_tried"], w["sz_tried"]))
    return out


@pytest.mark.parametrize("opts", [TUNED, FIXED], ids=["autotuned", "fixed"])
def test_replay_reproduces_the_recorded_runs_tried_bytes_exactly(tmp_path, opts):
    path = _record(tmp_path, opts)
    live = _recorded_windows(path)
    r = run_cli("replay", path, "--json", *opts)
    assert r.returncode == 0, r.stderr
    replayed = _replayed_windows(r.stdout)
    assert replayed.keys() == live.keys()
    for key in live:
        assert replayed[key] == live[key], key
    # not a trivial match: schemes tried, in windows of different sizes, and some not at all
    for key, ws in live.items():
        sizes = {sz for _, sz in ws}
        assert len(sizes) >= 2, (key, sizes)
    assert sum(sz for ws in live.values() for _, sz in ws) > 500 * MiB
    if opts is TUNED:
        aggrs = {w["end_time_ns"] - w["start_time_ns"] for w in json.loads(r.stdout)["windows"]}
        assert len(aggrs) > 2, "the intervals were not tuned"


def test_replay_uses_the_recorded_schemes_when_given_none(tmp_path):
    path = _record(tmp_path, FIXED, "5s")
    given = run_cli("replay", path, "--json", *FIXED)
    recorded = run_cli("replay", path, "--json")
    assert given.returncode == recorded.returncode == 0, recorded.stderr
    assert json.loads(given.stdout)["windows"] == json.loads(recorded.stdout)["windows"]
    text = run_cli("replay", path)
    assert text.returncode == 0
    assert "kdamond 0 context 0 scheme 0: pageout, access 0%..0%, quota 64.000 MiB per " \
           "200 ms" in text.stdout
    assert "the replay tried the same in 50 of 50 windows" in text.stdout


def test_other_schemes_over_the_same_record(tmp_path):
    """What-if: a different quota over the same record tries what that quota allows."""
    path = _record(tmp_path, FIXED, "5s")
    r = run_cli("replay", path, "--json", "--damos_action", "pageout", "--damos_access_rate",
                "0%", "0%", "--damos_quota_interval", "100ms", "--damos_quota_space", "4MB")
    assert r.returncode == 0, r.stderr
    ws = json.loads(r.stdout)["windows"]
    assert len(ws) == 50 and all(w["due"] for w in ws)
    assert all(w["sz_tried"] <= 4 * MiB for w in ws)
    assert sum(w["sz_tried"] == 4 * MiB for w in ws) >= 45
    # paged-out bytes leave node 0 for swap in the placement
    pl = json.loads(r.stdout)["placement"]
    assert pl["swap_bytes"] == sum(w["sz_applied"] for w in ws) > 0



def test_a_run_tuned_while_it_recorded_replays_as_it_ran(tmp_path):
    """A ``record`` tuned online (a quota cut to a quarter, a scheme added) writes the
    schemes each commit set; replaying the record's own schemes commits them at the same
    windows and tries what the run tried, window by window."""
    from live_helpers import Run
    out = str(tmp_path / "tuned.data")
    first = ["--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
             "--damos_quota_interval", "200ms", "--damos_quota_space", "64MB"]
    second = ["--damos_action", "stat", "--damos_access_rate", "0%", "max",
              "--damos_quota_interval", "300ms", "--damos_quota_space", "100MB"]
    with Run(tmp_path, "--backend", "sim", "-o", out, "--quiet", *first,
             command="record") as run:
        run.wait_for(lambda st: st["kdamonds"][0]["contexts"][0]["nr_aggregations"] >= 20)
        r = run.cli("tune", *first[:-1], "16MB", *second)
        assert r.returncode == 0, r.stderr
        run.wait_for(lambda st: len(st["kdamonds"][0]["contexts"][0]["schemes"]) == 2 and
                     st["kdamonds"][0]["contexts"][0]["schemes"][1]["stats"]["nr_tried"] > 0)
        n = run.status()["kdamonds"][0]["contexts"][0]["nr_aggregations"]
        run.wait_for(lambda st: st["kdamonds"][0]["contexts"][0]["nr_aggregations"] >= n + 20)
        assert run.cli("stop").returncode == 0
        code, err = run.finish()
        assert code == 0, err
    live = _recorded_windows(out)
    r = run_cli("replay", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("tuned online" in n for n in doc["notes"]), doc["notes"]
    replayed = _replayed_windows(r.stdout)
    assert replayed.keys() == live.keys() == {(0, 0, 0), (0, 0, 1)}
    # the tuned scheme keeps its apply times: window by window as the run; the added one's
    # windows are the last ones of the run (line them up at the end), and where the commit
    # fell between two aggregations the run applied it between them too, on regions no
    # record holds: its bytes are the run's (its quota binds), its region counts may not be
    assert replayed[(0, 0, 0)] == live[(0, 0, 0)]
    added = replayed[(0, 0, 1)][-len(live[(0, 0, 1)]):]
    assert [sz for _, sz in added] == [sz for _, sz in live[(0, 0, 1)]]
    tried0 = {sz for _, sz in live[(0, 0, 0)]}
    assert {64 * MiB, 16 * MiB} <= tried0, tried0
    # replaying other schemes over it does not follow the run's commits
    r = run_cli("replay", out, "--json", *first)
    assert r.returncode == 0, r.stderr
    ws = json.loads(r.stdout)["windows"]
    assert {w["scheme_idx"] for w in ws} == {0}
    assert max(w["sz_tried"] for w in ws[-10:]) == 64 * MiB

# --- damo's own format ------------------------------------------------------------------
def _damo_layout(path, out, compressed):
    """Our record rewritten the way damo writes one (``damo record``'s json_compressed or
    json: ``to_kvpairs(raw=True)`` under ``json.dumps(indent=4)``), from damo's documented
    DamonRecord structure; none of damo's own files."""
    with open(path, "rb") as f:
        recs = json.loads(zlib.decompress(f.read()))
    damo = []
    for rec in recs:
        iv = rec["intervals"]
        damo.append({
            "kdamond_idx": rec["kdamond_idx"], "context_idx": rec["context_idx"],
            "intervals": {"sample_us": iv["sample_us"], "aggr_us": iv["aggr_us"],
                          "ops_update_us": iv["ops_update_us"],
                          "intervals_goal": iv["intervals_goal"]},
            "scheme_idx": None, "target_id": rec["target_id"], "scheme_filters": [],
            "snapshots": [{
                "start_time": s["start_time"], "end_time": s["end_time"],
                "regions": [{"start": r["start"], "end": r["end"],
                             "nr_accesses": {"samples": r["nr_accesses"]["samples"],
                                             "percent": None},
                             "age": {"usec": None, "aggr_intervals": r["age"]["aggr_intervals"]},
                             "probe_hits": [], "sz_filter_passed": 0} for r in s["regions"]],
                "total_bytes": s["total_bytes"], "damos_stats": None,
                "sample_interval_us": s["sample_interval_us"]} for s in rec["snapshots"]],
            "data_source": "unknown"})
    text = json.dumps(damo, indent=4).encode()
    with open(out, "wb") as f:
        f.write(zlib.compress(text) if compressed else text)
    assert b"damoncore" not in text
    return out


PAGEOUT = ("--damos_action pageout --damos_access_rate 0% 0% --damos_age 200ms max "
           "--damos_quota_interval 300ms --damos_quota_space 96MB").split()


@pytest.mark.parametrize("compressed", [True, False], ids=["json_compressed", "json"])
def test_replay_runs_on_a_record_in_damos_format(tmp_path, compressed):
    # a record without schemes: its regions are the same in both layouts
    path = _record(tmp_path, [], "5s")
    damo = _damo_layout(path, str(tmp_path / "damo.data"), compressed)
    ours = run_cli("replay", path, "--json", *PAGEOUT)
    theirs = run_cli("replay", damo, "--json", *PAGEOUT)
    assert ours.returncode == theirs.returncode == 0, theirs.stderr
    w_ours = json.loads(ours.stdout)["windows"]
    w_theirs = json.loads(theirs.stdout)["windows"]
    key = lambda w: {k: w[k] for k in ("window", "nr_tried", "sz_tried", "sz_applied",
                                       "effective_sz_bytes")}
    assert [key(w) for w in w_theirs] == [key(w) for w in w_ours]
    assert sum(w["sz_tried"] for w in w_theirs) > 0
    assert all(w["recorded"] is None for w in w_theirs)
    # damo's record carries no schemes: they must be given
    r = run_cli("replay", damo)
    assert r.returncode == 2 and "does not hold the schemes" in r.stderr


def test_replay_of_a_small_hand_made_damo_record(tmp_path):
    """Three regions, idle/busy known: a 1 MiB-per-100 ms pageout of idle memory aged 200 ms
    tries exactly what is idle and old enough, lowest address first."""
    def region(a, b, nr, age):
        return {"start": a, "end": b, "nr_accesses": {"samples": nr, "percent": None},
                "age": {"usec": None, "aggr_intervals": age}, "probe_hits": [],
                "sz_filter_passed": 0}
    snaps = []
    for i in range(4):
        snaps.append({"start_time": i * 100_000_000, "end_time": (i + 1) * 100_000_000,
                      "regions": [region(0, 4 * MiB, 0, i), region(4 * MiB, 8 * MiB, 20, i),
                                  region(8 * MiB, 9 * MiB, 0, 0)],
                      "total_bytes": 9 * MiB, "damos_stats": None, "sample_interval_us": 5000})
    rec = [{"kdamond_idx": 0, "context_idx": 0,
            "intervals": {"sample_us": 5000, "aggr_us": 100000, "ops_update_us": 1000000,
                          "intervals_goal": {"access_bp": 0, "aggrs": 0, "min_sample_us": 0,
                                             "max_sample_us": 0}},
            "scheme_idx": None, "target_id": 0, "scheme_filters": [], "snapshots": snaps,
            "data_source": "unknown"}]
    path = str(tmp_path / "hand.data")
    with open(path, "wb") as f:
        f.write(zlib.compress(json.dumps(rec, indent=4).encode()))
    r = run_cli("replay", path, "--json", "--damos_action", "pageout", "--damos_access_rate",
                "0%", "0%", "--damos_age", "200ms", "max", "--damos_quota_interval", "100ms",
                "--damos_quota_space", "1MB")
    assert r.returncode == 0, r.stderr
    tried = [w["sz_tried"] for w in json.loads(r.stdout)["windows"]]
    # ages 0, 1 are below 200 ms; from window 2 the first idle region is old enough
    assert tried == [0, 0, MiB, MiB]


def _schemes_of(*argv):
    spec = run_cli("args", "damon", *argv, "--raw")
    return json.loads(spec.stdout)["kdamonds"][0]["contexts"][0]["schemes"]


@pytest.mark.parametrize("committed,msg", [
    (lambda: [{"action": "stat"}], "damoncore_schemes_committed: expected time_us"),
    (lambda: {"time_us": 0, "sample_intervals": 0,
              "schemes": _schemes_of("--damos_action", "stat", "--damos_filter", "reject",
                                     "anon")},
     "window 1 scheme 0 (stat), set by a commit: "),
    (lambda: {"time_us": 0, "sample_intervals": 0, "schemes": [{"action": "fly"}]},
     "window 1: the schemes a commit set"),
], ids=["damaged", "unsupported", "unknown"])
def test_a_record_with_a_bad_commit_is_refused_before_replaying(tmp_path, committed, msg):
    """A record whose commit entry is damaged or names what a replay cannot run: one line,
    exit 2, nothing replayed."""
    path = _record(tmp_path, FIXED, "1s")
    recs = json.loads(zlib.decompress(open(path, "rb").read()))
    recs[0]["snapshots"][1]["damoncore_schemes_committed"] = committed()
    with open(path, "wb") as f:
        f.write(zlib.compress(json.dumps(recs).encode()))
    r = run_cli("replay", path)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,msg", [
    (["--placement", "x"], "not a node id"),
    (["--placement", "0:5G-1G"], "start must be below end"),
    (["--placement", "0:0-2G", "--placement", "1:1G-3G"], "overlap"),
    (["--node_capacity", "0", "lots"], "not a size"),
    (["--throughput", "0"], "must be above 0"),
    (["--damos_action", "pageout", "--damos_filter", "reject", "anon"], "cannot evaluate filter 'anon'"),
    (["--damos_action", "migrate_hot", "0", "--damos_quota_interval", "1s",
      "--damos_quota_goal", "node_mem_used_bp", "99%", "0"], "--node_capacity 0"),
    (list(SEED), "the schemes name 2 context(s), the record holds 1"),
    # without --damos_action the record's own schemes replay: a scheme option is not ignored
    (["--damos_quota_space", "16MB"], "--damos_quota_space given without --damos_action"),
])
def test_bad_replay_input_is_one_line_exit_2(tmp_path, argv, msg):
    path = _record(tmp_path, [], "300ms")
    if not any(a.startswith("--damos") for a in argv):
        argv = argv + ["--damos_action", "stat"]
    r = run_cli("replay", path, *argv)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], lines


def test_replay_of_a_missing_or_broken_record(tmp_path):
    r = run_cli("replay", str(tmp_path / "nope.data"), "--damos_action", "stat")
    assert r.returncode == 2 and "no such file" in r.stderr
    bad = tmp_path / "bad.data"
    bad.write_bytes(b"\x78\x9c garbage")
    r = run_cli("replay", str(bad), "--damos_action", "stat")
    assert r.returncode == 2 and "not a damo record file" in r.stderr
    assert os.listdir(tmp_path) == ["bad.data"]          # nothing written


def test_the_readme_example(tmp_path):
    """README's replay example, as written there: the 16 MiB quota tries a quarter of what
    the recorded 64 MiB one did, window by window."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    lines = [line.strip() for line in readme.splitlines()
             if line.strip().startswith(("damoncore record --backend sim --duration 20s -o "
                                         "run.data", "damoncore replay run.data"))]
    assert len(lines) == 2, lines
    out = str(tmp_path / "run.data")
    record = lines[0].split()[1:]
    record[record.index("run.data")] = out
    r = run_cli(*record, "--quiet", "--no_status_socket")
    assert r.returncode == 0, r.stderr
    replay = lines[1].split()[1:]
    replay[replay.index("run.data")] = out
    r = run_cli(*replay, "--json")
    assert r.returncode == 0, r.stderr
    ws = json.loads(r.stdout)["windows"]
    assert all(w["sz_tried"] <= 16 * MiB for w in ws)
    assert [w["recorded"]["sz_tried"] // 4 for w in ws if w["sz_tried"]] == \
        [w["sz_tried"] for w in ws if w["sz_tried"]]
    text = run_cli(*replay)
    assert text.returncode == 0 and "quota 16.000 MiB per 200 ms" in text.stdout
