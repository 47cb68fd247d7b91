"""``python -m startup_probe OUT.json <damoncore args...>``: run the damoncore command line in
this process and write where its start-up time went (CLOCK_MONOTONIC seconds, comparable
with the caller's ``time.monotonic()``):

- ``t_exec``: this module's first line ran (the interpreter's own start is before it);
- ``t_imported``: damoncore's command line and the modules a paddr start uses imported;
- ``ctx_start``: [enter, leave] of each ``Context.start`` (the ops backend's ``init``);
- ``t_first_sample``: the first sample begin of any context (``begin_samples``, which begins
  natively or calls ``sample_begin``);
- ``applies``: [enter, leave, bytes applied, own CPU s, thread id, ranges, bytes of the
  ranges] of the first 50 ``apply_scheme`` calls;
- ``calls``: per function of the sample and apply paths (``TIMED``), [calls, seconds] in
  total and until the first apply that moved bytes ended, then the calling thread's CPU
  seconds in total and until then (all threads: cProfile sees only the main thread, and the
  kdamonds run in their own);
- ``moves``: [enter, leave, pages] of the first 50 move_pages calls; ``first_calls``:
  [enter, leave, thread id] of the first 8 calls of each timed function;
- ``threads``: at the enter and leave of the first 8 applies, every thread of this process
  as {tid: [name, CPU s, run-queue wait s]} (/proc/self/task/*/schedstat), and the guest's
  per-CPU busy seconds (/proc/stat), to tell an apply's own work from waiting for the GIL or
  the vCPU;
- ``late_imports``: [enter, modules imported since the first sample] and ``apply_ranges``:
  [starts, ends] at the first 8 applies;
- ``gc``: [start, seconds, generation, thread id] of the collections.

Instrumentation only: the wrapped methods run unchanged.  Used by the guest TPP test.
"""
import time

T_EXEC = time.monotonic()

import json  # noqa: E402
import sys  # noqa: E402


TIMED = ["damoncore.core.context:Context.sample_begin", "damoncore.core.context:Context.sample_end",
         "damoncore.schemes.apply:apply_schemes", "damoncore.ops.paddr:PaddrOps.check_accesses",
         "damoncore.ops.paddr:PaddrOps.update", "damoncore.ops.rmap:OwnerIndex.lookup",
         "damoncore.ops.rmap:OwnerIndex.build", "damoncore.ops.rmap:OwnerIndex._find",
         "damoncore.ops.rmap:OwnerIndex._frame_info", "damoncore.ops.rmap:OwnerIndex.note_moved",
         "damoncore.ops.common:PageFilters.passed", "damoncore.ops.vaddr:VaddrOps._migrate",
         "damoncore.ops.rmap:OwnerIndex._candidates", "damoncore.ops.rmap:OwnerIndex.refresh_scope",
         "damoncore.ops.rmap:OwnerIndex._index_until_found", "damoncore.ops.rmap:OwnerIndex._rss",
         "damoncore.ops.vaddr:move_pages", "damoncore.ops.vaddr:query_pages",
         "damoncore.cli.start:kdamonds_from_args", "damoncore.kdamonds:build_contexts",
         "damoncore.cli.start:StatusServer", "damoncore.cli.main:build_parser",
         "damoncore.cli.start:run", "damoncore.numa.topology:Topology.read",
         "damoncore.cli.backends:pick_backend", "damoncore.cli.backends:ops_factory",
         "damoncore.ops.paddr:PaddrOps.init", "damoncore.core.context:Kdamond.run",
         "damoncore.ops.rmap:OwnerIndex._memcg_map", "damoncore.ops.rmap:OwnerIndex._procs_in",
         "damoncore.ops.rmap:_read_small", "damoncore.ops.rmap:index_process",
         "damoncore.ops.rmap:Extents.__init__", "damoncore.ops.common:pagemap_entries",
         "damoncore.ops.rmap:pagemap_entries", "damoncore.ops.paddr:pagemap_entries",
         "damoncore.core.context:apply_schemes", "damoncore.schemes.apply:adjust_quota",
         "damoncore.schemes.apply:apply_to_target", "damoncore.core.context:Context.sample_end_due",
         "damoncore.core.context:Context._aggregation_end"]


def _threads():
    """{tid: [name, CPU s, run-queue wait s]} of this process' threads, and the per-CPU busy
    seconds of the machine."""
    import os
    import threading
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                run, wait = f.read().split()[:2]
        except OSError:
            continue
        out[tid] = [names.get(int(tid), "?"), int(run) / 1e9, int(wait) / 1e9]
    hz = os.sysconf("SC_CLK_TCK")
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                cpus[line.split()[0]] = (sum(v) - v[3] - v[4]) / hz     # all but idle, iowait
    return {"t": time.monotonic(), "tasks": out, "cpus": cpus}


def _time_calls(rec):
    import importlib
    import threading
    lock = threading.Lock()
    for spec in TIMED:
        mod, qual = spec.split(":")
        try:
            owner = importlib.import_module(mod)
            *path, name = qual.split(".")
            for p in path:
                owner = getattr(owner, p)
            fn = getattr(owner, name)
        except (ImportError, AttributeError):
            continue
        acc = rec["calls"].setdefault(qual, [0, 0.0, 0, 0.0, 0.0, 0.0])
        is_move = spec == "damoncore.ops.vaddr:move_pages"

        def timed(*a, _fn=fn, _acc=acc, _is_move=is_move, qual_=qual, **kw):
            t, c = time.monotonic(), time.thread_time()
            try:
                return _fn(*a, **kw)
            finally:
                dt, dc = time.monotonic() - t, time.thread_time() - c
                with lock:
                    _acc[0] += 1
                    _acc[1] += dt
                    _acc[4] += dc
                    if not any(x[2] for x in rec["applies"]):
                        _acc[2] += 1
                        _acc[3] += dt
                        _acc[5] += dc
                    first = rec["first_calls"].setdefault(qual_, [])
                    if len(first) < 8:
                        first.append([t, t + dt, threading.get_native_id()])
                    if _is_move and len(rec["moves"]) < 50:
                        rec["moves"].append([t, t + dt, len(a[1])])
        setattr(owner, name, timed)


def main(out_path, argv):
    from damoncore.cli import main as cli
    from damoncore.core import context as ctxmod
    from damoncore.ops import base
    import threading

    rec = {"t_exec": T_EXEC, "t_imported": None, "ctx_start": [],
           "t_first_sample": None, "applies": [], "calls": {}, "moves": [],
           "threads": [], "first_calls": {}}
    _time_calls(rec)                          # imports what a paddr start needs, too
    import gc
    gc_start = {}

    def on_gc(phase, info):                   # collections and their wall time, per thread
        tid = threading.get_native_id()
        if phase == "start":
            gc_start[tid] = time.monotonic()
        elif tid in gc_start and len(rec["gc"]) < 2000:
            t = gc_start.pop(tid)
            rec["gc"].append([t, time.monotonic() - t, info["generation"], tid])
    rec["gc"], rec["late_imports"], rec["apply_ranges"] = [], [], []
    gc.callbacks.append(on_gc)
    rec["t_imported"] = time.monotonic()
    start, begin_samples = ctxmod.Context.start, ctxmod.Context.begin_samples

    def timed_start(self):
        t = time.monotonic()
        start(self)
        rec["ctx_start"].append([t, time.monotonic()])

    def timed_begin_samples(self, *a, **kw):
        if rec["t_first_sample"] is None:
            rec["t_first_sample"] = time.monotonic()
            rec["_mods"] = set(sys.modules)
        return begin_samples(self, *a, **kw)

    def wrap_apply(cls):
        orig = cls.apply_scheme

        def timed_apply(self, *a, **kw):
            snap = len(rec["threads"]) < 16
            if snap:
                before = _threads()
            t, c = time.monotonic(), time.thread_time()
            r = orig(self, *a, **kw)
            if len(rec["applies"]) < 50:
                # enter, leave, bytes applied, the apply's own CPU s, its thread, ranges
                rec["applies"].append([t, time.monotonic(), int(r.sz_applied),
                                       time.thread_time() - c, threading.get_native_id(),
                                       len(a[3]), int(sum(int(e) - int(b)
                                                          for b, e in zip(a[3], a[4])))])
            if snap:
                rec["threads"] += [before, _threads()]
                # modules first imported since the first sample (lazy imports on the way)
                late = sorted(set(sys.modules) - rec["_mods"]) if "_mods" in rec else []
                rec["late_imports"].append([t, late])
                rec["apply_ranges"].append([[int(x) for x in a[3]], [int(x) for x in a[4]]])
            return r
        cls.apply_scheme = timed_apply

    ctxmod.Context.start = timed_start
    ctxmod.Context.begin_samples = timed_begin_samples
    from damoncore.ops.paddr import PaddrOps
    for cls in {PaddrOps, *base.Operations.__subclasses__()}:
        if "apply_scheme" in cls.__dict__:
            wrap_apply(cls)
    try:
        return cli.main(argv)
    finally:
        rec.pop("_mods", None)
        with open(out_path, "w") as f:
            json.dump(rec, f)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
