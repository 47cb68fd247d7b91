"""Reading the file a report names: every way it can be wrong (missing, a directory, not
a record, values out of range) becomes one :class:`ArgsError` naming the file, before
anything is printed."""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import numpy as np

from .. import kdamonds as kd
from .. import records as rec
from ..errors import InvalidConfig
from .checks import input_file
from .damo_options import ArgsError

# what a damaged file makes the readers raise (besides InvalidConfig)
_DAMAGE = (ValueError, KeyError, TypeError, AttributeError, IndexError, ArithmeticError,
           zlib.error, RecursionError, EOFError)
_FOOTPRINT = [{"time": "number", "footprints": [{"pid": ("number", None),
                                                  "footprint": {}}]}]


@contextmanager
def _reading(where: str, kind: str, bad: str):
    """Any way reading the file at ``where`` as a ``kind`` file fails becomes one
    ArgsError: unreadable, damaged, or the reader's InvalidConfig (said as ``bad (...)``
    unless it already says what the file is not)."""
    try:
        yield
    except OSError as e:
        raise ArgsError(f"{where}: cannot read it ({e.strerror or e})") from None
    except InvalidConfig as e:
        msg = str(e) if str(e).startswith("not a ") else f"{bad} ({e})"
        raise ArgsError(f"{where}: {msg}") from None
    except _DAMAGE as e:
        raise ArgsError(f"{where}: not a {kind} file ({type(e).__name__}: "
                        f"{kd.show(str(e), 120)[1:-1]})") from None


def _check_record(r, where: str) -> None:
    for i, s in enumerate(r.snapshots):
        t = s.targets[0]
        bad = None
        if not 0 <= s.start_us <= s.end_us:
            bad = f"snapshot {i}: start time after end time"
        elif s.sample_us <= 0 or s.aggr_us <= 0:
            bad = f"snapshot {i}: sampling or aggregation interval of 0"
        elif len(t.start) and not bool(np.all(t.start < t.end)):
            bad = f"snapshot {i}: a region's start is not below its end"
        if bad:
            raise ArgsError(f"{where}: bad record (kdamond {r.kdamond_idx} context "
                            f"{r.context_idx} target {r.target_id}: {bad})")


def load_records(path: str, what: str = "--input") -> list:
    """The records of ``path`` (damo's json_compressed or json), checked."""
    input_file(path, what)
    where = f"{what} {kd.show(path)}"
    with _reading(where, "damo record", "bad record"):
        recs = rec.read_records(path)
        if not isinstance(recs, list):
            raise ValueError("not a list of records")
        for r in recs:
            if not all(isinstance(v, int) and not isinstance(v, bool)
                       for v in (r.kdamond_idx, r.context_idx, r.target_id)):
                raise InvalidConfig("not a damo record file (a record without integer "
                                    "kdamond_idx, context_idx and target_id)")
    for r in recs:
        _check_record(r, where)
    return recs


def load_footprints(path: str, what: str = "--input") -> list:
    """damo's ``<record>.mem_footprint`` snapshots of ``path``, checked."""
    input_file(path, what, " (record writes it next to the record file, on a real "
                           "backend, with --do_record mem_footprint)")
    where = f"{what} {kd.show(path)}"
    with _reading(where, "damo mem_footprint", "not a damo mem_footprint file"):
        snaps = rec.read_footprints(path)
        kd.check_shape(snaps, _FOOTPRINT, "mem_footprint")
        for s in snaps:
            if "footprints" not in s:
                raise InvalidConfig("a snapshot without footprints")
            for fp in s["footprints"]:
                if "pid" not in fp or "footprint" not in fp:
                    raise InvalidConfig("a footprint without pid or footprint")
                need = ("total", "free") if fp.get("pid") is None else ("size", "resident")
                for k in need:
                    v = fp["footprint"].get(k)
                    if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                                          or not 0 <= v < 1 << 63):
                        raise InvalidConfig(f"footprint {k}: {kd.show(v)} is not a count")
    return snaps
