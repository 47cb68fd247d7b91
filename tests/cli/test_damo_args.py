"""damo's start options -> kdamonds JSON, compared with what damo itself produces."""

import json

import pytest

from damoncore import kdamonds as kd
from damoncore.cli import args as args_cmd
from damoncore.cli.damo_args import kdamonds_from_args, validate
from damoncore.cli.damo_options import ArgsError
from damoncore.cli.main import build_parser, main

from cli_helpers import BLOCK, SEED, run_cli

U64 = 2**64 - 1


def args_damon(sysfs, *argv, raw=False):
    a = build_parser().parse_args(["args", "damon", "--sysfs_root", sysfs, *argv]
                                  + (["--raw"] if raw else []))
    return json.loads(args_cmd.render(a))


def test_seed_gives_two_kdamonds_of_one_context(sysfs):
    d = args_damon(sysfs, *SEED)
    assert [len(k["contexts"]) for k in d["kdamonds"]] == [1, 1]
    demote, promote = (k["contexts"][0] for k in d["kdamonds"])
    # --numa_node N on paddr: the node's (merged) physical range
    assert demote["targets"] == [{"pid": None, "obsolete": False,
                                  "regions": [{"start": "0", "end": "536,870,912"}]}]
    assert promote["targets"][0]["regions"] == [{"start": "536,870,912",
                                                 "end": "1,073,741,824"}]
    for ctx in (demote, promote):
        assert ctx["ops"] == "paddr" and ctx["addr_unit"] == "1 B"
        # damo's default ops update interval is 1 s (the kernel's is 60 s)
        assert ctx["intervals"] == {"sample_us": "5 ms", "aggr_us": "100 ms",
                                    "ops_update_us": "1 s",
                                    "intervals_goal": {"access_bp": "4 %", "aggrs": "3",
                                                       "min_sample_us": "5 ms",
                                                       "max_sample_us": "10 s"}}
        assert ctx["nr_regions"] == {"min": "10", "max": "1,000"}
        assert ctx["sample_control"] == {"primitives_enabled": {"page_table": True,
                                                                "page_fault": False},
                                         "sample_filters": []}
    s0, s1 = demote["schemes"][0], promote["schemes"][0]
    assert (s0["action"], s0["target_nid"], s0["dests"]) == ("migrate_cold", 1, [])
    assert (s1["action"], s1["target_nid"]) == ("migrate_hot", 0)
    assert s0["access_pattern"] == {"sz_bytes": {"min": "0 B", "max": "max"},
                                    "nr_accesses": {"min": "0 %", "max": "0 %"},
                                    "age": {"min": "0 ns", "max": "max"}}
    # damo prints the 'max' access rate as 2**64-1 percent
    assert s1["access_pattern"]["nr_accesses"] == {"min": "5 %",
                                                   "max": "18,446,744,073,709,551,615 %"}
    for s in (s0, s1):
        assert s["apply_interval_us"] == "1 s"
        q = s["quotas"]
        assert (q["time_ms"], q["sz_bytes"], q["reset_interval_ms"]) == \
            ("0 ns", "200.000 MiB", "1 s")
        # --damos_quota_interval without --damos_quota_weights: damo uses 1 permil each
        assert q["weights"] == {"sz_permil": "0.1 %", "nr_accesses_permil": "0.1 %",
                                "age_permil": "0.1 %"}
        assert q["goal_tuner"] == "consist" and q["effective_sz_bytes"] == "0 B"
        assert s["watermarks"]["metric"] == "none"
    assert s0["quotas"]["goals"] == [{"metric": "node_mem_free_bp", "nid": "0",
                                      "memcg_path": None, "target_value": "50",
                                      "current_value": "0"}]
    assert s1["quotas"]["goals"][0]["metric"] == "node_mem_used_bp"
    assert s1["quotas"]["goals"][0]["target_value"] == "9,970"
    young = {"filter_type": "young", "matching": True, "memcg_path": None,
             "address_range": None, "damon_target_idx": None, "hugepage_size": None}
    assert s0["filters"] == [dict(young, allow=False)]
    assert s1["filters"] == [dict(young, allow=True)]


def test_seed_raw_numbers(sysfs):
    s = args_damon(sysfs, *SEED, raw=True)["kdamonds"][0]["contexts"][0]["schemes"][0]
    assert s["quotas"]["sz_bytes"] == 200 * 2**20
    # damo prints raw ms/us times in ns here (a bug); we print the field's own unit
    assert s["quotas"]["reset_interval_ms"] == 1000
    assert s["access_pattern"]["age"] == {"min": 0, "max": U64}
    assert s["quotas"]["goals"][0]["target_value"] == 50


@pytest.mark.parametrize("raw", [False, True])
def test_kdamonds_file_round_trips(sysfs, tmp_path, raw):
    d = args_damon(sysfs, *SEED, raw=raw)
    f = tmp_path / "kd.json"
    f.write_text(json.dumps(d))
    again = args_damon(sysfs, "--kdamonds", str(f), raw=raw)
    assert again == d
    # and the objects keep every value
    ctxs = validate(d)
    s = ctxs[1][0].schemes[0]
    assert s.access_pattern.nr_accesses_unit == "percent"
    assert (s.access_pattern.min_nr_accesses, s.access_pattern.max_nr_accesses) == (5, U64)
    assert s.quota.goals[0].target_value == 9970 and s.quota.goals[0].nid == 0
    assert ctxs[0][0].attrs.intervals_goal.access_bp == 400
    assert ctxs[0][0].targets[0].ranges == [(0, 4 * BLOCK)]


def test_units():
    assert kd.parse_bytes("200MB") == 200 * 2**20 == kd.parse_bytes("200.000 MiB")
    assert kd.parse_bytes("4K") == 4096
    assert kd.parse_ratio("0.5%", 10000) == 50 and kd.parse_ratio("99.7%", 10000) == 9970
    assert kd.parse_ratio("4 %", 10000) == 400 and kd.parse_ratio("400", 10000) == 400
    assert kd.parse_time_us("5ms") == 5000 and kd.parse_time_us("1m") == 60_000_000
    assert kd.parse_time_us("1 m 30 s") == 90_000_000 and kd.parse_time_ms("1s") == 1000
    assert kd.parse_percent("max") == U64
    # human forms that would round fall back to exact values
    assert kd.fmt_sz(123456789) == "123456789 B" and kd.fmt_sz(3 * 2**20) == "3.000 MiB"
    assert kd.fmt_time_us(5_123_456) == "5123456 us" and kd.fmt_time_us(1500) == "1.500 ms"
    assert kd.fmt_time_us_exact(90_000_001) == "1 m 30 s 1 us"
    for v in (1, 999, 2**20 + 1, 123456789, U64):
        assert kd.parse_bytes(kd.fmt_sz(v)) == v


def _parse(*argv):
    a = build_parser().parse_args(["args", "damon", *argv])
    return kdamonds_from_args(a)


def test_filters_old_form_dests_and_sample_filters():
    d = _parse("--regions", "4096-1048576", "--damos_action", "migrate_hot", "1", "3", "2", "1",
               "--damos_filter", "anon", "nomatching", "allow",
               "--damos_filter", "addr", "matching", "0", "8192",
               "--sample_primitives", "page_fault", "--sample_filter", "allow", "cpu", "0-4",
               "--sample_filter", "allow", "threads", "777,888,999",
               "--sample_filter", "reject", "write")
    ctx = d["kdamonds"][0]["contexts"][0]
    s = ctx["schemes"][0]
    assert s["dests"] == [{"id": 1, "weight": 3}, {"id": 2, "weight": 1}]
    assert s["target_nid"] is None
    assert [(f["filter_type"], f["matching"], f["allow"]) for f in s["filters"]] == \
        [("anon", False, True), ("addr", True, False)]
    assert s["filters"][1]["address_range"] == {"start": 0, "end": 8192}
    sc = ctx["sample_control"]
    assert sc["primitives_enabled"] == {"page_table": False, "page_fault": True}
    assert [(f["filter_type"], f["allow"], f["cpumask"], f["tid_arr"])
            for f in sc["sample_filters"]] == [("cpumask", True, "0-4", None),
                                               ("threads", True, None, "777,888,999"),
                                               ("write", False, None, None)]
    c = validate(d)[0][0]
    assert c.sample_filters[0].cpus == frozenset(range(5))
    assert c.sample_filters[1].tids == frozenset({777, 888, 999})
    assert c.primitives == ("page_fault",)


@pytest.mark.parametrize("argv,needle", [
    (["--damos_action", "stat", "--damos_quota_interval", "1s",
      "--damos_quota_goal", "node_bogus_bp", "1%", "0"], "node_bogus_bp"),
    (["--damos_action", "stat", "--damos_apply_interval", "5parsecs"], "5parsecs"),
    (["--damos_action", "stat", "--damos_access_rate", "50%", "10%"], "50% 10%"),
    (["--damos_action", "stat", "--damos_quota_goal"], "--damos_quota_goal"),
    (["--damos_action", "stat", "--damos_filter", "allow", "young",
      "--damos_nr_filters", "2"], "--damos_nr_filters 2"),
    (["--damos_action", "teleport"], "teleport"),
    (["--damos_action", "migrate_hot", "zero"], "migrate_hot zero"),
    (["--numa_node", "7"], "--numa_node 7"),
    (["--damos_action", "stat", "--damos_quota_interval", "1s",
      "--damos_quota_space", "12QB"], "12QB"),
    (["--nr_targets", "1", "1", "--nr_ctxs", "3"], "--nr_ctxs 3"),
])
def test_malformed_exits_2_with_one_line(sysfs, argv, needle):
    r = run_cli("args", "damon", "--sysfs_root", sysfs, *argv)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_start_rejects_before_starting(sysfs, tmp_path):
    out = tmp_path / "never.data"
    r = run_cli("start", "--sysfs_root", sysfs, "--record", str(out), "--damos_action",
                "migrate_cold", "--quiet")
    assert r.returncode == 2 and "migrate_cold" in r.stderr
    assert not out.exists()


def test_main_returns_2_in_process(capsys):
    assert main(["args", "damon", "--damos_action", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_args_error_is_one_class():
    with pytest.raises(ArgsError):
        _parse("--damos_action", "stat", "--damos_age", "5s", "1s")


def test_action_the_backend_cannot_do_exits_2_with_one_line(tmp_path):
    # the simulated backend has no lru_prio (nor has any user-space one)
    r = run_cli("start", "--backend", "sim", "--damos_action", "lru_prio", "--duration", "1s",
                "--quiet", "--no_status_socket")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "lru_prio" in lines[0] and "cannot do" in lines[0], r.stderr
