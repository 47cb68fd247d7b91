"""``damoncore numa-migrate``: help, argument errors (exit 2, one line), sim runs."""

import pytest

from damoncore.cli import main as cli_main
from damoncore.cli import numa_migrate


@pytest.fixture
def run(monkeypatch, capsys):
    # the lead registers the subcommand in cli/main.py; until then, register it here
    monkeypatch.setitem(cli_main.SUBCMDS, "numa-migrate",
                        (numa_migrate, "holistic NUMA migration"))

    def go(*argv):
        rc = cli_main.main(["numa-migrate", *argv])
        out, err = capsys.readouterr()
        return rc, out, err
    return go


def test_help_explains_every_knob(run):
    with pytest.raises(SystemExit) as e:
        run("--help")
    assert e.value.code == 0


def test_help_text(monkeypatch, capsys):
    monkeypatch.setitem(cli_main.SUBCMDS, "numa-migrate", (numa_migrate, "x"))
    with pytest.raises(SystemExit):
        cli_main.main(["numa-migrate", "--help"])
    text = capsys.readouterr().out
    for knob in ("--quota", "--used_goal", "--free_goal", "--pids", "--cgroup", "--duration",
                 "--backend", "--sim_preset", "--device", "--hot", "--min_age", "--min_gain",
                 "--sample", "--aggr", "--ops_update", "--min_reports_per_mib"):
        assert knob in text
    flat = " ".join(text.split())
    # the real backend's choices are explained: every fault sampled, hint-fault defaults
    assert "sample period 1" in flat and "numa_balancing=2" in flat
    assert "real 1s" in flat and "real no" in flat and "real 1s" in flat and "real 10s" in flat
    assert "hint fault" in flat
    assert "real 16" in flat and "stray fault" in flat


@pytest.mark.parametrize("argv,word", [
    (["--quota", "-5"], "--quota"),
    (["--quota", "0"], "--quota"),
    (["--used_goal", "120%"], "--used_goal"),
    (["--free_goal", "0"], "--free_goal"),
    (["--hot", "abc"], "--hot"),
    (["--min_gain", "100%"], "--min_gain"),
    (["--min_reports_per_mib", "-1"], "--min_reports_per_mib"),
    (["--min_reports_per_mib", "many"], "--min_reports_per_mib"),
    (["--min_reports_per_mib", "nan"], "--min_reports_per_mib"),
    (["--device", "gpu"], "--device"),
    (["--device", "gpu0:9:901"], "node 9"),
    (["--pids", "1-x"], "--pids"),
    (["--duration", "soon"], "--duration"),
    (["--sample", "fast"], "--sample"),
    (["--sample", "0"], "--sample"),
    (["--aggr", "1ms"], "--aggr"),
    (["--ops_update", "1ms"], "--ops_update"),
    (["--backend", "nope"], "--backend"),
    (["--bogus"], "--bogus"),
])
def test_bad_values_exit_2_with_one_line(run, argv, word):
    rc, out, err = run("--backend", "sim", *argv) if "--backend" not in argv else run(*argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and word in err
    assert err.startswith("damoncore: error: ")


def test_dry_run_prints_the_talks_paths(run):
    rc, out, err = run("--backend", "sim", "--sim_preset", "seed", "--dry_run")
    assert rc == 0, err
    assert "cpu0 (node 0): 0 (10) -> 1 (20) -> 2 (50) -> 3 (60)" in out
    assert "cpu2 (node 2): 2 (10) -> 3 (20) -> 0 (50) -> 1 (60)" in out
    assert "scheme cpu2:promote 0->2" in out and "scheme cpu0:demote 0->1" in out


def test_short_sim_run_promotes_the_hot_range(run):
    # seed preset: one 3 GiB process first-touched from node 0, 256 MiB hot range on CXL1
    rc, out, err = run("--backend", "sim", "--duration", "2s", "--quota", "1GiB")
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("cpu0:"))
    assert "1->0" in line
    assert "mean access cost" in out


def _parse(*argv):
    import argparse
    p = argparse.ArgumentParser()
    numa_migrate.set_argparser(p)
    return p.parse_args(list(argv))


def test_intervals_take_damo_time_units_and_backend_defaults():
    a = numa_migrate._config(_parse("--backend", "sim")).attrs
    assert (a.sample_us, a.aggr_us, a.ops_update_us) == (5_000, 100_000, 60_000_000)
    c = numa_migrate._config(_parse("--backend", "sim", "--sample", "10ms", "--aggr", "2s",
                                    "--ops_update", "500000"))
    assert (c.attrs.sample_us, c.attrs.aggr_us, c.attrs.ops_update_us) == \
        (10_000, 2_000_000, 500_000)
    c = numa_migrate._config(_parse("--backend", "real"))
    assert (c.attrs.sample_us, c.attrs.aggr_us, c.attrs.ops_update_us) == \
        (1_000_000, 1_000_000, 10_000_000)
    assert (c.hot_percent, c.min_age_aggrs, c.promote_from_top) == (1, 1, False)
    assert numa_migrate._config(_parse("--backend", "sim")).promote_from_top
    # one faulting sample in an aggregation is hot with the real defaults
    assert 100 / c.attrs.aggr_samples >= c.hot_percent
    # explicit values win over the backend's defaults
    c = numa_migrate._config(_parse("--backend", "real", "--hot", "30%", "--min_age", "4"))
    assert (c.hot_percent, c.min_age_aggrs) == (30, 4)


def test_real_backend_samples_every_fault(tmp_path):
    from test_topology import build_seed_sysfs
    from damoncore.ops.paddr import PaddrOps
    from damoncore.ops.perf import PerfOps
    sysfs = build_seed_sysfs(str(tmp_path))
    pol, m = numa_migrate.build(_parse("--backend", "real", "--sysfs_root", sysfs,
                                       "--aggr", "2s", "--sample", "20ms"))
    assert m is None and len(pol.contexts) == 2
    for c in pol.contexts:
        assert isinstance(c.ops, PerfOps) and isinstance(c.ops.base, PaddrOps)
        assert c.ops.sample_period == 1
        assert c.attrs.aggr_us == 2_000_000 and c.attrs.sample_us == 20_000
    assert [sorted(c.ops.cpus) for c in pol.contexts] == \
        [sorted(c.sample_filters[0].cpus) for c in pol.contexts]
    # no promotion out of the DRAM nodes (0, 2): top-tier pages never hint-fault
    names = [s.name for c in pol.contexts for s in c.schemes if "promote" in s.name]
    assert names and not [n for n in names if n.split()[-1].split("->")[0] in ("0", "2")]
    assert "cpu0:promote 3->0" in names and "cpu2:promote 1->2" in names
    assert pol.config.min_reports_per_mib == 16
    pol, _ = numa_migrate.build(_parse("--backend", "real", "--sysfs_root", sysfs,
                                       "--min_reports_per_mib", "0.5"))
    assert pol.config.min_reports_per_mib == 0.5


def test_real_backend_drops_the_monitors_own_faults(tmp_path):
    """The per-accessor PerfOps sample the whole system: their default drops this process'
    faults (tests/ops/test_ops_perf.py runs that on the real kernel)."""
    from damoncore.ops.perf import PerfOps
    from test_topology import build_seed_sysfs
    pol, _ = numa_migrate.build(_parse("--backend", "real", "--sysfs_root",
                                       build_seed_sysfs(str(tmp_path))))
    for c in pol.contexts:
        assert type(c.ops) is PerfOps
        assert c.ops.pid is None and c.ops.exclude_self is not False


def _memory_nodes():
    try:
        with open("/sys/devices/system/node/has_memory") as f:
            text = f.read().strip()
    except OSError:
        return None
    n = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


@pytest.mark.skipif(_memory_nodes() != 1, reason="needs a machine with one memory node")
def test_real_run_on_one_node_names_the_missing_second_node(run):
    rc, out, err = run("--backend", "real", "--duration", "1s")
    assert rc == 1
    assert "cpu0 (node 0): 0 (10)" in out                # the hierarchy is still shown
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "a second NUMA node" in lines[0], err
