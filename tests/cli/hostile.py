"""The hostile-input harness: hypothesis strategies drawn from the CLI's own grammar (its
argparse parsers, walked), mutations of valid kdamonds JSON, record and mem_footprint files,
and one check of what a run may do with them.

A run happens in a fresh directory holding :data:`FIXTURES` (a record, a kdamonds file, a
footprint file, garbage, an empty file, a directory).  Whatever the input, it must:

- exit 0, 1 or 2; never print a Python traceback;
- on failure, print at most two lines on stderr, the last one ``damoncore: ...``; on
  exit 2 (bad input) print nothing on stdout (nothing ran);
- touch no file but the output the command line asks for (and none at all on failure),
  and leave no status socket behind;
- end within :data:`TIME_LIMIT` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

from hypothesis import strategies as st

from cli_helpers import SRC

from damoncore.cli.main import build_parser, main

TIME_LIMIT = 30.0       # seconds, per run (a run takes ~0.02 s; a hang takes forever)
# every long-running command runs on simulated memory for a short simulated time; the drawn
# options come after these and override them (the last value wins), except --backend
PREFIX = {"eval-sampling": ["--serial", "--seeds", "1", "--workloads", "moving",
                           "--adaptations", "kernel", "--nr_regions", "10-20"],
          "start": ["--duration", "10ms", "--progress_interval", "0"],
          "record": ["--duration", "10ms", "--progress_interval", "0"],
          "demo": ["--duration", "200ms"],
          "numa-migrate": ["--duration", "10ms"]}
# ... and they never reach a real backend: a drawn --target_pid could be a live process
SUFFIX = {"start": ["--backend", "sim"], "record": ["--backend", "sim"],
          "numa-migrate": ["--backend", "sim"], "args": ["--backend", "sim"]}
NOT_DRAWN = {"--help", "-h", "--version", "--backend", "--sysfs_root", "--procfs_root"}
# the default output files of the commands (touching these is asked for)
DEFAULT_OUTPUTS = {"record": ["damon.data", "damon.data.mem_footprint"]}
OUTPUT_OPTIONS = ("--out", "-o", "--record", "--output", "--markdown")

MiB = 1 << 20


# --- fixtures --------------------------------------------------------------------------
def _record_kvs():
    from cli_helpers import make_snapshots

    from damoncore import records as rec
    r = rec.Record(0, 0, 0, 4242, {"sample_us": 5000, "aggr_us": 100000})
    r.snapshots = make_snapshots(12)
    d = tempfile.mkdtemp()
    try:
        rec.write_records([r], os.path.join(d, "r"), "json")
        with open(os.path.join(d, "r")) as f:
            return json.load(f)
    finally:
        shutil.rmtree(d)


def _kdamonds():
    from cli_helpers import SEED
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["args", "damon", "--backend", "sim", "--sim_preset", "tiering",
                     *SEED]) == 0
    return json.loads(out.getvalue())


FOOTPRINTS = [{"time": 1.0 + i, "footprints": [
    {"pid": 4242, "footprint": {"size": 1000, "resident": 100 * i, "shared": 0, "trs": 0,
                                "lrs": 0, "drs": 0, "dt": 0}},
    {"pid": None, "footprint": {"total": 1 << 20, "free": 1 << 19, "available": 0,
                                "buffers": 0, "cached": 0}}]} for i in range(5)]
RECORD = _record_kvs()
KDAMONDS = _kdamonds()
FIXTURES = {
    "rec.data": zlib.compress(json.dumps(RECORD).encode()),
    # the reports' default inputs, so that options are exercised past the file check
    "damon.data": zlib.compress(json.dumps(RECORD).encode()),
    "damon.data.mem_footprint": json.dumps(FOOTPRINTS).encode(),
    "rec.json": json.dumps(RECORD).encode(),
    "kd.json": json.dumps(KDAMONDS).encode(),
    "fp.json": json.dumps(FOOTPRINTS).encode(),
    "garbage.bin": bytes(range(256)) * 4,
    "empty": b"",
}
FIXTURE_DIRS = ("adir",)


# --- values ----------------------------------------------------------------------------
def _non_utf8():
    return st.binary(min_size=1, max_size=8).map(lambda b: os.fsdecode(b"\xff" + b))


NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "-1", "3", "10", "100", "1000", str(2 ** 32),
                     str(2 ** 63), str(2 ** 64 - 1), str(2 ** 64), str(2 ** 70),
                     "9" * 100_000, "0" * 50 + "1", "1.5", "1e3", "0x10", "nan", "inf",
                     "-0", "1,000", "+5", " 7 ", "max", "min"]),
    st.integers(-(2 ** 70), 2 ** 70).map(str),
)
UNITS = st.tuples(st.sampled_from(["0", "1", "5", "100", "-3", "2.5", str(2 ** 64), "9" * 40]),
                  st.sampled_from(["", "ns", "us", "ms", "s", "m", "h", "d", "%", "K",
                                   "KiB", "MB", "G", "T", "E", "Z", "x", " %", "bp"])) \
    .map("".join)
WORDS = st.sampled_from([
    "", " ", "-", "--", "paddr", "vaddr", "fvaddr", "migrate_hot", "migrate_cold",
    "pageout", "stat", "allow", "reject", "none", "young", "anon", "memcg", "addr",
    "target", "cpu", "threads", "write", "0-3", "3-0", "0-99999999999", "1,2,x",
    "node_mem_used_bp", "node_mem_free_bp", "user_input", "consist", "temporal", "distance",
    "free_mem_rate", "Y", "N", "{}", "[]", "null", '{"kdamonds": 5}', "page_table",
    "page_fault", "4242", "a:0:1", "gpu0:99999:1", "x" * 5000, "\t\n", "\x00"])
PATHS = st.sampled_from([
    "rec.data", "rec.json", "kd.json", "fp.json", "garbage.bin", "empty", "adir",
    "missing", "nodir/x.data", "adir/x.png", "out.data", "h.png", "h.jpgz", "h.svg",
    "/proc/version", "/proc/self/mem", "/dev/null", ".", "/", "a" * 5000, "",
    "x" * 300 + ".png"])
DURATIONS = st.sampled_from([
    "0", "1", "1ms", "10ms", "-1s", "1ns", "max", "min", "2^70s", "1180591620717411303424s",
    "9" * 100_000, "abc", "", "5 ms 3", "1e3s", "1.5ms", "18446744073709551615",
    "9223372036854775809", "100ms"])     # 2^63 + 1 us: one above the bound
EDGES = st.sampled_from(["0", "-1", "1", str(2 ** 64), str(2 ** 70), "9" * 100_000, ""])
HOSTILE = st.one_of(EDGES, EDGES, NUMBERS, UNITS, WORDS, PATHS, _non_utf8(),
                    st.text(max_size=12))


# eval-sampling's size options take values that are valid, and long to run, or invalid;
# its --adaptations imports any module:Class named, so only these are drawn
EVAL_VALUES = {
    "seeds": ["0", "-1", "", "x", "1", "2", "1,2", "10001", "9" * 100_000, "1,,2", "1,-2"],
    "sample": ["0", "-1", "max", "", "abc", "5ms", "10ms", "2^70s", "9" * 100_000],
    "aggr": ["0", "-1", "max", "", "abc", "100ms", "1ms", "2^70s", "9" * 100_000],
    "nr_regions": ["10-20", "3-3", "2-5", "20-10", "0-0", "x", "10-", "-", "9" * 100_000,
                   f"{2 ** 64}-{2 ** 65}"],
    "extra": ["kernel", "fixed", "edge-split", "10-20", "x", "nosuchmodule:X", ""],
    "adaptations": ["kernel", "fixed", "kernel,fixed", "", ",", "x", "nosuchmodule:X",
                    "damoncore.core.adaptation:NoSuchClass", "damoncore:Context"],
    "workloads": ["moving", "scan", "moving,scan", "", "x", ",", "all"],
    "workers": ["0", "-1", "1", "2", "", "x", str(2 ** 70)],
    "scheduler": ["tcp://127.0.0.1:1", "", "x"],
}
EVAL_DESTS = set(EVAL_VALUES) - {"sample", "aggr"}


def value_for(action, command=None) -> st.SearchStrategy:
    dest = action.dest
    if command == "eval-sampling" and dest in EVAL_VALUES:
        return st.sampled_from(EVAL_VALUES[dest])
    if dest in ("duration", "every"):
        return DURATIONS
    if action.choices:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))),
                         st.sampled_from(sorted(map(str, action.choices))), HOSTILE)
    if dest in ("input", "kdamonds", "out", "record", "output", "socket", "schemes",
                "deducible_target"):
        return st.one_of(PATHS, PATHS, HOSTILE)
    return HOSTILE


# --- the grammar -----------------------------------------------------------------------
def _subparsers(parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices
    return {}


def commands(parser=None, prefix=()):
    """(command words, leaf parser) for every subcommand, e.g. (('report', 'wss'), p)."""
    parser = parser or build_parser()
    subs = _subparsers(parser)
    if not subs and prefix:
        yield prefix, parser
    for name, p in subs.items():
        yield from commands(p, prefix + (name,))


COMMANDS = list(commands())


def _options(parser):
    return [a for a in parser._actions if a.option_strings
            and not set(a.option_strings) & NOT_DRAWN]


def _positionals(parser):
    return [a for a in parser._actions if not a.option_strings
            and not isinstance(a, argparse._SubParsersAction)]


def _arity(nargs, draw) -> int:
    if nargs == 0:
        return 0
    if nargs is None:
        return 1
    if nargs == "?":
        return draw(st.integers(0, 1))
    if nargs in ("+", "*"):
        return draw(st.integers(0 if nargs == "*" else 1, 3))
    return nargs


@st.composite
def argv_for(draw, words, parser, max_options=4):
    """A command line of ``words`` (a subcommand) with drawn options and values."""
    opts = _options(parser)
    argv = list(words) + PREFIX.get(words[0], [])
    for _ in range(draw(st.integers(0, max_options))):
        a = draw(st.sampled_from(opts))
        argv.append(draw(st.sampled_from(a.option_strings)))
        n = _arity(a.nargs, draw)
        if n and draw(st.integers(0, 9)) == 0:     # sometimes the wrong number of values
            n = max(0, n + draw(st.sampled_from([-1, 1])))
        argv += [draw(value_for(a, words[0])) for _ in range(n)]
    for a in _positionals(parser):
        if draw(st.booleans()):
            argv += [draw(value_for(a, words[0]))
                     for _ in range(max(1, _arity(a.nargs, draw)))]
    return argv + SUFFIX.get(words[0], [])


# valid command lines to mutate: random options mostly fail in parsing; these reach the
# checks behind it (values against each other, the backend, the files, the run itself)
def _seed_line():
    from cli_helpers import SEED
    return list(SEED)


VALID = {
    "start": [_seed_line(), _seed_line() + ["--damos_quota_goal_tuner", "temporal"] * 2,
              ["--damos_action", "stat"],
              ["--sim_preset", "tiering", "--ops", "vaddr", "--target_pid", "4242",
               "--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
               "--damos_age", "1s", "max", "--damos_quotas", "10ms", "100MB", "1s"],
              ["-s", "5ms", "-a", "100ms", "-u", "1s", "-n", "10", "-m", "1000",
               "--monitoring_intervals_autotune"],
              ["--sample_filter", "allow", "cpu", "0-1", "--sample_primitives", "page_table"],
              ["--damos_action", "stat", "--damos_filter", "allow", "addr", "0", "4G",
               "--damos_wmarks", "free_mem_rate", "1s", "900", "500", "100"],
              ["--kdamonds", "kd.json"], ["paddr"], ["-r", "0-1G 2G-3G"],
              ["--damos_action", "migrate_hot", "0", "--damos_quota_interval", "1s",
               "--damos_quota_space", "100MB", "--damos_quota_goal", "user_input", "50", "10"]],
    "demo": [["--seed", "3", "--every", "100ms"]],
    "report access": [["-i", "rec.data", "--snapshot_idx", "-1", "--sort_regions_by", "age",
                       "--raw_number"],
                      ["-i", "rec.data", "--style", "recency-percentiles",
                       "--percentiles_range", "0", "101", "10"],
                      ["-i", "rec.json", "--format", "set", "region", "<index> <box>",
                       "--style", "hot", "--json"],
                      ["-i", "rec.data", "--total_sz_only", "--raw_number", "--format",
                       "append", "record_tail", " <duration>"]],
    "report heatmap": [["-i", "rec.data", "--resol", "5", "10", "--address_range", "0",
                        "20000000", "--time_range", "0", "1000000000", "--output", "raw"],
                       ["-i", "rec.data", "--guide"],
                       ["-i", "rec.json", "--draw_range", "all", "--abs_addr", "--abs_time",
                        "--output", "raw", "--resol", "3", "5"],
                       ["-i", "rec.data", "--address_range", "0", "16M", "guided",
                        "--time_range", "0", "1s", "guided"]],
    "report wss": [["-i", "rec.json", "--range", "0", "101", "10", "--exclude_samples", "2",
                    "--acc_thres", "1", "--all_wss"]],
    "report footprints": [["rss", "-i", "fp.json", "--sortby", "time", "--nr_cols_bar",
                           "10"]],
    "report damon_stat": [["-i", "rec.data", "--snapshot_idx", "3", "--json"],
                          ["-i", "rec.json", "--idle_time_percentiles_range", "0", "101",
                           "10", "--raw_number"]],
    "status": [["--json"], ["--kdamonds"]],
    "stop": [[], ["--pid", "4242"], ["--socket", "kd.json", "--no_wait"]],
    "replay": [["rec.data", "--damos_action", "stat"],
               ["rec.data", "--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
                "--damos_age", "200ms", "max", "--damos_quota_interval", "100ms",
                "--damos_quota_space", "4MB", "--placement", "1", "--placement",
                "0:0-16M", "--node_capacity", "1", "64G", "--json"],
               ["rec.json", "--damos_action", "migrate_hot", "1", "--damos_access_rate",
                "5%", "max", "--damos_quota_interval", "1s", "--damos_quota_space", "8MB",
                "--damos_quota_goal", "node_eligible_mem_bp", "50%", "1",
                "--damos_filter", "allow", "young", "--all_windows", "--raw_number"],
               ["rec.data", "--damos_action", "migrate_cold", "1", "--damos_quota_interval",
                "1s", "--damos_quota_goal", "node_mem_free_bp", "1%", "0",
                "--node_capacity", "0", "100M", "--throughput", "1G"]],
    "eval-sampling": [["--workloads", "moving,scan", "--extra", "fixed", "10-10", "--out",
                       "out.csv", "--markdown", "out.md", "--quiet"]],
    "numa-migrate": [["--sim_preset", "tiering", "--quota", "100MB", "--used_goal", "99%",
                      "--hot", "10%", "--min_age", "2", "--device", "gpu0:1:901",
                      "--pids", "4242"], ["--dry_run"]],
}
VALID["record"] = VALID["start"] + [["-o", "out.data", "--output_type", "json"]]
VALID["args damon"] = [v for v in VALID["start"]] + [["--out", "out.json", "--raw"]]
VALID["tune"] = [v for v in VALID["start"] if "--sim_preset" not in v] + \
    [_seed_line() + ["--quota_goals_only"], ["--damos_action", "stat", "--pause_ctx", "0",
                                             "--damos_max_nr_snapshots", "3"],
     ["--kdamonds", "kd.json", "--pid", "4242"], ["--obsolete_targets", "0"]]


def _owner(parser, body, j):
    """The option whose value ``body[j]`` is (the nearest option before it), if any."""
    by_name = {o: a for a in parser._actions for o in a.option_strings}
    for w in reversed(body[:j]):
        if w in by_name:
            return by_name[w]
    return None


@st.composite
def mutated_argv(draw, words, parser):
    """One of :data:`VALID`'s command lines for ``words`` with 1-3 tokens replaced by
    hostile values, deleted, or new options inserted."""
    body = list(draw(st.sampled_from(VALID[" ".join(words)])))
    opts = _options(parser)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        how = draw(st.sampled_from(["value", "value", "value", "replace", "insert",
                                    "delete"]))
        i = draw(st.integers(0, len(body)))
        values = [j for j, w in enumerate(body) if not w.startswith("--")]
        if how == "value" and values:
            j = draw(st.sampled_from(values))
            owner = _owner(parser, body, j)
            if owner is not None and words[0] == "eval-sampling":
                body[j] = draw(value_for(owner, words[0]))
            else:
                body[j] = draw(st.one_of(value_for(owner), NUMBERS, UNITS) if owner else
                               st.one_of(HOSTILE, NUMBERS, UNITS))
        elif how in ("replace", "value") and body:
            body[min(i, len(body) - 1)] = draw(
                st.sampled_from(sorted({v for vs in EVAL_VALUES.values() for v in vs}))
                if words[0] == "eval-sampling" else HOSTILE)
        elif how == "delete" and body:
            del body[min(i, len(body) - 1)]
        else:
            a = draw(st.sampled_from(opts))
            n = _arity(a.nargs, draw)
            body[i:i] = [draw(st.sampled_from(a.option_strings))] + \
                [draw(value_for(a, words[0])) for _ in range(n)]
    return list(words) + PREFIX.get(words[0], []) + body + SUFFIX.get(words[0], [])


def hostile_argv(words, parser):
    """Drawn from the grammar, or a valid line mutated (half each)."""
    return st.one_of(argv_for(words, parser), mutated_argv(words, parser))


def any_argv():
    return st.sampled_from(COMMANDS).flatmap(lambda c: hostile_argv(c[0], c[1]))


# --- mutating documents ----------------------------------------------------------------
BAD_VALUES = st.sampled_from([None, "oops", "", 5, -1, 0, 2 ** 64, 2 ** 70, 1.5,
                              float("nan"), True, [], {}, [None], {"x": 1}, "9" * 100_000,
                              "max", "150 %", "-5 ms"])


def _paths(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, path + (i,))


def _set(doc, path, fn):
    if not path:
        return fn(doc)
    doc = json.loads(json.dumps(doc))
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    fn_result = fn(cur[path[-1]])
    if fn_result is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = fn_result
    return doc


_DELETE = object()


@st.composite
def mutated_json(draw, doc):
    """``doc`` with one to three values replaced by a wrong type, null, a huge number, or
    deleted; serialized, and sometimes truncated or with a byte flipped."""
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "replace", "delete"]))
        if how == "delete" and path:
            doc = _set(doc, path, lambda v: _DELETE)
        else:
            bad = draw(BAD_VALUES)
            doc = _set(doc, path, lambda v: bad)
    data = json.dumps(doc).encode()
    cut = draw(st.sampled_from(["whole", "whole", "truncate", "flip"]))
    if cut == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif cut == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data


@st.composite
def damaged_file(draw, doc, compress: bool):
    """Bytes of a damaged ``doc`` file: mutated JSON (maybe zlib'd and then truncated),
    garbage, or empty."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "garbage", "empty",
                                 "truncated"]))
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "empty":
        return b""
    data = json.dumps(doc).encode() if kind == "truncated" else draw(mutated_json(doc))
    if compress and draw(st.booleans()):
        data = zlib.compress(data)
    if kind == "truncated":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    return data


# --- running ---------------------------------------------------------------------------
class Hang(BaseException):
    """A run went past TIME_LIMIT (a BaseException: main() must not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds):
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _tree(root):
    """{relative path: (size, mtime_ns, mode)} of everything under ``root``."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st_ = os.lstat(p)
            out[os.path.relpath(p, root)] = (st_.st_size, st_.st_mtime_ns, st_.st_mode)
    return out


def requested_outputs(argv) -> set:
    """The files ``argv`` asks to write (its output options' values and the command's
    default outputs), with what record writes next to them."""
    outs = set(DEFAULT_OUTPUTS.get(argv[0], []) if argv else [])
    for i, a in enumerate(argv[:-1]):
        if a in OUTPUT_OPTIONS:
            outs.add(argv[i + 1])
    return outs | {f"{o}.mem_footprint" for o in outs} | {f"{o}.old" for o in outs} \
        | {f"{o}.mem_footprint.old" for o in outs}


class Workdir:
    """A fresh directory with the fixtures; ``extra`` maps names to bytes (or None)."""

    def __init__(self, extra=None):
        self.extra = extra or {}

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="damoncore-hostile-")
        for name, data in {**FIXTURES, **self.extra}.items():
            if data is None:            # extra={"name": None}: leave that fixture out
                continue
            with open(os.path.join(self.path, name), "wb") as f:
                f.write(data)
        for d in FIXTURE_DIRS:
            os.mkdir(os.path.join(self.path, d))
        self.before = _tree(self.path)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def run_in_process(argv, cwd):
    """(exit status, stdout, stderr) of ``main(argv)`` run in ``cwd``."""
    old = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    try:
        with _time_limit(TIME_LIMIT), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            rc = main(list(argv))
    except SystemExit as e:             # argparse's --help and --version, as for a process
        rc = e.code if isinstance(e.code, int) else 0
    except Hang:
        raise AssertionError(f"still running after {TIME_LIMIT} s: {argv!r:.2000}") from None
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def run_subprocess(argv, cwd, env=None):
    """(exit status, stdout, stderr) of the CLI as a process; argv may hold bytes."""
    e = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in argv]
    # its own process group, so that a timeout ends its children too (pool workers)
    p = subprocess.Popen([sys.executable.encode(), b"-m", b"damoncore", *argv], cwd=cwd,
                         env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f"still running after {TIME_LIMIT} s: {argv!r:.2000}") from None
    finally:
        left = _outlived(p.pid)
    assert not left, f"processes of the run outlived it: {argv!r:.2000}"
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _outlived(pgid, wait_s=2.0) -> bool:
    """Whether processes of group ``pgid`` are still there ``wait_s`` after its leader
    ended (they are killed either way)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            return True
        time.sleep(0.05)


def check(argv, rc, out, err, wd, socket_dir=None):
    """The promises every run keeps, whatever its input (see the module doc)."""
    shown = " ".join(repr(a)[:60] for a in argv)[:600]
    assert rc in (0, 1, 2), f"exit {rc} for {shown}\n{err[-2000:]}"
    assert "Traceback" not in err, f"traceback for {shown}\n{err[-3000:]}"
    lines = err.strip().splitlines()
    if rc != 0:
        assert 1 <= len(lines) <= 2, f"{len(lines)} stderr lines for {shown}\n{err[-2000:]}"
        assert lines[-1].startswith("damoncore: "), f"{shown}\n{err[-2000:]}"
        assert "internal error" not in lines[-1], f"{shown}\n{lines[-1]}"
    if rc == 2:
        assert out == "", f"exit 2 but output for {shown}\n{out[:500]}"
    after = _tree(wd.path)
    changed = {p for p in set(after) | set(wd.before) if after.get(p) != wd.before.get(p)}
    allowed = requested_outputs([a for a in argv if isinstance(a, str)]) if rc == 0 else set()
    allowed = {os.path.normpath(a) for a in allowed}
    assert changed <= allowed, f"touched {sorted(changed - allowed)} for {shown} (rc {rc})"
    if socket_dir is not None:
        left = os.listdir(socket_dir) if os.path.isdir(socket_dir) else []
        assert not left, f"sockets left behind by {shown}: {left}"
