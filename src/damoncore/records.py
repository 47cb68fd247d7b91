"""damo-compatible monitoring record files (``damon.data``).

A record file is the JSON list of damo's DamonRecord objects, one per (kdamond, context,
target): ``{kdamond_idx, context_idx, intervals, scheme_idx, target_id, scheme_filters,
snapshots: [{start_time, end_time (ns), regions: [{start, end, nr_accesses: {samples,
percent}, age: {usec, aggr_intervals}, probe_hits, sz_filter_passed}], total_bytes,
damos_stats, sample_interval_us}], data_source}``.  ``json_compressed`` (the default) is
that JSON zlib-compressed with no other framing, ``json`` is it plain.  We write numbers
raw; two keys damo ignores keep our snapshots lossless: ``target_pid`` per record and
``aggr_interval_us`` per snapshot.  Files are created mode 0600.  The reader also takes
damo's human strings ("4,096", "0 B").
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import kdamonds as kd
from .core.snapshot import Snapshot, TargetSnapshot
from .errors import InvalidConfig

FORMATS = ("json_compressed", "json")


@dataclass
class Record:
    """One target's snapshots of one context."""

    kdamond_idx: int
    context_idx: int
    target_id: int
    pid: object = None
    intervals: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)     # of Snapshot (one target each)


def _intervals(attrs) -> dict:
    g = attrs.intervals_goal
    return {"sample_us": attrs.sample_us, "aggr_us": attrs.aggr_us,
            "ops_update_us": attrs.ops_update_us,
            "intervals_goal": {"access_bp": g.access_bp, "aggrs": g.aggrs,
                               "min_sample_us": g.min_sample_us,
                               "max_sample_us": g.max_sample_us}}


def _snapshot_kv(snap: Snapshot, t: TargetSnapshot) -> dict:
    regions = [{"start": int(s), "end": int(e),
                "nr_accesses": {"samples": int(n), "percent": None},
                "age": {"usec": None, "aggr_intervals": int(a)},
                "probe_hits": [], "sz_filter_passed": 0}
               for s, e, n, a in zip(t.start, t.end, t.nr_accesses, t.age)]
    return {"start_time": snap.start_us * 1000, "end_time": snap.end_us * 1000,
            "regions": regions, "total_bytes": int((t.end - t.start).sum()),
            "damos_stats": None, "sample_interval_us": snap.sample_us,
            "aggr_interval_us": snap.aggr_us}


def write_records(records, path: str, fmt: str = "json_compressed") -> None:
    """Write ``records`` (list of :class:`Record`) atomically, mode 0600."""
    if fmt not in FORMATS:
        raise InvalidConfig(f"record format {fmt!r}: known formats are {', '.join(FORMATS)}")
    kvs = []
    for r in records:
        kvs.append({"kdamond_idx": r.kdamond_idx, "context_idx": r.context_idx,
                    "intervals": r.intervals, "scheme_idx": None, "target_id": r.target_id,
                    "target_pid": r.pid, "scheme_filters": [],
                    "snapshots": [_snapshot_kv(s, s.targets[0]) for s in r.snapshots],
                    "data_source": "unknown"})
    data = json.dumps(kvs, indent=4).encode()
    if fmt == "json_compressed":
        data = zlib.compress(data)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _num(v, parse, what):
    return None if v is None else parse(v, what)


def _snapshot_from_kv(kv, rec_sample, rec_aggr, target_id, pid) -> Snapshot:
    regs = kv.get("regions", [])
    start = np.array([kd.parse_bytes(r["start"], "region start") for r in regs], np.uint64)
    end = np.array([kd.parse_bytes(r["end"], "region end") for r in regs], np.uint64)
    sample = _num(kv.get("sample_interval_us"), kd.parse_time_us, "sample_interval_us") \
        or rec_sample
    aggr = _num(kv.get("aggr_interval_us"), kd.parse_time_us, "aggr_interval_us") or rec_aggr
    nr, age = [], []
    for r in regs:
        na, ag = r.get("nr_accesses", {}), r.get("age", {})
        if na.get("samples") is not None:
            nr.append(kd.parse_nr(na["samples"], "nr_accesses"))
        else:
            nr.append(int(float(na.get("percent") or 0) * (aggr // sample) / 100))
        if ag.get("aggr_intervals") is not None:
            age.append(kd.parse_nr(ag["aggr_intervals"], "age"))
        else:
            age.append(kd.parse_time_us(ag.get("usec") or 0, "age") // aggr)
    t0 = int(kd.parse_nr(kv["start_time"], "start_time")) // 1000
    t1 = int(kd.parse_nr(kv["end_time"], "end_time")) // 1000
    ts = TargetSnapshot(target_id, pid, start, end, np.array(nr, np.uint32),
                        np.array(age, np.uint32))
    return Snapshot(t0, t1, sample, aggr, max(1, aggr // sample), [ts])


def _load_bytes(data: bytes):
    head = data.lstrip()[:1]
    if head not in (b"[", b"{"):
        try:
            data = zlib.decompress(data)
        except zlib.error as e:
            raise InvalidConfig(f"not a damo record file (neither JSON nor zlib: {e})") from e
    return json.loads(data.decode())


def read_records(path: str) -> list:
    """Records of a ``json_compressed`` or ``json`` file (ours or damo's)."""
    with open(path, "rb") as f:
        kvs = _load_bytes(f.read())
    out = []
    for kv in kvs:
        iv = kv.get("intervals") or {}
        sample = kd.parse_time_us(iv.get("sample_us", 5000), "sample_us")
        aggr = kd.parse_time_us(iv.get("aggr_us", 100000), "aggr_us")
        r = Record(kv.get("kdamond_idx"), kv.get("context_idx"), kv.get("target_id"),
                   kv.get("target_pid"), iv)
        r.snapshots = [_snapshot_from_kv(s, sample, aggr, r.target_id, r.pid)
                       for s in kv.get("snapshots", [])]
        out.append(r)
    return out


class RecordWriter:
    """Collects snapshots from context callbacks and writes them on :meth:`close`.

    ``writer.callback(kdamond_idx, context_idx)`` gives a ``(ctx, Snapshot)`` callback;
    the writer itself is one for kdamond 0, context 0.  :meth:`flush` rewrites the file.
    """

    def __init__(self, path: str, fmt: str = "json_compressed"):
        if fmt not in FORMATS:
            raise InvalidConfig(f"record format {fmt!r}: known formats are "
                                f"{', '.join(FORMATS)}")
        self.path, self.fmt = path, fmt
        self._records = {}

    def callback(self, kdamond_idx: int, context_idx: int):
        def cb(ctx, snap):
            self.add(kdamond_idx, context_idx, ctx.attrs, snap)
        return cb

    def __call__(self, ctx, snap):
        self.add(0, 0, ctx.attrs, snap)

    def add(self, kdamond_idx, context_idx, attrs, snap: Snapshot) -> None:
        for t in snap.targets:
            key = (kdamond_idx, context_idx, t.target_idx)
            r = self._records.get(key)
            if r is None:
                r = self._records[key] = Record(kdamond_idx, context_idx, t.target_idx,
                                                t.pid, _intervals(attrs))
            r.snapshots.append(Snapshot(snap.start_us, snap.end_us, snap.sample_us,
                                        snap.aggr_us, snap.max_nr_accesses, [t]))

    @property
    def records(self) -> list:
        return [self._records[k] for k in sorted(self._records)]

    def flush(self) -> None:
        write_records(self.records, self.path, self.fmt)

    close = flush


# --- memory footprints (damo's <record>.mem_footprint) ------------------------------------
def write_footprints(snapshots, path: str, mode: int = 0o600) -> None:
    """``snapshots``: [{"time": sec, "footprints": [{"pid": pid|None, "footprint": {...}}]}]
    with damo's statm pages (size, resident, ...) per pid and meminfo KiB (total, free)
    for ``pid: None``.  The file gets exactly ``mode`` (damo's --output_permission)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(snapshots, f, indent=4)


def read_footprints(path: str) -> list:
    with open(path) as f:
        return json.load(f)
