"""Record files: damo's framing (zlib of the JSON list), mode 0600, lossless round trip."""

import json
import os
import stat
import zlib

import numpy as np
import pytest

from damoncore import records as rec
from damoncore.core.attrs import Attrs
from damoncore.errors import InvalidConfig

from cli_helpers import make_snapshots


class _Ctx:
    attrs = Attrs()


def _write(path, fmt):
    w = rec.RecordWriter(str(path), fmt)
    for s in make_snapshots():
        w(_Ctx, s)
    w.close()
    return w


@pytest.mark.parametrize("fmt", ["json_compressed", "json"])
def test_round_trip_is_lossless(tmp_path, fmt):
    path = tmp_path / "damon.data"
    _write(path, fmt)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    [r] = rec.read_records(str(path))
    assert (r.kdamond_idx, r.context_idx, r.target_id, r.pid) == (0, 0, 0, 4242)
    assert r.intervals["sample_us"] == 5000
    orig = make_snapshots()
    assert len(r.snapshots) == len(orig)
    for a, b in zip(orig, r.snapshots):
        assert (a.start_us, a.end_us, a.sample_us, a.aggr_us, a.max_nr_accesses) == \
            (b.start_us, b.end_us, b.sample_us, b.aggr_us, b.max_nr_accesses)
        ta, tb = a.targets[0], b.targets[0]
        for col in ("start", "end", "nr_accesses", "age"):
            assert np.array_equal(getattr(ta, col), getattr(tb, col)), col


def test_compressed_is_plain_zlib_of_damo_records(tmp_path):
    path = tmp_path / "damon.data"
    _write(path, "json_compressed")
    kvs = json.loads(zlib.decompress(path.read_bytes()))
    assert isinstance(kvs, list) and len(kvs) == 1
    r = kvs[0]
    for key in ("kdamond_idx", "context_idx", "intervals", "scheme_idx", "target_id",
                "scheme_filters", "snapshots", "data_source"):
        assert key in r
    s = r["snapshots"][0]
    assert s["start_time"] == 0 and s["end_time"] == 100_000 * 1000     # ns
    assert s["regions"][0]["nr_accesses"] == {"samples": 20, "percent": None}
    assert s["regions"][0]["age"] == {"usec": None, "aggr_intervals": 0}
    assert s["total_bytes"] == 64 << 20


def test_reads_damo_human_strings(tmp_path):
    kv = [{"kdamond_idx": 0, "context_idx": 0, "target_id": 0, "scheme_idx": None,
           "intervals": {"sample_us": "5000", "aggr_us": "100000", "ops_update_us": "1000000"},
           "scheme_filters": [], "snapshots": [{
               "start_time": "1000", "end_time": "100001000",
               "regions": [{"start": "4,096", "end": "1,052,672",
                            "nr_accesses": {"samples": 3, "percent": None},
                            "age": {"usec": None, "aggr_intervals": "1,234"},
                            "probe_hits": [], "sz_filter_passed": "0 B"}],
               "total_bytes": "1.000 MiB", "damos_stats": None, "sample_interval_us": None}]}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(kv))
    [r] = rec.read_records(str(path))
    t = r.snapshots[0].targets[0]
    assert (int(t.start[0]), int(t.end[0]), int(t.nr_accesses[0]), int(t.age[0])) == \
        (4096, 1052672, 3, 1234)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(InvalidConfig, match="not a damo record file"):
        rec.read_records(str(path))
