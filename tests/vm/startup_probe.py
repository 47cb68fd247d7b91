"""``python -m startup_probe OUT.json <damoncore args...>``: run the damoncore command line in
this process and write where its start-up time went (CLOCK_MONOTONIC seconds, comparable
with the caller's ``time.monotonic()``):

- ``t_exec``: this module's first line ran (the interpreter's own start is before it);
- ``t_imported``: damoncore's command line and the modules a paddr start uses imported;
- ``ctx_start``: [enter, leave] of each ``Context.start`` (the ops backend's ``init``);
- ``t_first_sample``: the first sample begin of any context (``begin_samples``, which begins
  natively or calls ``sample_begin``);
- ``applies``: [enter, leave, bytes applied] of the first 50 ``apply_scheme`` calls;
- ``calls``: per function of the sample and apply paths (``TIMED``), [calls, seconds] in
  total and until the first apply that moved bytes ended (all threads: cProfile sees only
  the main thread, and the kdamonds run in their own).

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
         "damoncore.ops.paddr:PaddrOps.init", "damoncore.core.context:Kdamond.run"]


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
        acc = rec["calls"].setdefault(qual, [0, 0.0, 0, 0.0])

        def timed(*a, _fn=fn, _acc=acc, **kw):
            t = time.monotonic()
            try:
                return _fn(*a, **kw)
            finally:
                dt = time.monotonic() - t
                with lock:
                    _acc[0] += 1
                    _acc[1] += dt
                    if not any(x[2] for x in rec["applies"]):
                        _acc[2] += 1
                        _acc[3] += dt
        setattr(owner, name, timed)


def main(out_path, argv):
    from damoncore.cli import main as cli
    from damoncore.core import context as ctxmod
    from damoncore.ops import base

    rec = {"t_exec": T_EXEC, "t_imported": None, "ctx_start": [],
           "t_first_sample": None, "applies": [], "calls": {}}
    _time_calls(rec)                          # imports what a paddr start needs, too
    rec["t_imported"] = time.monotonic()
    start, begin_samples = ctxmod.Context.start, ctxmod.Context.begin_samples

    def timed_start(self):
        t = time.monotonic()
        start(self)
        rec["ctx_start"].append([t, time.monotonic()])

    def timed_begin_samples(self, *a, **kw):
        if rec["t_first_sample"] is None:
            rec["t_first_sample"] = time.monotonic()
        return begin_samples(self, *a, **kw)

    def wrap_apply(cls):
        orig = cls.apply_scheme

        def timed_apply(self, *a, **kw):
            t = time.monotonic()
            r = orig(self, *a, **kw)
            if len(rec["applies"]) < 50:
                rec["applies"].append([t, time.monotonic(), int(r.sz_applied)])
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
        with open(out_path, "w") as f:
            json.dump(rec, f)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
