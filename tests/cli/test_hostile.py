"""Hostile input, drawn by hypothesis: every subcommand and option of the CLI's own grammar
with bad, huge, empty, non-UTF-8 and very long values; damaged kdamonds JSON, record files
and mem_footprint files.  Whatever comes in, a run exits 0, 1 or 2 with at most two lines
on stderr and no traceback, touches no file it was not asked to write, leaves no socket and
ends in time (see hostile.py for the promises and the harness).

Most runs are in-process (``main(argv)``: ~20 ms each); a sample runs as real processes,
which also covers what only a process sees (argv bytes that are not UTF-8, the exit code
the interpreter gives, output encodings).
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile as h

pytestmark = pytest.mark.filterwarnings("ignore")

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck),
                database=None)


@pytest.fixture(autouse=True)
def _private_socket_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def _run(argv, extra=None, socket_root=None):
    with h.Workdir(extra) as wd:
        rc, out, err = h.run_in_process(argv, wd.path)
        h.check(argv, rc, out, err, wd,
                os.path.join(socket_root, "damoncore") if socket_root else None)
    return rc


def test_the_grammar_covers_every_subcommand():
    names = {" ".join(words) for words, _ in h.COMMANDS}
    assert names == {"demo", "start", "record", "args damon", "report access",
                     "report heatmap", "report wss", "report footprints", "status",
                     "tune", "stop", "numa-migrate", "eval-sampling", "replay",
                     "report damon_stat"}
    # and every option of each (all but help and the ones that could reach real memory)
    start = dict(h.COMMANDS)[("start",)]
    assert len(h._options(start)) > 50


@pytest.mark.parametrize("words", [w for w, _ in h.COMMANDS if w != ("eval-sampling",)],
                         ids=" ".join)
@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)), **SETTINGS)
@given(data=st.data())
def test_argv_from_the_grammar(words, data, _private_socket_dir):
    parser = dict(h.COMMANDS)[words]
    argv = data.draw(h.hostile_argv(words, parser), label="argv")
    _run(argv, socket_root=str(_private_socket_dir))


# a valid eval-sampling run simulates whole workloads (~0.5 s): fewer examples
@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)) * 2 // 5,
          **SETTINGS)
@given(data=st.data())
def test_argv_from_the_grammar_eval_sampling(data, _private_socket_dir):
    words = ("eval-sampling",)
    argv = data.draw(h.hostile_argv(words, dict(h.COMMANDS)[words]), label="argv")
    _run(argv, socket_root=str(_private_socket_dir))


@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)) * 2, **SETTINGS)
@given(doc=h.damaged_file(h.KDAMONDS, compress=False), inline=st.booleans(),
       command=st.sampled_from(["start", "args"]))
def test_damaged_kdamonds_json(doc, inline, command, _private_socket_dir):
    if inline:
        try:
            spec = doc.decode()
        except UnicodeDecodeError:
            spec = os.fsdecode(doc)
        spec = spec if spec.lstrip()[:1] in ("{", "[") else "{" + spec
        extra = None
    else:
        spec, extra = "bad.json", {"bad.json": doc}
    argv = (["start", *h.PREFIX["start"]] if command == "start" else ["args", "damon"]) \
        + ["--kdamonds", spec, "--backend", "sim"]
    _run(argv, extra, str(_private_socket_dir))


REPORTS = [w for w, _ in h.COMMANDS if w[0] == "report"]


@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)) * 2, **SETTINGS)
@given(data=st.data())
def test_damaged_record_files(data):
    words = data.draw(st.sampled_from([w for w in REPORTS if w[1] != "footprints"]))
    doc = data.draw(h.damaged_file(h.RECORD, compress=True), label="record")
    extra = data.draw(h.argv_for(words, dict(h.COMMANDS)[words], max_options=2))
    _run(extra + ["-i", "bad.data"], {"bad.data": doc})


@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)), **SETTINGS)
@given(data=st.data())
def test_damaged_record_files_replayed(data):
    doc = data.draw(h.damaged_file(h.RECORD, compress=True), label="record")
    extra = data.draw(h.mutated_argv(("replay",), dict(h.COMMANDS)[("replay",)]))
    _run(["replay", "bad.data"] + extra[2:], {"bad.data": doc})


@pytest.mark.parametrize("name", ["empty", "garbage.bin", "adir", "missing", "fp.json",
                                  "kd.json", "/proc/self/mem", "/dev/null", "", "x" * 5000])
def test_replay_inputs_that_are_not_records(name):
    assert _run(["replay", name, "--damos_action", "stat"]) == 2


@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_EXAMPLES", 100)), **SETTINGS)
@given(doc=h.damaged_file(h.FOOTPRINTS, compress=False))
def test_damaged_footprint_files(doc):
    _run(["report", "footprints", "-i", "bad.fp"], {"bad.fp": doc})


@pytest.mark.parametrize("words", [w for w in REPORTS if w[1] != "footprints"], ids=" ".join)
@pytest.mark.parametrize("name", ["empty", "garbage.bin", "adir", "missing", "fp.json",
                                  "kd.json", "/proc/self/mem", "/dev/null", "", "x" * 5000])
def test_report_inputs_that_are_not_records(words, name):
    assert _run([*words, "-i", name]) == 2


def test_footprints_of_a_record_file_is_bad_input():
    assert _run(["report", "footprints", "-i", "rec.data"]) == 2


# --- the same promises for real processes ------------------------------------------------
# (argv, exit status): argv words may be bytes, as a shell passes them
SUBPROCESS_CASES = [
    (["start", "--backend", "sim", "-s", "9" * 100_000, "--duration", "1s"], 2),
    (["start", "--backend", "sim", "--target_pid", "999999999", "--duration", "1s"], 2),
    (["start", "--backend", "sim", "1", "--duration", "1s"], 2),
    (["start", "--backend", "sim", "--duration", "1180591620717411303424s"], 2),
    (["start", "--backend", "sim", "--duration", "10ms", "--kdamonds",
      '{"kdamonds": [{"contexts": "oops"}]}'], 2),
    (["start", "--backend", "sim", b"--duration", b"\xff\xfe1s"], 2),
    (["start", "--backend", "sim", "--duration", "10ms", b"--record", b"out\xff.data"], 0),
    (["demo", "--duration", b"\xc3\x28"], 2),
    (["record", "--backend", "sim", "--duration", "10ms", "-o", "nodir/x.data"], 2),
    (["record", "--backend", "sim", "--duration", "10ms", "-o", "adir"], 2),
    (["report", "access", "-i", b"\xff\xff"], 2),
    (["report", "access", "-i", "rec.data"], 0),
    (["report", "heatmap", "-i", "rec.data", "--resol", "0", "0"], 2),
    (["report", "heatmap", "-i", "rec.data", "--output", b"h\xff.pngz"], 2),
    (["report", "wss", "-i", "rec.data", "--range", "0", "100", "0"], 2),
    (["report", "footprints", "-i", "garbage.bin"], 2),
    (["replay", "rec.data"], 2),
    (["replay", "rec.data", "--damos_action", "stat", "--placement", b"\xff"], 2),
    (["replay", "rec.json", "--damos_action", "pageout", "--json"], 0),
    (["args", "damon", "--backend", "sim", "--out", "a" * 5000], 2),
    (["status", "--socket", b"\xff"], 2),
    (["status"], 1),
    (["tune", "--damos_action", "stat"], 1),
    (["tune", "--damos_quota_interval", "-5", "--damos_action", "stat"], 2),
    (["tune", "--pid", "0"], 2),
    (["stop"], 1),
    (["stop", "--socket", b"\xff"], 2),
    (["numa-migrate", "--backend", "sim", "--duration", "10ms", "--device", "x" * 5000], 2),
    (["--debug"], 2),
    (["no-such-command"], 2),
]


@pytest.mark.parametrize("argv,status", SUBPROCESS_CASES,
                         ids=[" ".join(os.fsdecode(a) for a in c)[:50]
                              for c, _ in SUBPROCESS_CASES])
def test_hostile_processes(argv, status, _private_socket_dir):
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(argv, wd.path,
                                        {"XDG_RUNTIME_DIR": str(_private_socket_dir)})
        h.check([os.fsdecode(a) for a in argv], rc, out, err, wd,
                os.path.join(str(_private_socket_dir), "damoncore"))
    assert rc == status, err


@settings(max_examples=int(os.environ.get("DAMONCORE_HOSTILE_PROCESSES", 12)), **SETTINGS)
@given(argv=h.any_argv().filter(lambda a: not any("\0" in w for w in a)))
def test_drawn_processes(argv, _private_socket_dir):
    # (a NUL cannot be in a process's argv; the in-process runs draw it)
    with h.Workdir() as wd:
        rc, out, err = h.run_subprocess(argv, wd.path,
                                        {"XDG_RUNTIME_DIR": str(_private_socket_dir)})
        h.check(argv, rc, out, err, wd, os.path.join(str(_private_socket_dir), "damoncore"))
