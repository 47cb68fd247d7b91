"""damo-compatible monitoring record files (``damon.data``), written as they come.

A record file is the JSON list of damo's DamonRecord objects, one per (kdamond, context,
target): ``{kdamond_idx, context_idx, intervals, scheme_idx, target_id, scheme_filters,
snapshots: [{start_time, end_time (ns), regions: [{start, end, nr_accesses: {samples,
percent}, age: {usec, aggr_intervals}, probe_hits, sz_filter_passed}], total_bytes,
damos_stats, sample_interval_us}], data_source}``.  ``json_compressed`` (the default) is
that JSON zlib-compressed with no other framing, ``json`` is it plain.  We write numbers
raw; keys damo ignores keep our snapshots lossless: ``target_pid`` per record and
``aggr_interval_us`` per snapshot.  A run with schemes also writes what a replay of them
needs (:mod:`damoncore.replay`): the regions as the schemes saw them (after the merge,
before they applied; :attr:`Snapshot.schemes_view`) instead of after, each scheme's
cumulative stats per snapshot (``damoncore_schemes``), the moving sum where it is not
``nr_accesses * 10000`` (``damoncore_nr_accesses_bp``), and the schemes themselves in the
record's head (``damoncore_schemes``, kdamonds JSON, raw numbers) and again on the first
snapshot after a ``tune`` committed new ones (``damoncore_schemes_committed``).  The reader also takes
damo's human strings ("4,096", "0 B") and damo's indented layout.

Streaming (:class:`RecordWriter`).  damo buffers a whole recording and writes it at the end
(its ``--output_flush_sec`` starts a new file in a new directory every hour); we append
each snapshot to the file as it comes, so memory stays flat however long the run:

- one JSON fragment per line: ``[``, a record's head ending in ``"snapshots": [``, one
  snapshot per line (``,`` leading from the second on), ``], "data_source": "unknown"}``,
  ``]``.  Consecutive snapshots of one target extend the open record; a snapshot of another
  target closes it and opens a new one, so a multi-target run holds several records per
  target while it runs;
- the bytes go through one zlib stream; at every flush (``flush_sec`` of wall time, or
  1 MiB of pending output) the stream is sync-flushed and a *trailer* is written after
  it: the closing brackets, compressed by a copy of the compressor and finished.  The file
  is then a complete zlib stream of a complete JSON list, readable by damo.  The next flush
  truncates the trailer and appends, so a SIGKILL leaves everything up to the last flush
  (and usually some more: the reader takes any readable prefix);
- :meth:`RecordWriter.close` finishes the stream; if a target's snapshots were split over
  several records, the file is rewritten (streamed, one target at a time) into damo's
  layout, one record per target.  A file left by a killed run keeps the split records:
  our reader merges them, damo lists them as separate records.

Files are created mode 0600 (or ``mode``); an existing output is renamed ``<path>.old``,
as damo does, and only once the new file could be created.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import kdamonds as kd
from .core.snapshot import Snapshot, TargetSnapshot
from .errors import InvalidConfig
from .units import BP

FORMATS = ("json_compressed", "json")
FLUSH_SEC = 1.0                 # default wall seconds between flushes
PENDING_MAX = 1 << 20           # encoded bytes held between flushes at most
READ_CHUNK = 1 << 20
_CLOSE_RECORD = '], "data_source": "unknown"}\n'
_REGION = ('{"start": %d, "end": %d, "nr_accesses": {"samples": %d, "percent": null}, '
           '"age": {"usec": null, "aggr_intervals": %d}, "probe_hits": [], '
           '"sz_filter_passed": 0}')
_SNAPSHOT = ('{"start_time": %d, "end_time": %d, "regions": [%s], "total_bytes": %d, '
             '"damos_stats": null, "sample_interval_us": %d, "aggr_interval_us": %d%s}\n')
# our own snapshot lines, parsed without building a dict per region
_SNAP_RE = re.compile(r',?\{"start_time": (\d+), "end_time": (\d+), "regions": \[(.*)\], '
                      r'"total_bytes": \d+, "damos_stats": null, "sample_interval_us": (\d+), '
                      r'"aggr_interval_us": (\d+)((?:, "damoncore_[a-z_]+": .*)?)\}')
#: snapshot keys of ours (damo ignores them): per scheme cumulative stats, the moving sum
EXT_SCHEMES, EXT_BP = "damoncore_schemes", "damoncore_nr_accesses_bp"
#: a snapshot key of ours: the context's schemes as an online commit set them (see Snapshot)
EXT_COMMITTED = "damoncore_schemes_committed"
#: the stats written per scheme: damo's DamosStats names, then damoncore's
STATS_KEYS = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed",
              "qt_exceeds", "sz_migrated", "sz_promoted", "sz_demoted")
_REGION_RE = re.compile(r'\{"start": (\d+), "end": (\d+), "nr_accesses": \{"samples": (\d+), '
                        r'"percent": null\}, "age": \{"usec": null, "aggr_intervals": (\d+)\}, '
                        r'"probe_hits": \[\], "sz_filter_passed": 0\}')
_HEAD_PREFIXES = ('{"kdamond_idx"', ',{"kdamond_idx"')
_SNAP_PREFIXES = ('{"start_time"', ',{"start_time"')


@dataclass
class Record:
    """One target's snapshots of one context."""

    kdamond_idx: int
    context_idx: int
    target_id: int
    pid: object = None
    intervals: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)     # of Snapshot (one target each)
    schemes: list | None = None      # the context's schemes (kdamonds JSON), if recorded


def _intervals(attrs) -> dict:
    g = attrs.intervals_goal
    return {"sample_us": attrs.sample_us, "aggr_us": attrs.aggr_us,
            "ops_update_us": attrs.ops_update_us,
            "intervals_goal": {"access_bp": g.access_bp, "aggrs": g.aggrs,
                               "min_sample_us": g.min_sample_us,
                               "max_sample_us": g.max_sample_us}}


def _head_line(kdamond_idx, context_idx, target_id, pid, intervals, schemes=None) -> str:
    head = {"kdamond_idx": kdamond_idx, "context_idx": context_idx, "intervals": intervals,
            "scheme_idx": None, "target_id": target_id, "target_pid": pid,
            "scheme_filters": []}
    if schemes:
        head[EXT_SCHEMES] = schemes
    return json.dumps(head)[:-1] + ', "snapshots": [\n'


def scheme_stats(scheme) -> dict:
    """A scheme's cumulative counters as a record keeps them (raw numbers), with its
    effective quota."""
    st = scheme.stats
    d = {k: int(getattr(st, k)) for k in STATS_KEYS}
    d["effective_sz_bytes"] = int(scheme.quota_state.esz)
    return d


def _extension(t: TargetSnapshot, stats, committed=None) -> str:
    """The snapshot keys of ours, as ``, "key": value`` text ('' when there are none)."""
    out = ""
    bp = t.nr_accesses_bp
    if bp is not None and len(bp) and bool(
            (bp.astype(np.uint64) != t.nr_accesses.astype(np.uint64) * np.uint64(BP)).any()):
        out += f', "{EXT_BP}": [' + ", ".join(map(str, bp.tolist())) + "]"
    if stats is not None:
        out += f', "{EXT_SCHEMES}": ' + json.dumps(stats)
    if committed is not None:
        out += f', "{EXT_COMMITTED}": ' + json.dumps(committed)
    return out


def _scheme_state(ctx):
    """A context's (schemes, commits, last commit time) for :meth:`RecordWriter.add`."""
    return (getattr(ctx, "schemes", ()), getattr(ctx, "nr_commits", 0),
            getattr(ctx, "last_commit", None) or (0, 0))


def _snapshot_line(start_us, end_us, sample_us, aggr_us, t: TargetSnapshot, ext="") -> str:
    """One snapshot as one line of JSON; the regions are formatted in one C-level pass."""
    n = len(t.start)
    cols = np.empty((n, 4), np.uint64)
    cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3] = t.start, t.end, t.nr_accesses, t.age
    regions = ", ".join([_REGION] * n) % tuple(cols.ravel().tolist()) if n else ""
    total = int((t.end - t.start).sum()) if n else 0
    return _SNAPSHOT % (start_us * 1000, end_us * 1000, regions, total, sample_us, aggr_us,
                        ext)


# --- the output path ----------------------------------------------------------------------
def _name_max(d: str) -> int:
    try:
        return os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _show(text: str) -> str:
    r = repr(text)
    return r if len(r) <= 80 else f"{r[:60]}...({len(text)} characters)"


def check_output(path: str, suffixes=(), what: str = "record file") -> None:
    """Raise InvalidConfig (one line naming ``path``) unless a record can be written to
    ``path``: a non-empty name, not a directory or other non-regular file, in an existing
    directory we may write to, short enough for itself plus ``.old`` and each of
    ``suffixes`` (side files such as ``.mem_footprint``).  Nothing is created or changed."""
    if not isinstance(path, str) or not path:
        raise InvalidConfig(f"{what}: empty file name")
    if "\0" in path:
        raise InvalidConfig(f"{what} {_show(path)}: a file name cannot contain a NUL byte")
    d = os.path.dirname(path) or "."
    name = os.fsencode(os.path.basename(path))
    longest = os.fsencode(max([".old"] + [s + ".old" for s in suffixes], key=len))
    limit = _name_max(d) if os.path.isdir(d) else 255
    if not name:
        raise InvalidConfig(f"{what} {_show(path)}: names a directory, not a file")
    if len(name) + len(longest) > limit:
        raise InvalidConfig(f"{what} {_show(path)}: file name too long ({len(name)} bytes; "
                            f"{limit - len(longest)} at most, to leave room for "
                            f"{longest.decode()!r})")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InvalidConfig(f"{what} {_show(path)}: {e.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InvalidConfig(f"{what} {_show(path)}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InvalidConfig(f"{what} {_show(path)}: exists and is not a regular file")
    try:
        dst = os.stat(d)
    except FileNotFoundError:
        raise InvalidConfig(f"{what} {_show(path)}: directory {_show(d)} does not exist") \
            from None
    except OSError as e:
        raise InvalidConfig(f"{what} {_show(path)}: directory {_show(d)}: {e.strerror}") \
            from None
    if not stat.S_ISDIR(dst.st_mode):
        raise InvalidConfig(f"{what} {_show(path)}: {_show(d)} is not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise InvalidConfig(f"{what} {_show(path)}: directory {_show(d)} is not writable")
    if st is not None and os.path.isdir(path + ".old"):
        raise InvalidConfig(f"{what} {_show(path)}: cannot keep the existing file, "
                            f"{_show(path + '.old')} is a directory")


def create_output(path: str, mode: int = 0o600, suffixes=(), what: str = "record file") -> int:
    """Check ``path`` (:func:`check_output`), create the new file and only then rename an
    existing one to ``<path>.old`` (damo's backup); returns the new file's descriptor.
    On failure nothing is changed.  Root passes permission checks, so the creation in the
    directory (a hidden temporary file renamed into place) is the real test."""
    check_output(path, suffixes, what)
    d = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".damoncore-", dir=d)
    except OSError as e:
        raise InvalidConfig(f"{what} {_show(path)}: cannot create files in {_show(d)} "
                            f"({e.strerror})") from None
    try:
        os.fchmod(fd, mode)
        if os.path.isfile(path):
            os.replace(path, path + ".old")
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return fd


# --- streaming with a trailer ------------------------------------------------------------
class StreamFile:
    """An append-only encoded stream on ``fd`` that is complete after every :meth:`flush`.

    :meth:`write` encodes text (zlib when ``compressed``) and holds the output;
    :meth:`flush` truncates the previous trailer, appends what is held, then writes
    ``closing`` as a trailer (for zlib: compressed by a copy of the stream and finished),
    so the file always ends as a complete document.  :meth:`finish` ends the stream with
    ``closing`` for good.
    """

    def __init__(self, fd: int, compressed: bool):
        self.fd = fd
        self._z = zlib.compressobj() if compressed else None
        self._pending, self._npending = [], 0
        self._pos = 0                 # end of the stream data: the trailer starts here

    def write(self, text: str) -> bool:
        """Encode ``text``; True when more than :data:`PENDING_MAX` bytes wait."""
        b = text.encode()
        if self._z is not None:
            b = self._z.compress(b)
        if b:
            self._pending.append(b)
            self._npending += len(b)
        return self._npending >= PENDING_MAX

    def _append(self, data: bytes, trailer: bytes) -> None:
        os.ftruncate(self.fd, self._pos)
        buf = memoryview(data + trailer)
        off = 0
        while off < len(buf):
            off += os.pwrite(self.fd, buf[off:], self._pos + off)
        self._pos += len(data)

    def drain(self) -> None:
        """Append what is held without making the file complete (a temporary file)."""
        data = b"".join(self._pending)
        self._pending, self._npending = [], 0
        self._append(data, b"")

    def flush(self, closing: str) -> None:
        data = b"".join(self._pending)
        self._pending, self._npending = [], 0
        if self._z is not None:
            data += self._z.flush(zlib.Z_SYNC_FLUSH)
            tail = self._z.copy()
            trailer = tail.compress(closing.encode()) + tail.flush(zlib.Z_FINISH)
        else:
            trailer = closing.encode()
        self._append(data, trailer)

    def finish(self, closing: str) -> None:
        self.write(closing)
        data = b"".join(self._pending)
        self._pending, self._npending = [], 0
        if self._z is not None:
            data += self._z.flush(zlib.Z_FINISH)
        self._append(data, b"")
        os.fsync(self.fd)


class RecordWriter:
    """Streams snapshots from context callbacks to a damo record file (see the module
    doc).  The file is created (an existing one renamed ``.old``) by the constructor, so a
    bad path fails before monitoring starts.

    ``writer.callback(kdamond_idx, context_idx)`` gives a ``(ctx, Snapshot)`` callback;
    the writer itself is one for kdamond 0, context 0.  A context with schemes has its
    snapshots written as the schemes saw them, with their stats (see the module doc).
    ``flush_sec``: wall seconds between flushes (0: after every snapshot).  ``suffixes``:
    side files that will be written next to it (their names are checked too).  Use it as
    a context manager or call :meth:`close`.
    """

    def __init__(self, path: str, fmt: str = "json_compressed", mode: int = 0o600,
                 flush_sec: float = FLUSH_SEC, suffixes=()):
        if fmt not in FORMATS:
            raise InvalidConfig(f"record format {fmt!r}: known formats are "
                                f"{', '.join(FORMATS)}")
        self.path, self.fmt, self.mode, self.flush_sec = path, fmt, mode, flush_sec
        self._out = StreamFile(create_output(path, mode, suffixes), fmt == "json_compressed")
        self._open = None               # key of the record being extended
        self._nr_records = {}           # key -> records written for it
        self._nr_in_open = 0
        self._nr_commits = {}           # (kdamond, context) -> its commits when last written
        self._last_flush = time.monotonic()
        self.closed = False
        self._out.write("[\n")
        self._out.flush("]\n")

    def callback(self, kdamond_idx: int, context_idx: int):
        def cb(ctx, snap):
            self.add(kdamond_idx, context_idx, ctx.attrs, snap, *_scheme_state(ctx))
        return cb

    def __call__(self, ctx, snap):
        self.add(0, 0, ctx.attrs, snap, *_scheme_state(ctx))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, kdamond_idx, context_idx, attrs, snap: Snapshot, schemes=(),
            nr_commits: int = 0, commit_at=(0, 0)) -> None:
        """Append ``snap`` of context ``context_idx`` of kdamond ``kdamond_idx``;
        ``schemes``: the context's schemes (their stats and settings are recorded);
        ``nr_commits``: the context's online commits so far, ``commit_at`` the (clock us,
        passed sample intervals) of the last (the schemes are written again, with it, on
        the first snapshot after a commit)."""
        full = False
        stats = [scheme_stats(s) for s in schemes] if schemes else snap.scheme_stats
        heads = (lambda: [kd.scheme_to_dict(s, raw=True) for s in schemes]) if schemes \
            else (lambda: None)
        last = self._nr_commits.setdefault((kdamond_idx, context_idx), nr_commits)
        committed = None
        if nr_commits != last:
            self._nr_commits[(kdamond_idx, context_idx)] = nr_commits
            at_us, sis = commit_at
            committed = {"time_us": at_us, "sample_intervals": sis, "schemes": heads() or []}
        for t in snap.schemes_view if snap.schemes_view is not None else snap.targets:
            full |= self._add_one((kdamond_idx, context_idx, t.target_idx), t.pid,
                                  lambda: _intervals(attrs), snap, t, stats, heads,
                                  committed)
        if full or time.monotonic() - self._last_flush >= self.flush_sec:
            self.flush()

    def _add_one(self, key, pid, intervals, snap, t, stats=None, schemes=lambda: None,
                 committed=None) -> bool:
        """Append one target's snapshot, opening a record for ``key`` if another is open;
        ``intervals()`` (and ``schemes()``) give the new record's intervals (and schemes).
        True when a flush is due."""
        text = ""
        if key != self._open:
            if self._open is not None:
                text += _CLOSE_RECORD
            text += ("," if self._nr_records else "") + _head_line(*key, pid, intervals(),
                                                                    schemes())
            self._nr_records[key] = self._nr_records.get(key, 0) + 1
            self._open, self._nr_in_open = key, 0
        text += ("," if self._nr_in_open else "") + _snapshot_line(
            snap.start_us, snap.end_us, snap.sample_us, snap.aggr_us, t,
            _extension(t, stats, committed))
        self._nr_in_open += 1
        return self._out.write(text)

    def _closing(self) -> str:
        return (_CLOSE_RECORD if self._open is not None else "") + "]\n"

    def flush(self) -> None:
        """Make the file a complete record of everything added so far."""
        self._out.flush(self._closing())
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Finish the file; rewrite it as one record per target if they were split."""
        if self.closed:
            return
        self.closed = True
        try:
            self._out.finish(self._closing())
        finally:
            os.close(self._out.fd)
        if any(n > 1 for n in self._nr_records.values()):
            _compact(self.path, self.fmt, self.mode)


def _compact(path: str, fmt: str, mode: int) -> None:
    """Rewrite ``path`` with one record per target (damo's layout), one target per pass
    over the file, so memory stays flat; atomic (a temporary file renamed over it)."""
    keys, heads = [], {}
    for kind, key, line in _iter_layout(path):
        if kind == "head" and key not in heads:
            keys.append(key)
            heads[key] = line.lstrip(",")
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".damoncore-", dir=d)
    try:
        os.fchmod(fd, mode)
        out = StreamFile(fd, fmt == "json_compressed")
        out.write("[\n")
        for i, key in enumerate(keys):
            out.write(("," if i else "") + heads[key])
            n = 0
            for kind, k, line in _iter_layout(path):
                if kind == "snapshot" and k == key:
                    if out.write(("," if n else "") + line.lstrip(",")):
                        out.drain()
                    n += 1
            out.write(_CLOSE_RECORD)
        out.finish("]\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_records(records, path: str, fmt: str = "json_compressed", mode: int = 0o600) -> None:
    """Write ``records`` (list of :class:`Record`) as one file (an existing one is renamed
    ``.old``)."""
    with RecordWriter(path, fmt, mode, flush_sec=float("inf")) as w:
        for r in records:
            key = (r.kdamond_idx, r.context_idx, r.target_id)
            for snap in r.snapshots:
                t = snap.schemes_view[0] if snap.schemes_view else snap.targets[0]
                if w._add_one(key, r.pid, lambda: r.intervals, snap, t, snap.scheme_stats,
                              lambda: r.schemes, snap.schemes_committed):
                    w.flush()


# --- reading ------------------------------------------------------------------------------
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
    t0 = kd.parse_time_ns(kv["start_time"], "start_time") // 1000
    t1 = kd.parse_time_ns(kv["end_time"], "end_time") // 1000
    ts = TargetSnapshot(target_id, pid, start, end, np.array(nr, np.uint32),
                        np.array(age, np.uint32))
    snap = Snapshot(t0, t1, sample, aggr, max(1, aggr // sample), [ts])
    _apply_extension(snap, kv)
    return snap


def _apply_extension(snap: Snapshot, kv: dict) -> None:
    """Our snapshot keys (see the module doc) into ``snap``; InvalidConfig if malformed."""
    t = snap.targets[0]
    bp = kv.get(EXT_BP)
    if bp is not None:
        if not isinstance(bp, list) or len(bp) != len(t.start) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 32
                for v in bp):
            raise InvalidConfig(f"{EXT_BP}: expected one u32 per region")
        t.nr_accesses_bp = np.array(bp, np.uint32)
    stats = kv.get(EXT_SCHEMES)
    if stats is not None:
        if not isinstance(stats, list) or not all(
                isinstance(d, dict) and all(isinstance(d.get(k, 0), int)
                                            and not isinstance(d.get(k, 0), bool)
                                            and d.get(k, 0) >= 0 for k in STATS_KEYS)
                for d in stats):
            raise InvalidConfig(f"{EXT_SCHEMES}: expected a list of scheme stats")
        snap.scheme_stats = stats
    committed = kv.get(EXT_COMMITTED)
    if committed is not None:
        if not (isinstance(committed, dict)
                and all(isinstance(committed.get(k), int) and committed[k] >= 0
                        and not isinstance(committed[k], bool)
                        for k in ("time_us", "sample_intervals"))
                and isinstance(committed.get("schemes"), list)
                and all(isinstance(x, dict) for x in committed["schemes"])):
            raise InvalidConfig(f"{EXT_COMMITTED}: expected time_us, sample_intervals and "
                                f"a list of schemes")
        snap.schemes_committed = committed


def _snapshot_from_line(line, rec_sample, rec_aggr, target_id, pid) -> Snapshot:
    """A snapshot line as :class:`RecordWriter` writes it, by two regular expressions
    (about twice as fast as a dict per region); anything else goes through JSON."""
    m = _SNAP_RE.fullmatch(line)
    if m:
        body = m.group(3)
        regs = _REGION_RE.findall(body)
        if len(regs) == body.count('{"start"'):
            cols = np.array(regs, dtype=np.uint64).reshape(-1, 4)
            sample, aggr = int(m.group(4)), int(m.group(5))
            if sample and aggr and (cols[:, 2:] <= np.uint64(0xFFFFFFFF)).all():
                ts = TargetSnapshot(target_id, pid, cols[:, 0].copy(), cols[:, 1].copy(),
                                    cols[:, 2].astype(np.uint32), cols[:, 3].astype(np.uint32))
                snap = Snapshot(int(m.group(1)) // 1000, int(m.group(2)) // 1000, sample,
                                aggr, max(1, aggr // sample), [ts])
                if m.group(6):
                    _apply_extension(snap, json.loads("{" + m.group(6)[2:] + "}"))
                return snap
    return _snapshot_from_kv(json.loads(line.lstrip(",")), rec_sample, rec_aggr, target_id,
                             pid)


def _text_chunks(path: str):
    """The file's text, decompressed if it is zlib, in pieces of at most
    :data:`READ_CHUNK` characters (a 1 MiB zlib chunk can hold 30 MiB of text); a truncated
    zlib stream yields what it holds (a killed recording)."""
    with open(path, "rb") as f:
        first = f.read(READ_CHUNK)
        if first.lstrip()[:1] in (b"[", b"{"):
            chunk = first
            while chunk:
                yield chunk.decode(errors="replace")
                chunk = f.read(READ_CHUNK)
            return
        d = zlib.decompressobj()
        data = first
        try:
            while data and not d.eof:
                while data and not d.eof:
                    yield d.decompress(data, READ_CHUNK).decode(errors="replace")
                    data = d.unconsumed_tail
                data = f.read(READ_CHUNK)
            yield d.flush().decode(errors="replace")
        except zlib.error as e:
            raise InvalidConfig(f"not a damo record file (neither JSON nor zlib: {e})") \
                from None


def _lines(path: str):
    """Complete lines of the file's text (a last line without its newline is dropped)."""
    rest = ""
    for chunk in _text_chunks(path):
        rest += chunk
        *lines, rest = rest.split("\n")
        yield from lines


def _iter_layout(path: str):
    """(kind, key, line) of a file in our line layout: kind ``head``/``snapshot``."""
    key = None
    for line in _lines(path):
        if line.startswith(_HEAD_PREFIXES):
            h = json.loads(line.lstrip(",") + "]}")
            key = (h.get("kdamond_idx"), h.get("context_idx"), h.get("target_id"))
            yield "head", key, line + "\n"
        elif line.startswith(_SNAP_PREFIXES):
            yield "snapshot", key, line + "\n"


def _is_line_layout(path: str) -> bool:
    head = ""
    for chunk in _text_chunks(path):
        head += chunk
        if len(head) >= 64 or not chunk:
            break
    # a recording cut short may hold only the start of these
    return any(head.startswith(p) or p.startswith(head)
               for p in ("[\n{\"kdamond_idx\"", "[\n]"))


def _norm_intervals(iv) -> dict:
    """A record's intervals as raw numbers (damo writes human strings such as "5 ms");
    the kernel's defaults for what is missing."""
    iv = iv if isinstance(iv, dict) else {}
    g = iv.get("intervals_goal")
    g = g if isinstance(g, dict) else {}
    return {"sample_us": kd.parse_time_us(iv.get("sample_us", 5000), "sample_us"),
            "aggr_us": kd.parse_time_us(iv.get("aggr_us", 100000), "aggr_us"),
            "ops_update_us": kd.parse_time_us(iv.get("ops_update_us", 1000000),
                                              "ops_update_us"),
            "intervals_goal": {
                "access_bp": kd.parse_ratio(g.get("access_bp", 0), BP, "access_bp"),
                "aggrs": kd.parse_nr(g.get("aggrs", 0), "aggrs"),
                "min_sample_us": kd.parse_time_us(g.get("min_sample_us", 0), "min_sample_us"),
                "max_sample_us": kd.parse_time_us(g.get("max_sample_us", 0),
                                                  "max_sample_us")}}


def _record_from_head(h) -> Record:
    schemes = h.get(EXT_SCHEMES)
    if schemes is not None and not (isinstance(schemes, list)
                                    and all(isinstance(x, dict) for x in schemes)):
        raise InvalidConfig(f"{EXT_SCHEMES}: expected a list of schemes")
    return Record(h.get("kdamond_idx"), h.get("context_idx"), h.get("target_id"),
                  h.get("target_pid"), _norm_intervals(h.get("intervals")), schemes=schemes)


def _rec_intervals(r: Record):
    iv = _norm_intervals(r.intervals)
    return iv["sample_us"], iv["aggr_us"]


def _read_line_layout(path: str) -> list:
    """Our streamed layout, one line at a time; records of one target are merged."""
    out, cur, iv = {}, None, None
    for line in _lines(path):
        if line.startswith(_HEAD_PREFIXES):
            h = json.loads(line.lstrip(",") + "]}")
            key = (h.get("kdamond_idx"), h.get("context_idx"), h.get("target_id"))
            cur = out.get(key)
            if cur is None:
                cur = out[key] = _record_from_head(h)
            iv = _rec_intervals(cur)
        elif line.startswith(_SNAP_PREFIXES) and cur is not None:
            cur.snapshots.append(_snapshot_from_line(line, *iv, cur.target_id, cur.pid))
    return list(out.values())


def _read_json(path: str) -> list:
    text = "".join(_text_chunks(path))
    try:
        kvs = json.loads(text)
    except ValueError as e:
        raise InvalidConfig(f"not a damo record file (bad JSON: {e})") from None
    if not isinstance(kvs, list):
        raise InvalidConfig("not a damo record file (expected a JSON list of records)")
    out = {}
    for kv in kvs:
        if not isinstance(kv, dict):
            raise InvalidConfig("not a damo record file (a record is not an object)")
        r = _record_from_head(kv)
        key = (r.kdamond_idx, r.context_idx, r.target_id)
        iv = _rec_intervals(r)
        snaps = [_snapshot_from_kv(s, *iv, r.target_id, r.pid)
                 for s in kv.get("snapshots") or []]
        if key in out:
            out[key].snapshots += snaps
        else:
            r.snapshots = snaps
            out[key] = r
    return list(out.values())


def read_records(path: str) -> list:
    """Records of a ``json_compressed`` or ``json`` file (ours, complete or left by a
    killed run, or damo's); records of one (kdamond, context, target) are merged.
    InvalidConfig (one line) for anything that is not a record file."""
    if os.path.getsize(path) == 0:
        raise InvalidConfig("not a damo record file (empty)")
    try:
        if _is_line_layout(path):
            return _read_line_layout(path)
        return _read_json(path)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if isinstance(e, InvalidConfig):
            raise
        what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise InvalidConfig(f"not a damo record file ({type(e).__name__}: {what})") \
            from None


# --- memory footprints (damo's <record>.mem_footprint) ------------------------------------
class FootprintWriter:
    """Streams damo's ``.mem_footprint`` list (plain JSON, one snapshot per line), complete
    after every :meth:`add`.  ``path`` is created with exactly ``mode``; an existing one is
    renamed ``.old``."""

    def __init__(self, path: str, mode: int = 0o600):
        self.path = path
        self._out = StreamFile(create_output(path, mode, what="footprint file"),
                               compressed=False)
        self._n = 0
        self._out.write("[\n")
        self._out.flush("]\n")

    def add(self, snapshot: dict) -> None:
        self._out.write(("," if self._n else "") + json.dumps(snapshot) + "\n")
        self._n += 1
        self._out.flush("]\n")

    def close(self) -> None:
        if self._out.fd >= 0:
            self._out.finish("]\n")
            os.close(self._out.fd)
            self._out.fd = -1


def write_footprints(snapshots, path: str, mode: int = 0o600) -> None:
    """``snapshots``: [{"time": sec, "footprints": [{"pid": pid|None, "footprint": {...}}]}]
    with damo's statm pages (size, resident, ...) per pid and meminfo KiB (total, free)
    for ``pid: None``.  The file gets exactly ``mode`` (damo's --output_permission)."""
    w = FootprintWriter(path, mode)
    for s in snapshots:
        w.add(s)
    w.close()


def read_footprints(path: str) -> list:
    """damo's mem_footprint list; from a killed recording, its complete lines."""
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    try:
        out = json.loads(text)
    except ValueError as e:
        if not text.startswith("[\n"):
            raise InvalidConfig(f"not a damo mem_footprint file ({e})") from None
        try:
            out = [json.loads(line.lstrip(",")) for line in text.split("\n")[1:-1]
                   if line.startswith(("{", ",{"))]
        except ValueError as e2:
            raise InvalidConfig(f"not a damo mem_footprint file ({e2})") from None
    if not isinstance(out, list) or not all(isinstance(s, dict) for s in out):
        raise InvalidConfig("not a damo mem_footprint file (expected a JSON list of "
                            "snapshots)")
    return out
