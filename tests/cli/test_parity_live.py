"""Kernel 6.19-7.1 features from the command line, against their documented behaviour:
context ``pause`` (7.1), ``obsolete`` targets (6.19) and DAMOS ``nr_snapshots`` /
``max_nr_snapshots`` (7.0), in damo's option and kdamonds JSON field names."""

import json

from cli_helpers import run_cli
from live_helpers import Run, scheme0

START = ["--backend", "sim", "--sim_preset", "tiering", "--quiet"]
TWO_TARGETS = ["--ops", "paddr", "-r", "0-1G", "-r", "1G-2G", "--nr_targets", "2",
               "--damos_action", "stat"]


def args_damon(*argv):
    r = run_cli("args", "damon", "--backend", "sim", *argv)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_args_damon_uses_damos_field_names(tmp_path):
    d = args_damon("--ops", "paddr", "--ops", "paddr", "--nr_targets", "1", "1",
                   "--obsolete_targets", "1", "--pause_ctx", "1",
                   "--damos_action", "stat", "--damos_action", "stat",
                   "--damos_max_nr_snapshots", "5", "--nr_schemes", "1", "1")
    c0, c1 = d["kdamonds"][0]["contexts"]
    # damo: DamonCtx 'pause', DamonTarget 'obsolete', Damos stats 'max_nr_snapshots'
    assert (c0["pause"], c1["pause"]) == (False, True)
    assert (c0["targets"][0]["obsolete"], c1["targets"][0]["obsolete"]) == (False, True)
    assert c0["schemes"][0]["stats"] == {"max_nr_snapshots": "5"}
    assert "stats" not in c1["schemes"][0]           # unset, as damo's args damon
    f = tmp_path / "kd.json"
    f.write_text(json.dumps(d))
    assert args_damon("--kdamonds", str(f)) == d
    raw = args_damon("--damos_action", "stat", "--damos_max_nr_snapshots", "5", "--raw")
    assert raw["kdamonds"][0]["contexts"][0]["schemes"][0]["stats"] == {"max_nr_snapshots": 5}
    for argv, needle in ((["--pause_ctx", "3"], "--pause_ctx 3"),
                         (["--damos_action", "stat", "--damos_max_nr_snapshots", "-1"],
                          "--damos_max_nr_snapshots '-1'"),
                         (["--damos_action", "stat", "--damos_max_nr_snapshots", "1",
                           "--damos_max_nr_snapshots", "2"], "--damos_max_nr_snapshots"),
                         (["--obsolete_targets", "4"], "--obsolete_targets 4")):
        r = run_cli("args", "damon", "--backend", "sim", *argv)
        assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    # obsolete marks a running target a tune removes: a new run refuses it
    r = run_cli("start", "--backend", "sim", "--duration", "1s", "--obsolete_targets", "0")
    assert r.returncode == 2 and "obsolete" in r.stderr and r.stderr.count("\n") == 1


def ctx_of(st, i=0):
    return st["kdamonds"][0]["contexts"][i]


def test_pause_keeps_state_and_resume_goes_on(tmp_path):
    spec = ["--ops", "paddr", "--ops", "paddr", "--nr_targets", "1", "1", "-r", "0-1G",
            "-r", "1G-2G", "--damos_action", "stat", "--damos_action", "stat",
            "--nr_schemes", "1", "1"]
    with Run(tmp_path, *START, *spec, "--pause_ctx", "0") as run:
        # started paused: context 0 never samples while context 1 runs
        st = run.wait_for(lambda st: ctx_of(st, 1)["nr_aggregations"] > 50)[-1]
        assert ctx_of(st)["pause"] and ctx_of(st)["nr_aggregations"] == 0
        assert ctx_of(st)["nr_regions"] >= 10        # its regions were set up at start
        r = run.cli("tune", *spec)                   # the full spec: pause unset -> resume
        assert r.returncode == 0, r.stderr
        st = run.wait_for(lambda st: ctx_of(st)["nr_aggregations"] > 20)[-1]
        assert not ctx_of(st)["pause"]
        r = run.cli("tune", *spec, "--pause_ctx", "0")
        assert r.returncode == 0, r.stderr
        st = run.status()
        frozen, other = ctx_of(st), ctx_of(st, 1)["nr_aggregations"]
        run.wait_for(lambda st: ctx_of(st, 1)["nr_aggregations"] > other + 100)
        now = ctx_of(run.status())
        # paused: its regions, history and stats stand still
        assert {k: now[k] for k in ("nr_aggregations", "nr_regions", "schemes")} == \
            {k: frozen[k] for k in ("nr_aggregations", "nr_regions", "schemes")}
        assert "(paused)" in run.cli("status").stdout


def test_obsolete_target_removed_online(tmp_path):
    with Run(tmp_path, *START, *TWO_TARGETS) as run:
        run.wait_for(lambda st: ctx_of(st)["nr_aggregations"] > 10)
        assert ctx_of(run.status())["nr_targets"] == 2
        r = run.cli("tune", *TWO_TARGETS, "--obsolete_targets", "0")
        assert r.returncode == 0, r.stderr
        st = run.status()
        assert ctx_of(st)["nr_targets"] == 1
        kd = json.loads(run.cli("status", "--kdamonds", "--raw").stdout)
        targets = kd["kdamonds"][0]["contexts"][0]["targets"]
        assert targets == [{"pid": None, "obsolete": False,
                            "regions": [{"start": 1 << 30, "end": 2 << 30}]}]
        tried = scheme0(st)["stats"]["sz_tried"]
        st = run.wait_for(lambda s: scheme0(s)["stats"]["sz_tried"] > tried)[-1]
        # an obsolete mark with no running target of its index: -EINVAL, nothing changes
        r = run.cli("tune", "--ops", "paddr", "-r", "1G-2G", "-r", "2G-3G", "--nr_targets",
                    "2", "--damos_action", "stat", "--obsolete_targets", "1")
        assert r.returncode == 2 and "target 1 is marked obsolete" in r.stderr, r.stderr
        assert ctx_of(run.status())["nr_targets"] == 1


def test_max_nr_snapshots_deactivates_and_a_tune_raises_it(tmp_path):
    spec = ["--damos_action", "stat", "--damos_apply_interval", "100ms"]
    with Run(tmp_path, *START, *spec, "--damos_max_nr_snapshots", "5") as run:
        st = run.wait_for(lambda st: scheme0(st)["stats"]["nr_snapshots"] >= 5)[-1]
        first = scheme0(st)
        run.wait_for(lambda s: ctx_of(s)["nr_aggregations"] > ctx_of(st)["nr_aggregations"]
                     + 50)
        later = scheme0(run.status())
        assert later["stats"]["nr_snapshots"] == 5 and later["active"] is False
        assert later["stats"]["nr_tried"] == first["stats"]["nr_tried"]
        assert "snapshots 5 (max 5)" in run.cli("status").stdout
        r = run.cli("tune", *spec, "--damos_max_nr_snapshots", "8")
        assert r.returncode == 0, r.stderr
        st = run.wait_for(lambda s: scheme0(s)["stats"]["nr_snapshots"] >= 8)[-1]
        run.wait_for(lambda s: ctx_of(s)["nr_aggregations"] > ctx_of(st)["nr_aggregations"]
                     + 50)
        assert scheme0(run.status())["stats"]["nr_snapshots"] == 8
