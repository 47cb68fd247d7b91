"""Record files are streamed: complete (damo-readable) after every flush, readable by us at
any byte they were cut at, flat in memory, and rewritten into damo's one-record-per-target
layout at the end."""

import json
import os
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damoncore import records as rec
from damoncore.core.attrs import Attrs
from damoncore.core.snapshot import Snapshot, TargetSnapshot
from damoncore.errors import InvalidConfig

from cli_helpers import make_snapshots

ATTRS = Attrs()


def _damo_reads(path):
    """What damo's reader does: zlib.decompress of the whole file (json_compressed) or
    the text as is, then json.loads; the records as damo would list them."""
    data = open(path, "rb").read()
    if data[:1] != b"[":
        data = zlib.decompress(data)
    return json.loads(data)


def _same(a, b):
    assert (a.start_us, a.end_us, a.sample_us, a.aggr_us) == \
        (b.start_us, b.end_us, b.sample_us, b.aggr_us)
    ta, tb = a.targets[0], b.targets[0]
    for col in ("start", "end", "nr_accesses", "age"):
        assert np.array_equal(getattr(ta, col), getattr(tb, col)), col


@pytest.mark.parametrize("fmt", ["json_compressed", "json"])
def test_complete_for_damo_after_every_flush(tmp_path, fmt):
    path = str(tmp_path / "damon.data")
    w = rec.RecordWriter(path, fmt, flush_sec=0)
    assert _damo_reads(path) == []
    snaps = make_snapshots(12)
    for i, s in enumerate(snaps):
        w.add(0, 0, ATTRS, s)
        kvs = _damo_reads(path)
        assert len(kvs) == 1 and len(kvs[0]["snapshots"]) == i + 1
        assert kvs[0]["data_source"] == "unknown"
    w.close()
    [r] = rec.read_records(path)
    for a, b in zip(snaps, r.snapshots):
        _same(a, b)


def _two_contexts(n):
    """Snapshots of two contexts (one target each) arriving alternately, as a Kdamond
    running the seed line's two contexts hands them out."""
    out = []
    for i, s in enumerate(make_snapshots(n)):
        t = s.targets[0]
        other = TargetSnapshot(0, None, t.start + np.uint64(1 << 30), t.end + np.uint64(1 << 30),
                               t.nr_accesses[::-1].copy(), t.age)
        out.append((0, s))
        out.append((1, Snapshot(s.start_us, s.end_us, s.sample_us, s.aggr_us,
                                s.max_nr_accesses, [other])))
    return out


def test_interleaved_targets_end_as_one_record_each(tmp_path):
    path = str(tmp_path / "damon.data")
    w = rec.RecordWriter(path, flush_sec=0)
    items = _two_contexts(10)
    for ctx, s in items:
        w.add(0, ctx, ATTRS, s)
    # while running: one record per run of snapshots, complete for damo, merged by us
    assert len(_damo_reads(path)) == 20
    assert [len(r.snapshots) for r in rec.read_records(path)] == [10, 10]
    w.close()
    kvs = _damo_reads(path)
    assert [(k["context_idx"], len(k["snapshots"])) for k in kvs] == [(0, 10), (1, 10)]
    recs = rec.read_records(path)
    for ctx, r in enumerate(recs):
        assert r.context_idx == ctx
        for a, b in zip([s for c, s in items if c == ctx], r.snapshots):
            _same(a, b)
    assert sorted(os.listdir(tmp_path)) == ["damon.data"]      # no temporary left


@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0, 1), fmt=st.sampled_from(["json_compressed", "json"]),
       flush_every=st.integers(1, 7))
def test_a_file_cut_anywhere_reads_as_a_prefix(tmp_path_factory, cut, fmt, flush_every):
    """SIGKILL can stop the writer at any byte: whatever remains reads as the snapshots
    up to some point, identical to what was written, and at least up to the last flush."""
    d = tmp_path_factory.mktemp("cut")
    path = str(d / "damon.data")
    w = rec.RecordWriter(path, fmt, flush_sec=float("inf"))
    items = _two_contexts(8)
    sizes = []                       # (file size after a flush, snapshots flushed)
    for i, (ctx, s) in enumerate(items):
        w.add(0, ctx, ATTRS, s)
        if (i + 1) % flush_every == 0:
            w.flush()
            sizes.append((os.path.getsize(path), i + 1))
    data = open(path, "rb").read()
    w.close()
    n = int(cut * len(data))
    with open(path, "wb") as f:
        f.write(data[:n])
    if n == 0:
        with pytest.raises(InvalidConfig):
            rec.read_records(path)
        return
    got = {r.context_idx: r.snapshots for r in rec.read_records(path)}
    for ctx in (0, 1):
        want = [s for c, s in items if c == ctx]
        assert len(got.get(ctx, [])) <= len(want)
        for a, b in zip(want, got.get(ctx, [])):
            _same(a, b)
    flushed = max([k for size, k in sizes if size <= n], default=0)
    assert sum(len(v) for v in got.values()) >= flushed


def test_memory_stays_flat_however_many_snapshots(tmp_path):
    """Peak Python memory while writing 10x more snapshots stays within 1.3x."""
    snaps = make_snapshots(50)
    big = [Snapshot(s.start_us, s.end_us, s.sample_us, s.aggr_us, s.max_nr_accesses,
                    [TargetSnapshot(0, 1, np.repeat(s.targets[0].start, 10),
                                    np.repeat(s.targets[0].end, 10),
                                    np.repeat(s.targets[0].nr_accesses, 10),
                                    np.repeat(s.targets[0].age, 10))]) for s in snaps]

    def peak(n):
        tracemalloc.start()
        with rec.RecordWriter(str(tmp_path / f"r{n}"), flush_sec=0.05) as w:
            for i in range(n):
                w.add(0, 0, ATTRS, big[i % len(big)])
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p
    small, large = peak(200), peak(2000)
    assert large <= 1.3 * small, (small, large)
    assert len(rec.read_records(str(tmp_path / "r2000"))[0].snapshots) == 2000


def test_existing_output_becomes_old(tmp_path):
    path = tmp_path / "damon.data"
    path.write_bytes(b"previous run")
    (tmp_path / "damon.data.old").write_bytes(b"run before that")
    with rec.RecordWriter(str(path)) as w:
        w.add(0, 0, ATTRS, make_snapshots(1)[0])
    assert (tmp_path / "damon.data.old").read_bytes() == b"previous run"     # as damo
    assert len(rec.read_records(str(path))[0].snapshots) == 1
    assert sorted(os.listdir(tmp_path)) == ["damon.data", "damon.data.old"]


@pytest.mark.parametrize("make_path, needle", [
    (lambda d: d / "nodir" / "damon.data", "does not exist"),
    (lambda d: d, "is a directory"),
    (lambda d: d / ("x" * 5000), "too long"),
    (lambda d: d / ("x" * 253), "too long"),          # no room for .old
    (lambda d: d / "file" / "damon.data", "(?i)not a directory"),
    (lambda d: "", "empty"),
])
def test_bad_output_paths_touch_nothing(tmp_path, make_path, needle):
    (tmp_path / "file").write_text("keep")
    before = {p: os.stat(tmp_path / p).st_mtime_ns for p in os.listdir(tmp_path)}
    with pytest.raises(InvalidConfig, match=needle):
        rec.RecordWriter(str(make_path(tmp_path)))
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in os.listdir(tmp_path)} == before


def test_garbage_truncated_damo_layout_and_wrong_types_are_clear_errors(tmp_path):
    cases = {"empty": b"", "zlib-garbage": zlib.compress(b"{not json")[:-3] + b"xx",
             "object": b'{"a": 1}', "list-of-int": b"[1, 2]",
             "bad-snapshot": b'[{"kdamond_idx": 0, "snapshots": [{"regions": 3}]}]',
             "damo-indented-cut": json.dumps([{"kdamond_idx": 0, "snapshots": []}],
                                             indent=4).encode()[:-5]}
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(InvalidConfig, match="not a damo record file"):
            rec.read_records(str(p))
