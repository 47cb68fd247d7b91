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
                 "--backend", "--sim_preset", "--device", "--hot", "--min_age", "--min_gain"):
        assert knob in text


@pytest.mark.parametrize("argv,word", [
    (["--quota", "-5"], "--quota"),
    (["--quota", "0"], "--quota"),
    (["--used_goal", "120%"], "--used_goal"),
    (["--free_goal", "0"], "--free_goal"),
    (["--hot", "abc"], "--hot"),
    (["--min_gain", "100%"], "--min_gain"),
    (["--device", "gpu"], "--device"),
    (["--device", "gpu0:9:901"], "node 9"),
    (["--pids", "1-x"], "--pids"),
    (["--duration", "soon"], "--duration"),
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
