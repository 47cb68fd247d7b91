"""The evaluation grid: same table serially, on the local pool and on a real Dask
LocalCluster; the tidy table round trip; the summary's arithmetic; the ground truth."""

import math
import os
import sys

import numpy as np
import pytest

from damoncore.errors import InvalidConfig
from damoncore.evaluation import (COLUMNS, TIMING_COLUMNS, WORKLOADS, Cell, Grid, markdown,
                                  read_table, run_cell, run_grid, score, summarize,
                                  write_table)
from damoncore.evaluation.workloads import GiB, MiB

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
from cli_helpers import run_cli  # noqa: E402

SMALL = Grid(adaptations=("kernel", "edge-split"), workloads=("small-moving", "zipf-1.0"),
             seeds=(1, 2), duration_us=1_500_000)
DETERMINISTIC = [i for i, c in enumerate(COLUMNS) if c not in TIMING_COLUMNS]


def _fixed(rows):
    return [tuple(r[i] for i in DETERMINISTIC) for r in rows]


@pytest.fixture(scope="module")
def serial_rows():
    return run_grid(SMALL, "serial")


def test_the_pool_gives_the_serial_table(serial_rows):
    rows = run_grid(SMALL, "pool", workers=2)
    assert len(rows) == len(serial_rows) == 2 * 2 * 2 * 15
    assert _fixed(rows) == _fixed(serial_rows)


def test_a_dask_local_cluster_gives_the_same_table(serial_rows):
    distributed = pytest.importorskip("distributed")   # in the 'test' extra: CI has it
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        rows = run_grid(SMALL, scheduler=cluster.scheduler_address)
    assert _fixed(rows) == _fixed(serial_rows)
    assert all(r[COLUMNS.index("cpu_us_per_sample")] > 0 for r in rows)


def test_an_unreachable_scheduler_is_an_error():
    pytest.importorskip("distributed")
    from damoncore.errors import DamonError
    with pytest.raises(DamonError, match="cannot reach the Dask scheduler"):
        run_grid([Cell("kernel", "moving", 1, duration_us=200_000)],
                 scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)


def test_rows_are_tidy(serial_rows, tmp_path):
    assert all(len(r) == len(COLUMNS) for r in serial_rows)
    path = str(tmp_path / "t.csv")
    write_table(serial_rows, path)
    assert read_table(path) == serial_rows
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidConfig, match="not an eval-sampling table"):
        read_table(str(bad))


def test_parquet_needs_pandas(serial_rows, tmp_path):
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidConfig, match="Parquet output needs pandas"):
            write_table(serial_rows, str(tmp_path / "t.parquet"))
        assert os.listdir(tmp_path) == []
        return
    write_table(serial_rows, str(tmp_path / "t.parquet"))
    assert pandas.read_parquet(tmp_path / "t.parquet").shape == (len(serial_rows), len(COLUMNS))


def _row(alg, seed, phase, k, cov, fh=0.0, wl="w"):
    vals = dict(algorithm=alg, adaptation=alg, min_nr_regions=10, max_nr_regions=1000,
                sample_us=5000, aggr_us=100000, workload=wl, seed=seed, t_s=0.0, phase=phase,
                aggr_in_phase=k, hot_bytes=1, coverage=cov, false_hot=fh, nr_regions=10,
                checks_per_sample=20.0, cpu_us_per_sample=10.0)
    return tuple(vals[c] for c in COLUMNS)


def test_summary_arithmetic():
    rows = []
    for seed in (1, 2):
        for ph in (0, 1, 2):
            for k in range(1, 9):
                # phase 1 of seed 2 is found at aggregation 4, phase 2 never
                found_at = {(2, 1): 4, (2, 2): 99}.get((seed, ph), 2)
                rows.append(_row("a", seed, ph, k, 0.95 if k >= found_at else 0.5,
                                 fh=0.01 * k))
    s = summarize(rows)[("w", "a")]
    assert s["nr_moves"] == 4               # phases 1 and 2 of both seeds
    assert s["found_med"] == 3.0 and math.isinf(s["found_max"])
    assert s["found_share"] == 0.5          # 2 of 4 within 3 aggregations
    steady = [r for r in rows if r[COLUMNS.index("aggr_in_phase")] >= 5]
    assert s["cov_min"] == 0.5 and s["fh_max"] == pytest.approx(0.08)
    assert s["fh_med"] == pytest.approx(np.median([r[COLUMNS.index("false_hot")]
                                                   for r in steady]))
    text = markdown(summarize(rows))
    assert "| a | 0.950 / 0.500 | 3 / never | 50% of 4 |" in text


def test_score_against_known_truth():
    """Truly hot: [100, 200) of a 1000-byte space; regions [0, 150) hot, [150, 1000) not."""
    bps = np.array([0, 100, 200, 1000], np.int64)
    cum = np.array([0, 0, 100, 100], np.int64)
    start = np.array([0, 150], np.uint64)
    end = np.array([150, 1000], np.uint64)
    cov, fh, hot = score(start, end, np.array([20, 0], np.uint32), 20, bps, cum, 1000)
    assert (cov, hot) == (0.5, 100) and fh == pytest.approx(100 / 900)


def test_workloads_change_where_they_say():
    for name, w in WORKLOADS.items():
        wl, changes = w.build(3)
        aligned = name != "heap-moving"        # its moves fall anywhere in an aggregation
        assert changes[0] == 0 and all(t % 100_000 == 0 for t in changes) == aligned, name
        assert changes == sorted(changes) and changes[-1] < w.duration_us
    # the small ranges are <= 1% of their space and move each phase
    wl, changes = WORKLOADS["small-moving"].build(1)
    hots = [[(s.start, s.end - s.start) for s in streams if s.rate > 100]
            for _, streams in wl.phases]
    assert all(sz <= 0.01 * 8 * GiB for ph in hots for _, sz in ph)
    assert all(a != b for a, b in zip(hots, hots[1:]))
    assert {sz for ph in hots for _, sz in ph} == {64 * MiB, 32 * MiB}
    # heap-moving: one 32 MiB range that moves each phase, beside the same 40 small objects
    wl, changes = WORKLOADS["heap-moving"].build(2)
    ranges = [sorted((s.start, s.end - s.start) for s in streams if s.rate > 100)
              for _, streams in wl.phases]
    big = [[r for r in ph if r[1] == 32 * MiB] for ph in ranges]
    small = [[r for r in ph if r[1] == 16 << 10] for ph in ranges]
    assert all(len(b) == 1 for b in big) and len({b[0] for b in big}) == len(big)
    assert all(len(x) == 40 and x == small[0] for x in small)


def test_a_custom_adaptation_by_import_path():
    rows = run_cell(Cell("damoncore.core.adaptation:FixedRegions", "moving", 1,
                         min_nr_regions=100, max_nr_regions=100, duration_us=500_000))
    assert {r[COLUMNS.index("nr_regions")] for r in rows} == {100}
    with pytest.raises(InvalidConfig, match="cannot import"):
        run_cell(Cell("no.such.module:X", "moving", 1, duration_us=100_000))
    with pytest.raises(InvalidConfig, match="unknown adaptation 'bogus'"):
        run_cell(Cell("bogus", "moving", 1, duration_us=100_000))
    with pytest.raises(InvalidConfig, match="unknown workload"):
        run_grid(Grid(workloads=("nope",)))


# --- the command line ------------------------------------------------------------------

def test_cli_runs_a_grid_and_writes_table_and_summary(tmp_path):
    out, md = tmp_path / "t.csv", tmp_path / "s.md"
    r = run_cli("eval-sampling", "--workloads", "moving", "--seeds", "1",
                "--adaptations", "kernel,edge-split", "--serial", "--out", str(out),
                "--markdown", str(md), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "on this process" in r.stderr
    rows = read_table(str(out))
    assert {x[0] for x in rows} == {"kernel 10-1000", "edge-split 10-1000"}
    assert len(rows) == 2 * 400
    assert "**moving**" in md.read_text() and "| edge-split 10-1000 |" in md.read_text()


@pytest.mark.parametrize("args,msg", [
    (["--workloads", "bogus"], "--workloads 'bogus': unknown"),
    (["--adaptations", "kernel,nope"], "--adaptations 'nope': unknown"),
    (["--seeds", "0"], "--seeds '0'"),
    (["--seeds", "x"], "--seeds 'x'"),
    (["--nr_regions", "5"], "--nr_regions '5'"),
    (["--nr_regions", "100-10"], "--nr_regions '100-10'"),
    (["--sample", "1s", "--aggr", "100ms"], "need 0 < sample <= aggr"),
    (["--workers", "0"], "--workers 0"),
    (["--serial", "--scheduler", "tcp://127.0.0.1:1"], "used together"),
    (["--out", "/no/such/dir/t.csv"], "does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, msg):
    r = run_cli("eval-sampling", *args, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""
