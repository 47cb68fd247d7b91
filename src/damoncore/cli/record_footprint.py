"""``record``'s memory footprints: damo's ``<record file>.mem_footprint``.

As damo's ``record`` does it (damo: src/damo_record.py, src/_damo_records.py):

- ``--do_record`` (one or more of access, cpu_profile, mem_footprint, vmas, proc_stats,
  damon_trace_events; default all but the last) says what to record.  With
  ``mem_footprint`` the file is ``<record file>.mem_footprint``; an existing one is moved
  to ``<record file>.mem_footprint.old`` before recording starts.
- One snapshot right away, then one each second (the recording loop's sleep) while
  monitoring runs: ``{"time": <epoch seconds>, "footprints": [...]}`` with one entry
  ``{"pid": <pid>, "footprint": {size, resident, shared, trs, lrs, drs, dt}}`` per
  distinct target pid (the pages of /proc/<pid>/statm; all 0 once the process is gone)
  and last ``{"pid": null, "footprint": {total, free, available, buffers, cached}}``
  (KiB, /proc/meminfo).  paddr targets have no pid, so their snapshots hold the system
  entry only.
- The list is indented JSON, mode ``--output_permission`` (an octal string, default 600,
  also applied to the record file).

Departures: the list is written as it grows, one snapshot per line and complete after each
(:class:`~damoncore.records.FootprintWriter`), so a killed recording keeps its footprints;
damo writes it at the end.  A run on simulated memory (``--backend sim``, or the fallback to
it) writes no footprint file, because /proc describes this machine, not the simulated one.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time

from ..errors import DamonError
from ..linux.formats import parse_meminfo
from .damo_args import NodeResolver, kdamonds_from_args
from .damo_options import ArgsError

DO_RECORD = ("access", "cpu_profile", "mem_footprint", "vmas", "proc_stats",
             "damon_trace_events")
DO_RECORD_DEFAULT = ["access", "cpu_profile", "mem_footprint", "vmas", "proc_stats"]
PERIOD_S = 1.0
STATM_FIELDS = ("size", "resident", "shared", "trs", "lrs", "drs", "dt")
MEMINFO_FIELDS = (("total", "MemTotal"), ("free", "MemFree"),
                  ("available", "MemAvailable"), ("buffers", "Buffers"),
                  ("cached", "Cached"))


def add_args(p) -> None:
    p.add_argument("--output_permission", metavar="<octal>", default="600",
                   help="permission of the output files (default 600)")
    p.add_argument("--do_record", nargs="+", choices=list(DO_RECORD),
                   default=list(DO_RECORD_DEFAULT),
                   help="what to record: access (the record file), mem_footprint "
                        "(<file>.mem_footprint); the others are accepted and ignored")


def parse_permission(text: str) -> int:
    try:
        mode = int(str(text), 8)
    except ValueError:
        raise ArgsError(f"--output_permission {text}: not an octal number") from None
    if not 0 <= mode <= 0o777:
        raise ArgsError(f"--output_permission {text}: out of the 0-777 range")
    return mode


# --- reading /proc ------------------------------------------------------------------------
def proc_footprint(pid: int, procfs_root: str = "/proc") -> dict:
    """/proc/<pid>/statm in pages; zeros when the process is gone (as damo)."""
    try:
        with open(os.path.join(procfs_root, str(pid), "statm")) as f:
            vals = [int(x) for x in f.read().split()][:len(STATM_FIELDS)]
        if len(vals) < len(STATM_FIELDS):
            raise ValueError("short statm")
    except (OSError, ValueError):
        vals = [0] * len(STATM_FIELDS)
    return dict(zip(STATM_FIELDS, vals))


def sys_footprint(procfs_root: str = "/proc") -> dict:
    """MemTotal, MemFree, MemAvailable, Buffers, Cached of /proc/meminfo (KiB)."""
    with open(os.path.join(procfs_root, "meminfo")) as f:
        m = parse_meminfo(f.read())
    return {k: m[name] // 1024 if name in m else None for k, name in MEMINFO_FIELDS}


def snapshot(pids, procfs_root: str = "/proc") -> dict:
    fps = [{"pid": pid, "footprint": proc_footprint(pid, procfs_root)} for pid in pids]
    fps.append({"pid": None, "footprint": sys_footprint(procfs_root)})
    return {"time": time.time(), "footprints": fps}


def target_pids(kdamonds: dict) -> list:
    """Distinct pids of the targets of a kdamonds dict, in order (paddr ones have none)."""
    pids = [t["pid"] for k in kdamonds.get("kdamonds", []) for c in k.get("contexts", [])
            for t in c.get("targets", []) if t.get("pid") is not None]
    return list(dict.fromkeys(pids))


class _AnyNode(NodeResolver):
    """Ranges only matter to monitoring, not to which pids are targets."""

    def node_ranges(self, nid):
        return [(nid << 30, (nid + 1) << 30)]

    def default_paddr(self):
        return [(0, 1 << 30)]


# --- sampling -----------------------------------------------------------------------------
class FootprintSampler:
    """Takes a snapshot now and then every ``period_s`` in a thread until :meth:`stop`;
    each goes to ``sink`` (a callable) if given, else into :attr:`snapshots`."""

    def __init__(self, pids, procfs_root: str = "/proc", period_s: float = PERIOD_S,
                 sink=None):
        self.pids = list(dict.fromkeys(pids))
        self.procfs_root, self.period_s, self.sink = procfs_root, period_s, sink
        self.snapshots, self.error = [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem_footprint", daemon=True)

    def start(self) -> "FootprintSampler":
        self._thread.start()
        return self

    def _run(self):
        try:
            while True:
                snap = snapshot(self.pids, self.procfs_root)
                if self.sink is None:
                    self.snapshots.append(snap)
                else:
                    self.sink(snap)
                if self._stop.wait(self.period_s):
                    return
        except Exception as e:      # reported by stop(), in the main thread
            self.error = e

    def stop(self, check: bool = True) -> list:
        """End sampling; the snapshots taken (DamonError if sampling failed and check)."""
        self._stop.set()
        self._thread.join()
        if check and self.error is not None:
            raise DamonError(f"memory footprint recording failed: {self.error}")
        return self.snapshots


class FootprintRecording:
    """One ``record`` run's footprints: :meth:`plan` (before anything starts: checks only),
    :meth:`begin` once monitoring is set up, then :meth:`finish` or :meth:`abandon`."""

    def __init__(self, path, mode, pids, procfs_root, quiet):
        self.path, self.mode, self.pids = path, mode, pids
        self.procfs_root, self.quiet = procfs_root, quiet
        self.sampler = self.writer = None
        self.simulated = False

    @classmethod
    def plan(cls, args, record_path, mode):
        """None unless ``mem_footprint`` is in ``--do_record``; raises ArgsError for a bad
        option, touching nothing."""
        if "mem_footprint" not in args.do_record or not record_path:
            return None
        pids = target_pids(kdamonds_from_args(copy.copy(args), _AnyNode()))
        return cls(f"{record_path}.mem_footprint", mode, pids,
                   getattr(args, "procfs_root", "/proc"), args.quiet)

    def begin(self, kdamonds) -> None:
        """Move an existing file to ``.old`` (as damo) and, on real memory, start writing
        a snapshot a second."""
        from .. import records
        self.simulated = _simulated(kdamonds)
        if self.simulated:
            if os.path.isfile(self.path):
                os.replace(self.path, self.path + ".old")
            return
        self.writer = records.FootprintWriter(self.path, self.mode)
        self.sampler = FootprintSampler(self.pids, self.procfs_root,
                                        sink=self.writer.add).start()

    def _stop(self, check: bool) -> None:
        try:
            if self.sampler:
                self.sampler.stop(check)
        finally:
            if self.writer:
                self.writer.close()

    def abandon(self) -> None:
        """The run failed: stop sampling; what was written stays (a complete list)."""
        self._stop(check=False)

    def finish(self) -> None:
        self._stop(check=True)
        if self.simulated and not self.quiet:
            print(f"memory footprints not recorded to {self.path}: the run was on "
                  f"simulated memory", file=sys.stderr, flush=True)


def _simulated(kdamonds) -> bool:
    from ..ops.sim import SimOps
    return any(isinstance(c.ops, SimOps) for ctxs in kdamonds for c in ctxs)
