"""What a user sees first: ``python -m damoncore``, ``--version`` from the one version in
pyproject.toml, the LICENSE pyproject names, py.typed, the help and the progress lines."""

import os
import re

from cli_helpers import ROOT, SEED, run_cli

import hostile as h


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        return f.read()


def test_python_m_damoncore_and_version():
    version = re.search(r'^version = "([^"]+)"', _pyproject(), re.MULTILINE).group(1)
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(["--version"], wd.path)
    assert rc == 0 and out.strip() == f"damoncore {version}", (out, err)
    r = run_cli("--version")            # the console script's module
    assert r.returncode == 0 and r.stdout.strip() == f"damoncore {version}"
    import damoncore
    assert damoncore.__version__ == version


def test_license_is_the_apache_text_pyproject_names():
    assert 'license = "Apache-2.0"' in _pyproject()
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000


def test_py_typed_ships():
    assert os.path.exists(os.path.join(ROOT, "src", "damoncore", "py.typed"))
    assert '"py.typed"' in _pyproject()


def test_help_says_duration_is_simulated_time_on_sim():
    for cmd in ("start", "record", "numa-migrate", "demo"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and r.stderr == ""
        assert "simulated time" in " ".join(r.stdout.split()), cmd


def test_progress_lines_carry_the_elapsed_time(tmp_path):
    r = run_cli("start", "--backend", "sim", "--duration", "2s", "--progress_interval", "0",
                "--damos_action", "stat", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if "kd0/ctx0" in line]
    assert len(progress) > 3
    times = [re.match(r"\[([0-9.]+) (s|ms) simulated, [0-9.]+ s wall\] ", line)
             for line in progress]
    assert all(times), progress[:3]
    assert progress[-1].startswith("[2 s simulated")


def test_a_consist_goal_from_1_byte_prints_one_hint(tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    base = ["start", "--backend", "sim", "--sim_preset", "tiering", "--duration", "100ms",
            *SEED]
    r = run_cli(*base, env=env)
    assert r.returncode == 0, r.stderr
    hints = [line for line in r.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1
    assert "--damos_quota_goal_tuner temporal" in hints[0] and "distance" in hints[0]
    assert "kd0/ctx0/s0 migrate_cold" in hints[0] and "kd1/ctx0/s0 migrate_hot" in hints[0]
    r = run_cli(*base, "--damos_quota_goal_tuner", "temporal",
                "--damos_quota_goal_tuner", "distance", env=env)
    assert r.returncode == 0 and "hint:" not in r.stderr
    r = run_cli(*base, "--quiet", env=env)
    assert r.returncode == 0 and r.stderr == ""
