"""``--adaptation`` on the command line and ``damoncore_adaptation`` in the kdamonds JSON
(a damoncore extension damo ignores), as a user runs them."""

import json

import pytest

from cli_helpers import run_cli
from damoncore import kdamonds as kd
from damoncore.core.adaptation import FixedRegions, KernelAdaptation
from damoncore.core.edge_split import EdgeSplit
from damoncore.cli.damo_args import validate


def _ctxs(text):
    return [c for k in json.loads(text)["kdamonds"] for c in k["contexts"]]


def test_args_records_the_adaptation_and_reads_it_back(tmp_path):
    r = run_cli("args", "damon", "--ops", "vaddr", "--target_pid", "1",
                "--adaptation", "edge-split")
    assert r.returncode == 0, r.stderr
    (c,) = _ctxs(r.stdout)
    assert c["damoncore_adaptation"] == "edge-split"
    f = tmp_path / "k.json"
    f.write_text(r.stdout)
    again = run_cli("args", "damon", "--kdamonds", str(f))
    assert again.returncode == 0, again.stderr
    assert _ctxs(again.stdout)[0]["damoncore_adaptation"] == "edge-split"
    (ctx,) = [x for ctxs in validate(json.loads(r.stdout)) for x in ctxs]
    assert type(ctx.adaptation) is EdgeSplit


def test_the_default_writes_no_extension_field():
    """Files for the kernel's algorithm stay exactly damo's."""
    for extra in ([], ["--adaptation", "kernel"]):
        r = run_cli("args", "damon", "--ops", "vaddr", "--target_pid", "1", *extra)
        assert r.returncode == 0, r.stderr
        assert "damoncore_adaptation" not in r.stdout


def test_one_adaptation_per_context():
    r = run_cli("args", "damon", "--ops", "vaddr", "--target_pid", "1", "--ops", "vaddr",
                "--target_pid", "2", "--nr_targets", "1", "1", "--adaptation", "fixed",
                "--adaptation", "edge-split")
    assert r.returncode == 0, r.stderr
    got = [c.get("damoncore_adaptation", "kernel") for c in _ctxs(r.stdout)]
    assert got == ["fixed", "edge-split"]
    ctxs = [x for cs in validate(json.loads(r.stdout)) for x in cs]
    assert [type(c.adaptation) for c in ctxs] == [FixedRegions, EdgeSplit]


def test_a_json_without_the_field_is_the_kernels():
    d = {"kdamonds": [{"contexts": [{"ops": "vaddr", "targets": [{"pid": 1}]}]}]}
    (ctx,) = [x for cs in validate(d) for x in cs]
    assert type(ctx.adaptation) is KernelAdaptation
    assert kd.ADAPTATION_FIELD not in kd.context_to_dict(ctx)


@pytest.mark.parametrize("value", ["bogus", 3, None, ""])
def test_a_bad_adaptation_in_json_is_one_line_exit_2(tmp_path, value):
    d = {"kdamonds": [{"contexts": [{"ops": "vaddr", "targets": [{"pid": 1}],
                                     "damoncore_adaptation": value}]}]}
    f = tmp_path / "k.json"
    f.write_text(json.dumps(d))
    r = run_cli("args", "damon", "--kdamonds", str(f))
    assert r.returncode == 2
    assert "damoncore_adaptation" in r.stderr and "unknown adaptation" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_bad_adaptation_option_is_one_line_exit_2(tmp_path):
    out = tmp_path / "rec.data"
    r = run_cli("record", "--backend", "sim", "--adaptation", "nope", "--duration", "1s",
                "-o", str(out))
    assert r.returncode == 2
    assert "--adaptation" in r.stderr and "nope" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["start", "record"])
def test_start_and_record_run_with_edge_split(tmp_path, cmd):
    out = tmp_path / "rec.data"
    extra = ["-o", str(out)] if cmd == "record" else []
    r = run_cli(cmd, "--backend", "sim", "--adaptation", "edge-split", "--duration", "2s",
                "--no_status_socket", *extra, timeout=120)
    assert r.returncode == 0, r.stderr
    # edge-split samples its budget (5 x min_nr_regions = 50) where the kernel's would not
    assert any("ctx0: 50 regions" in line for line in r.stderr.splitlines())
    if cmd == "record":
        assert out.stat().st_size > 0
