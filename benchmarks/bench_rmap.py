"""paddr's owner lookup: moving the same 64 MiB out of a process with 1, 4 and 16 GiB mapped.

A child maps N GiB of private anonymous memory (4 KiB pages, MAP_POPULATE: every page
present) and the backend migrates the frames of its first 64 MiB to node 0 (the one node
here: move_pages still looks every page up, isolates nothing, and reports its node).  The
frames are given as one physical range each (16384 ranges: the same work at every size,
however contiguous the frames happen to be).

Per size, in one process (``time.process_time``: user + system CPU of this process):

- ``cold``: ``ctx.start()`` plus the first apply (what a first action costs);
- ``steady``: one ops update plus one apply, the median of five (what every later
  aggregation with an apply costs);
- ``memory``: bytes the backend holds afterwards (tracemalloc: numpy arrays included), and
  the peak during the cold step.

Then the ratios 4/1 and 16/1 GiB of each.  The children run one at a time (the 16 GiB one
needs 16 GiB of free RAM; the script refuses to start it with less than 18 GiB available).

    PYTHONPATH=src python benchmarks/bench_rmap.py            # 1 4 16
    PYTHONPATH=src python benchmarks/bench_rmap.py 1 4        # sizes in GiB
    PYTHONPATH=src python -m pytest benchmarks/bench_rmap.py --benchmark-enable -q  # 1 GiB
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from damoncore.core import Context, Target
from damoncore.linux.pagemap import Pagemap, pfns
from damoncore.ops.paddr import PaddrOps
from damoncore.schemes.scheme import AccessPattern, Scheme

PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 1 << 30
MOVE = 64 << 20
CHILD = r"""
import ctypes, mmap, sys
n = int(sys.argv[1])
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""
# MADV_NOHUGEPAGE cannot precede MAP_POPULATE from Python's mmap: THP is "madvise" here, so
# the populated pages are 4 KiB ones anyway (checked below through the frame count).


def start_child(nbytes):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(nbytes)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def stop_child(p):
    p.kill()
    p.wait()


def frame_ranges(pid, addr, nbytes):
    """The frames under [addr, addr + nbytes) of ``pid`` as physical byte ranges, one per
    frame (sorted): the same work whatever the frames' physical contiguity."""
    with Pagemap(pid) as pm:
        f = np.sort(pfns(pm.read(addr, addr + nbytes)))
    f = f[f != 0]
    return f * np.uint64(PAGE), (f + np.uint64(1)) * np.uint64(PAGE), len(f)


def make_ctx(pid):
    ops = PaddrOps(pids=[pid])
    s = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    t = Target(ranges=[(0, 1 << 46)])
    return Context(ops, targets=[t], primitives=("page_fault",), schemes=[s]), ops, t, s


def measure(gib, steady_rounds=5):
    p, addr = start_child(gib * GIB)
    try:
        starts, ends, nframes = frame_ranges(p.pid, addr, MOVE)
        assert nframes == MOVE // PAGE, nframes
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        c0 = time.process_time()
        ctx, ops, t, s = make_ctx(p.pid)
        ctx.start()
        res = ops.apply_scheme(ctx, t, s, starts, ends)
        cold = time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] - base
        assert res.sz_applied == MOVE, (res.sz_applied, res.nr_failed)
        steady = []
        for _ in range(steady_rounds):
            c0 = time.process_time()
            ops.update(ctx)
            res = ops.apply_scheme(ctx, t, s, starts, ends)
            steady.append(time.process_time() - c0)
            assert res.sz_applied == MOVE, (res.sz_applied, res.nr_failed)
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rm = ops.rmap
        index = getattr(rm, "nbytes", None)               # the owner index alone
        extents = sum(len(p.main) for p in rm.procs.values()) if hasattr(rm, "procs") else None
        ops.cleanup(ctx)
        return {"gib": gib, "cold_s": cold, "steady_s": statistics.median(steady),
                "held_b": held, "peak_b": peak, "ranges": len(starts), "index_b": index,
                "extents": extents}
    finally:
        tracemalloc.stop()
        stop_child(p)


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    return 0


def main(sizes):
    rows = []
    for gib in sizes:
        if available_bytes() < (gib + 2) * GIB:
            print(f"skip {gib} GiB: only {available_bytes() / GIB:.1f} GiB available")
            continue
        rows.append(measure(gib))
    print(f"moving {MOVE >> 20} MiB ({MOVE // PAGE} frames) to node 0 out of one process")
    print("  GiB mapped   cold CPU ms   steady CPU ms   held MiB   cold peak MiB   index "
          "(extents, B/page)")
    for r in rows:
        idx = "" if r["index_b"] is None else \
            f"{r['extents']} extents, {r['index_b'] / (r['gib'] * GIB // PAGE):.2f} B/page"
        print(f"  {r['gib']:10d}  {r['cold_s'] * 1e3:12.1f}  "
              f"{r['steady_s'] * 1e3:14.1f}  {r['held_b'] / 2**20:9.2f}  "
              f"{r['peak_b'] / 2**20:14.2f}   {idx}")
    if len(rows) > 1:
        b = rows[0]
        for r in rows[1:]:
            print(f"  ratio {r['gib']}/{b['gib']} GiB: cold {r['cold_s'] / b['cold_s']:.2f}x, "
                  f"steady {r['steady_s'] / b['steady_s']:.2f}x, held memory "
                  f"{r['held_b'] / max(b['held_b'], 1):.2f}x")
    return rows


@pytest.fixture(scope="module")
def one_gib():
    if os.geteuid() != 0:
        pytest.skip("needs root (PFNs)")
    p, addr = start_child(GIB)
    yield p, addr
    stop_child(p)


def test_steady_apply_64mib_of_1gib(benchmark, one_gib):
    p, addr = one_gib
    starts, ends, _ = frame_ranges(p.pid, addr, MOVE)
    ctx, ops, t, s = make_ctx(p.pid)
    ctx.start()

    def step():
        ops.update(ctx)
        return ops.apply_scheme(ctx, t, s, starts, ends)

    assert benchmark(step).sz_applied == MOVE
    ops.cleanup(ctx)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 4, 16])
