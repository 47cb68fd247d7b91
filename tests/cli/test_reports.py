"""Report goldens, recorded by this project (regenerate: DAMONCORE_REGEN_GOLDEN=1)."""

import os

import pytest

from damoncore import records as rec
from damoncore.cli import report_access, report_footprints, report_heatmap, report_wss

from cli_helpers import make_snapshots

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")


def _record():
    r = rec.Record(0, 0, 0, 4242, {"sample_us": 5000, "aggr_us": 100000})
    r.snapshots = make_snapshots()
    return r


def _footprints():
    return [{"time": i, "footprints": [
        {"pid": 4242, "footprint": {"size": 1000 + 10 * i, "resident": 100 * i, "shared": 0,
                                    "trs": 0, "lrs": 0, "drs": 0, "dt": 0}},
        {"pid": None, "footprint": {"total": 1 << 20, "free": (1 << 20) - 1000 * i,
                                    "available": 0, "buffers": 0, "cached": 0}}]}
        for i in range(12)]


RENDERS = {
    "report_access.txt": lambda: report_access.render([_record()], snapshot_idx=-1),
    "report_access_raw.txt": lambda: report_access.render([_record()], raw=True,
                                                          sort_by="access_rate",
                                                          snapshot_idx=0),
    "report_heatmap.txt": lambda: report_heatmap.render(_record(), (10, 32)),
    "report_heatmap_raw.txt": lambda: report_heatmap.render(_record(), (3, 4), "raw"),
    "report_wss.txt": lambda: report_wss.render([_record()], exclude_samples=5),
    "report_wss_time.txt": lambda: report_wss.render([_record()], exclude_samples=0,
                                                     sort=False, raw=True, nr_cols_bar=20),
    "report_footprints.txt": lambda: report_footprints.render(_footprints()),
}


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_golden(name):
    text = RENDERS[name]() + "\n"
    path = os.path.join(GOLDEN, name)
    if os.environ.get("DAMONCORE_REGEN_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read()


def test_heatmap_hot_band_moves():
    grid = report_heatmap.ascii_map(report_heatmap.heat_grid(_record(), 3, 8)[0])
    # three time rows, the hottest column moves one region up per 10 snapshots (damo's
    # scale: (highest + 1 - lowest) / 9 per digit, so the hottest reads 8 here)
    assert [row.index(max(row)) for row in grid] == [0, 1, 2]


def test_wss_counts_only_accessed_regions():
    vals = report_wss.wss_values(_record(), sort=False)
    assert vals == [16 << 20] * 30          # hot + warm region, 8 MiB each
    assert report_wss.wss_values(_record(), acc_thres=3, sort=False) == [8 << 20] * 30


def test_cli_report_from_recorded_file(tmp_path):
    from cli_helpers import run_cli
    w = rec.RecordWriter(str(tmp_path / "damon.data"))
    w.add(0, 0, __import__("damoncore").core.attrs.Attrs(), make_snapshots()[0])
    w.close()
    r = run_cli("report", "wss", "-i", str(tmp_path / "damon.data"), "--exclude_samples", "0")
    assert r.returncode == 0 and "# avr:\t16.000 MiB" in r.stdout
