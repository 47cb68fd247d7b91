"""Are page-fault reports lost between the perf rings and the snapshots?  (issue 11 item 7)

Two threads of a child, pinned to CPUs 0 and 1, fault on their own buffers as fast as numpy
lets them (first touch of every page, MADV_DONTNEED, again); PerfOps samples every fault
(period 1) and a cpumask sample filter keeps CPU 0's.  Prints the kept faults made while
the snapshots ran, how many of them the snapshots hold, and what the rings lost:

    sudo PYTHONPATH=src python benchmarks/report_loss.py [seconds] [pages per thread] [ring pages]

On this 2-core host both CPUs run a faulting thread, so the monitor and its ring-draining
thread compete with them for CPU time: at 300k faults/s PerfOps' default rings (256 pages a
CPU, ~30k records, ~100 ms of faults) can fill before the drain thread runs; 1024 pages
leave it ~0.4 s.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from damoncore import Attrs, Context, SampleFilter, Target
from damoncore.linux.system import PAGE_SIZE
from damoncore.ops.perf import PerfOps
from damoncore.ops.vaddr import VaddrOps

CHILD = r"""
import ctypes, mmap, os, sys, threading
import numpy as np
n = int(sys.argv[1])
stop, ready, info = threading.Event(), threading.Barrier(3), {}
def worker(cpu):
    os.sched_setaffinity(0, {cpu})
    m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    a = np.frombuffer(m, np.uint8)
    info[cpu] = (threading.get_native_id(), ctypes.addressof(ctypes.c_char.from_buffer(m)))
    ready.wait()
    while not stop.is_set():
        a[::mmap.PAGESIZE] = 1
        m.madvise(mmap.MADV_DONTNEED)
ts = [threading.Thread(target=worker, args=(c,)) for c in (0, 1)]
for t in ts: t.start()
ready.wait()
for c in (0, 1):
    print(c, *info[c], flush=True)
sys.stdin.readline()
stop.set()
for t in ts: t.join()
"""


def main(seconds: float = 5.0, npages: int = 4096, ring_pages: int = 256):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(npages)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    threads = {}
    for _ in range(2):
        cpu, tid, addr = (int(x) for x in p.stdout.readline().split())
        threads[cpu] = (tid, addr)
    try:
        ranges = [(a, a + npages * PAGE_SIZE) for _, a in threads.values()]
        ops = PerfOps(VaddrOps(), sample_period=1, ring_pages=ring_pages)
        raw, snaps = [], []
        ops.taps.append(raw.append)
        ctx = Context(ops, [Target(pid=p.pid, ranges=ranges)], primitives=("page_fault",),
                      sample_filters=[SampleFilter("cpumask", cpus={0})],
                      attrs=Attrs(sample_us=5_000, aggr_us=100_000, min_nr_regions=10))
        ctx.add_callback(lambda c, s: snaps.append(s))
        t0 = time.monotonic()
        ctx.run(duration_us=int(seconds * 1e6))
        wall = time.monotonic() - t0
    finally:
        p.stdin.write("stop\n")
        p.stdin.flush()
        p.wait(timeout=30)
    got = {k: np.concatenate([r[k] for r in raw]) for k in raw[0]}
    t_us = (got["time_ns"] // 1000).astype(np.int64)
    inside = np.zeros(len(t_us), bool)
    for a, b in ranges:
        inside |= (got["addr"] >= a) & (got["addr"] < b)
    during = (t_us >= snaps[0].start_us) & (t_us < snaps[-1].end_us)
    kept = int((inside & during & (got["cpu"] == 0)).sum())
    both = int((inside & during).sum())
    held = sum(int(s.targets[0].nr_reports.sum()) for s in snaps)
    print(f"rings of {ring_pages} pages, {wall:.1f} s, {len(snaps)} snapshots; "
          f"faults sampled in the buffers: {both} "
          f"({both / wall / 1e3:.0f} k/s, both threads); kept (CPU 0): {kept}; "
          f"in the snapshots: {held} ({held / max(kept, 1):.4%}); lost by the rings: "
          f"{ops.lost}; throttled: {ops.throttled}; dropped by the core's buffer: "
          f"{ctx.reports.nr_dropped}")


if __name__ == "__main__":
    main(*(float(a) if i == 0 else int(a) for i, a in enumerate(sys.argv[1:])))
