"""damo's report options from the outside: ``report access --style/--format/--json/
--total_sz_only/--percentiles_range`` and ``report heatmap --guide/--abs_addr/--draw_range``,
against golden files recorded by this project (regenerate: DAMONCORE_REGEN_GOLDEN=1) and
against what each option promises."""

import json
import os

import numpy as np
import pytest

from damoncore import records as rec
from damoncore.core.snapshot import Snapshot, TargetSnapshot

from cli_helpers import make_snapshots, run_cli

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")
MiB, GiB = 1 << 20, 1 << 30


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rep") / "damon.data")
    r = rec.Record(0, 0, 0, 4242, {"sample_us": 5000, "aggr_us": 100000})
    r.snapshots = make_snapshots(12)
    rec.write_records([r], path)
    return path


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    """Two address ranges 1 GiB apart: the hot band is in the upper one after 1 s."""
    path = str(tmp_path_factory.mktemp("gap") / "gap.data")
    snaps = []
    for s in make_snapshots(20):
        t = s.targets[0]
        shift = np.where(np.arange(8) >= 4, np.uint64(GiB), np.uint64(0))
        snaps.append(Snapshot(s.start_us, s.end_us, s.sample_us, s.aggr_us, s.max_nr_accesses,
                              [TargetSnapshot(0, 4242, t.start + shift, t.end + shift,
                                              t.nr_accesses[::-1].copy(), t.age)]))
    r = rec.Record(0, 0, 0, 4242, {"sample_us": 5000, "aggr_us": 100000})
    r.snapshots = snaps
    rec.write_records([r], path)
    return path


def _golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("DAMONCORE_REGEN_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), name


ACCESS = {
    "access_style_detailed.txt": ["--snapshot_idx", "-1"],
    "access_style_simple_boxes.txt": ["--style", "simple-boxes", "--snapshot_idx", "5"],
    "access_style_temperature_sz_hist.txt": ["--style", "temperature-sz-hist",
                                             "--snapshot_idx", "5"],
    "access_style_recency_sz_hist.txt": ["--style", "recency-sz-hist", "--snapshot_idx", "5",
                                         "--hist_logscale"],
    "access_style_recency_percentiles.txt": ["--style", "recency-percentiles",
                                             "--snapshot_idx", "11"],
    "access_style_temperature_percentiles.txt": ["--style", "temperature-percentiles",
                                                 "--snapshot_idx", "11",
                                                 "--percentiles_range", "0", "101", "20"],
    "access_style_hot.txt": ["--style", "hot", "--snapshot_idx", "3"],
    "access_style_cold.txt": ["--style", "cold", "--snapshot_idx", "3", "--raw_number"],
    "access_total_sz_only.txt": ["--total_sz_only"],
    "access_format.txt": ["--format", "set", "region", "<index> <start address> <end address> "
                          "<access rate> <temperature>", "--format", "set", "snapshot_head",
                          "<abs start time>-<abs end time>: <number of regions> regions, "
                          "<positive access samples ratio> positive",
                          "--format", "append", "record_tail", "\\n<format strings>",
                          "--sort_regions_by", "temperature", "--sort_regions_dsc", "all",
                          "--snapshot_idx", "2"],
    "access_json.txt": ["--json", "--snapshot_idx", "0"],
}


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_access_goldens(record, name):
    r = run_cli("report", "access", "-i", record, *ACCESS[name])
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout            # no colors when not on a terminal
    _golden(name, r.stdout)


def test_total_sz_only_is_one_line_per_snapshot(record):
    r = run_cli("report", "access", "-i", record, "--total_sz_only", "--raw_number")
    lines = r.stdout.splitlines()
    assert lines[:-1] == [str(64 * MiB)] * 12
    assert lines[-1] == "record DAMON intervals: sample 5000, aggr 100000"


def test_percentiles_range(record):
    def rows(*extra):
        out = run_cli("report", "access", "-i", record, "--style", "recency-percentiles",
                      "--snapshot_idx", "11", "--raw_number", *extra).stdout.splitlines()
        start = out.index("<percentile> <idle time (us)>") + 1
        return [line.split()[:2] for line in out[start:] if line.split()[0].isdigit()]
    # three numbers: range(); more: the percentiles themselves, sorted
    assert [p for p, _ in rows("--percentiles_range", "0", "101", "25")] == \
        ["0", "25", "50", "75", "100"]
    assert [p for p, _ in rows("--percentiles_range", "90", "10", "50", "70")] == \
        ["10", "50", "70", "90"]
    # idle times grow with the percentile; the accessed quarter (2 of 8 regions) reads 0
    vals = [int(v) for _, v in rows("--percentiles_range", "0", "101", "1")]
    assert vals == sorted(vals) and vals[0] == 0 and vals[30] > 0
    bad = run_cli("report", "access", "-i", record, "--percentiles_range", "0", "10", "0")
    assert bad.returncode == 2 and "--percentiles_range 0 10 0" in bad.stderr


def test_json_is_damos_shape_and_reads_back(record, tmp_path):
    for raw in ([], ["--raw_number"]):
        r = run_cli("report", "access", "-i", record, "--json", *raw)
        doc = json.loads(r.stdout)
        assert [list(d) for d in doc] == [["kdamond_idx", "context_idx", "intervals",
                                           "scheme_idx", "target_id", "scheme_filters",
                                           "snapshots", "data_source"]]
        snap = doc[0]["snapshots"][0]
        assert list(snap) == ["start_time", "end_time", "regions", "total_bytes",
                              "damos_stats", "sample_interval_us"]
        assert list(snap["regions"][0]) == ["start", "end", "nr_accesses", "age",
                                            "probe_hits", "sz_filter_passed"]
        out = tmp_path / f"j{len(raw)}.json"
        out.write_text(r.stdout)
        again = run_cli("report", "access", "-i", str(out))
        assert again.returncode == 0, again.stderr
        assert again.stdout == run_cli("report", "access", "-i", record).stdout


@pytest.mark.parametrize("argv,msg", [
    (["--format", "set", "region"], "expected <set|append> <area> <format string>"),
    (["--format", "put", "region", "x"], "set or append"),
    (["--format", "set", "body", "x"], "the area must be one of"),
    (["--style", "fancy"], "invalid choice"),
    (["--percentiles_range", "102"], "out of the range 0..101"),
])
def test_bad_access_options(record, argv, msg):
    r = run_cli("report", "access", "-i", record, *argv)
    assert r.returncode == 2 and r.stdout == "" and msg in r.stderr, r.stderr


# --- heatmap ----------------------------------------------------------------------------
def test_heatmap_guide(gapped):
    r = run_cli("report", "heatmap", "-i", gapped, "--guide")
    assert r.returncode == 0, r.stderr
    _golden("heatmap_guide.txt", r.stdout)
    assert f"region\t 1: [{GiB + 32 * MiB}, {GiB + 64 * MiB}) ({32 * MiB})" in r.stdout
    human = run_cli("report", "heatmap", "-i", gapped, "--guide_human")
    assert "region\t 0: [0 B, 32.000000 MiB) (32.000 MiB)" in human.stdout


def test_heatmap_draw_range(gapped):
    hottest = run_cli("report", "heatmap", "-i", gapped, "--resol", "4", "8")
    every = run_cli("report", "heatmap", "-i", gapped, "--resol", "4", "8", "--draw_range",
                    "all")
    assert hottest.returncode == every.returncode == 0
    # the reversed band spends 20 snapshots in the upper range's two hottest regions...
    assert "# x-axis: space [1.031250 GiB, 1.062500 GiB) (32.000 MiB)" in hottest.stdout
    assert hottest.stdout.count("# x-axis") == 1
    # ... and 'all' draws both ranges, one map each
    assert every.stdout.count("# x-axis") == 2
    assert "# x-axis: space [0 B, 32.000000 MiB) (32.000 MiB)" in every.stdout
    _golden("heatmap_draw_all.txt", every.stdout)


def test_heatmap_abs_addr_and_time(gapped):
    rel = run_cli("report", "heatmap", "-i", gapped, "--output", "raw", "--resol", "2", "2")
    ab = run_cli("report", "heatmap", "-i", gapped, "--output", "raw", "--resol", "2", "2",
                 "--abs_addr", "--abs_time")
    rows = [line.split("\t") for line in rel.stdout.splitlines()]
    arows = [line.split("\t") for line in ab.stdout.splitlines()]
    assert [r[:2] for r in rows] == [["0", "0"], ["0", str(16 * MiB)],
                                     ["1000000000", "0"], ["1000000000", str(16 * MiB)]]
    assert [r[1] for r in arows] == [str(GiB + 32 * MiB), str(GiB + 48 * MiB)] * 2
    assert [r[2] for r in arows] == [r[2] for r in rows]
    _golden("heatmap_raw_abs.txt", ab.stdout)


def test_heatmap_address_range_with_guided_base(gapped):
    r = run_cli("report", "heatmap", "-i", gapped, "--address_range", "0", "16M", "guided",
                "--resol", "2", "4", "--output", "raw", "--abs_addr")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split("\t")[1] == str(GiB + 32 * MiB)
    bad = run_cli("report", "heatmap", "-i", gapped, "--address_range", "0", "1", "--resol",
                  "2", "4")
    assert bad.returncode == 2 and "--resol 2 4" in bad.stderr
