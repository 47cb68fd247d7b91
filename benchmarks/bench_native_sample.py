"""The vaddr sample path against its syscall floor (issue 13): per-sample cost at N regions.

A child process holds 1 GiB of touched anonymous memory; a plain file stands in for the idle
page bitmap (this host has no /sys/kernel/mm/page_idle: the file has the bitmap's syscalls, not
its kernel-side cost).  For each region count:

- ``native``: the native sample path alone (``IdleNative.run`` for K sample ends in a row: pick,
  pagemap preads, bitmap pwrites, a zero-length wait, bitmap preads, counter update, in C);
- ``floor``: benchmarks/syscall_floor.c replaying exactly the syscalls those K samples issued
  (rebuilt here from the same RNG stream and checked against the sampler's counters): the
  physical limit of the interface for that work;
- ``loop``: the whole core loop (Kdamond) on the native path with an aggregation every 20
  samples (merge, split, snapshot, the generic end of the aggregation's last sample), and
  ``generic``: the same loop on the generic per-sample path (VaddrOps(native=False)).

Times are CPU time per sample (the floor: the process's; the others: the thread's), the
minimum over rounds (each round runs every variant once, in turn, so load from other
processes hits them alike); ratios are to the floor of the same run.  The loops' 1 us
samples really sleep before each end (a context switch, as every sampling loop pays, the
kernel's too), so they are compared with the floor replayed with 1 us waits.

    PYTHONPATH=src python benchmarks/bench_native_sample.py [--regions 20,1000] [--json f]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from damoncore import _regions
from damoncore.core import Attrs, Context, Kdamond, Target
from damoncore.linux.page_idle import FileIO, PageIdle
from damoncore.linux.pagemap import Pagemap, PFN_MASK, present
from damoncore.ops.vaddr import VaddrOps

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 1 << 30
NR_PFNS = 1 << 24
CHILD = r"""
import ctypes, mmap, sys
import numpy as np
m = mmap.mmap(-1, int(sys.argv[1]), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
np.frombuffer(m, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""
PM_READ, BM_WRITE, BM_READ, WAIT, SAMPLE = range(5)


def build_floor(out_dir: str) -> str:
    exe = os.path.join(out_dir, "syscall_floor")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("bench_native_sample: needs a C compiler (cc) for syscall_floor.c")
    subprocess.run([cc, "-O2", "-o", exe, str(HERE / "syscall_floor.c")], check=True)
    return exe


def spans(sorted_ids: np.ndarray, max_gap: int):
    """(first, last) of spans of sorted distinct ids at most max_gap ids between neighbours:
    the rule of _frames._span_end."""
    if sorted_ids.size == 0:
        return []
    brk = np.flatnonzero(np.diff(sorted_ids.astype(np.int64)) > max_gap + 1) + 1
    lo = np.concatenate([[0], brk])
    hi = np.concatenate([brk, [sorted_ids.size]]) - 1
    return list(zip(sorted_ids[lo].tolist(), sorted_ids[hi].tolist()))


class Trace:
    """The syscalls of a run of samples, in the order the native path issues them.

    ``io_cap``: bytes the bitmap file moves per call at most (the real one is a sysfs bin
    file: kernfs moves one page per read or write, and the C loops go on after a short one);
    None for a plain file.
    """

    def __init__(self, io_cap=None):
        self.parts, self.count = [], {k: 0 for k in range(4)}
        self.io_cap = io_cap

    def bitmap_op(self, kind, nbytes, offset, payload=b""):
        step = self.io_cap or nbytes
        for pos in range(0, nbytes, step):
            n = min(step, nbytes - pos)
            self.op(kind, n, offset + pos, payload[pos:pos + n] if payload else b"")

    def op(self, kind, nbytes, offset, payload=b""):
        self.parts.append(struct.pack("<IIQ", kind, nbytes, offset) + payload)
        if kind != SAMPLE:
            self.count[kind] += 1

    def begin(self, pm, pages, pfns, max_gap_pages, mark_gap):
        for first, last in spans(np.unique(pages), max_gap_pages - 1):
            self.op(PM_READ, (last - first + 1) * 8, first * 8)
        words = {}
        for f in pfns.tolist():
            words[f >> 6] = words.get(f >> 6, 0) | 1 << (f & 63)
        for first, last in spans(np.array(sorted(words), np.uint64), mark_gap):
            payload = b"".join(words.get(w, 0).to_bytes(8, "little")
                               for w in range(first, last + 1))
            self.bitmap_op(BM_WRITE, len(payload), first * 8, payload)

    def end(self, pfns, read_gap):
        self.op(WAIT, 0, 0)
        for first, last in spans(np.unique(pfns >> np.uint64(6)), read_gap):
            self.bitmap_op(BM_READ, (last - first + 1) * 8, first * 8)
        self.op(SAMPLE, 0, 0)

    def write(self, path):
        Path(path).write_bytes(b"".join(self.parts))


def context(pid, ranges, nr, bitmap, native=True, aggr_samples=None, mark_gap=16):
    ops = VaddrOps(page_idle=PageIdle(io=FileIO(bitmap), max_gap_words=mark_gap),
                   native=native)
    big = 1 << 31                  # no aggregation, no ops update (len_window is a u32)
    attrs = Attrs(sample_us=1, aggr_us=aggr_samples or big, ops_update_us=big,
                  min_nr_regions=nr, max_nr_regions=nr)
    ctx = Context(ops, [Target(pid=pid, ranges=ranges)], attrs)
    return ctx


def native_run(pid, ranges, nr, bitmap, nr_samples, mark_gap=16):
    """(seconds wall, seconds CPU, sampler counters, the run's trace)."""
    ctx = context(pid, ranges, nr, bitmap, mark_gap=mark_gap)
    ctx.start()
    ops, t = ctx.ops, ctx.targets[0]
    s = ops.native_sampler(ctx).sampler
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    rng0 = ctx.rng.copy()
    before = (s.nr_pagemap_reads, s.nr_bitmap_writes, s.nr_bitmap_reads, s.nr_waits)
    # the C loop itself (IdleNative.run adds a few numpy calls per run), with a deadline at
    # the sample's begin: the wait is one ppoll that returns at once, as in the floor
    r = t.regions
    cols = [(ops.native_fds(t)[0], r.start, r.end, r.sampling_addr, r.nr_accesses,
             r.nr_accesses_bp, r.last_nr_accesses, np.empty(r.nr, np.uint64))]
    pid_fds = np.array([ops.native_fds(t)[1]], np.intc)
    t0, c0 = time.perf_counter(), time.thread_time()
    status, ends, *_ = s.run(cols, ctx.rng, ctx.attrs.aggr_samples, 0, nr_samples, -1, wake,
                             pid_fds)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    os.close(wake)
    assert ends == nr_samples, (status, ends)
    counts = [a - b for a, b in zip((s.nr_pagemap_reads, s.nr_bitmap_writes,
                                     s.nr_bitmap_reads, s.nr_waits), before)]
    # the same samples again, from the same RNG stream, as a list of syscalls
    rng, tr = rng0, Trace(PAGE if os.path.realpath(bitmap).startswith("/sys/") else None)
    sa = np.empty(r.nr, np.uint64)
    pi = ops.page_idle
    with Pagemap(pid) as pm:
        prev = None
        for j in range(nr_samples + 1):
            _regions.pick_sampling_addrs(r.start, r.end, sa, rng)
            pages = sa // np.uint64(PAGE)
            ent = pm.entries_at(pages, ops.max_gap_pages)
            pfns = (ent & PFN_MASK)[present(ent)]
            if prev is not None:
                tr.end(prev, pi.max_read_gap_words)
            tr.begin(pm, pages, pfns, ops.max_gap_pages, pi.max_gap_words)
            prev = pfns
    assert [tr.count[k] for k in range(4)] == counts, (tr.count, counts)
    assert np.array_equal(rng, ctx.rng), "the trace follows the run's RNG stream"
    ops.cleanup(ctx)
    ops.page_idle.close()
    return wall, cpu, counts, tr


def floor_run(exe, pid, bitmap, trace_path, repeat, by_kind=False, wait_ns=0):
    """(seconds wall, seconds CPU) per sample; with ``by_kind`` the floor's whole JSON.
    ``wait_ns``: each sample's wait sleeps that long (0: returns at once)."""
    out = subprocess.run([exe, f"/proc/{pid}/pagemap", bitmap, trace_path, str(repeat),
                          str(wait_ns)] + (["by-kind"] if by_kind else []),
                         check=True, capture_output=True, text=True).stdout
    res = json.loads(out)
    assert res["failed"] == 0, res
    if by_kind:
        return res
    return res["wall_ns_per_sample"] * 1e-9, res["cpu_ns_per_sample"] * 1e-9


def loop_run(pid, ranges, nr, bitmap, native, nr_aggrs, aggr_samples=20):
    """Whole Kdamond loop, an aggregation every ``aggr_samples``: seconds per sample."""
    ctx = context(pid, ranges, nr, bitmap, native=native, aggr_samples=aggr_samples)
    ctx.add_callback(lambda c, s: c.nr_aggregations >= nr_aggrs)
    t0, c0 = time.perf_counter(), time.thread_time()
    Kdamond([ctx]).run()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    n = ctx.passed_sample_intervals
    return wall / n, cpu / n, ctx.targets[0].regions.nr


def start_child(size):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(size)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def measure(nr_list, nr_samples, rounds, aggrs):
    tmp = tempfile.mkdtemp()
    exe = build_floor(tmp)
    bitmap = os.path.join(tmp, "bitmap")
    with open(bitmap, "wb") as f:
        f.truncate(NR_PFNS // 8)
    p, addr = start_child(GIB)
    ranges = [(addr, addr + GIB)]
    rows = []
    try:
        for nr in nr_list:
            k = max(50, nr_samples // max(1, nr // 20))      # similar time per region count
            best = {}
            counts = None
            for _ in range(rounds):
                wall, cpu, counts, tr = native_run(p.pid, ranges, nr, bitmap, k)
                trace = os.path.join(tmp, f"trace{nr}")
                tr.write(trace)
                got = {"native": (wall / k, cpu / k),
                       "floor": floor_run(exe, p.pid, bitmap, trace, 1),
                       # the loop's 1 us samples sleep (a context switch) before each end
                       "floor_sleeping": floor_run(exe, p.pid, bitmap, trace, 1,
                                                   wait_ns=1000)}
                lw, lc, nreg = loop_run(p.pid, ranges, nr, bitmap, True, aggrs)
                got["loop"] = (lw, lc)
                gw, gc, _ = loop_run(p.pid, ranges, nr, bitmap, False, max(2, aggrs // 4))
                got["generic"] = (gw, gc)
                for key, v in got.items():
                    best.setdefault(key, []).append(v)
            m = {key: tuple(min(x[i] for x in v) for i in range(2)) for key, v in best.items()}
            paired = [n[1] / f[1] for n, f in zip(best["native"], best["floor"])]
            rows.append({"regions": nr, "loop_regions": nreg, "samples_per_round": k,
                         "rounds": rounds, "syscalls_per_sample": sum(counts[:3]) / k,
                         "us": {key: v[0] * 1e6 for key, v in m.items()},
                         "cpu_us": {key: v[1] * 1e6 for key, v in m.items()},
                         "native_over_floor": m["native"][1] / m["floor"][1],
                         "native_over_floor_wall": m["native"][0] / m["floor"][0],
                         "native_over_floor_paired_median": statistics.median(paired),
                         "loop_over_floor": m["loop"][1] / m["floor_sleeping"][1],
                         "generic_over_floor": m["generic"][1] / m["floor_sleeping"][1]})
    finally:
        p.stdin.write("x\n")
        p.stdin.flush()
        p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def table(rows) -> str:
    """CPU time per sample (the host is shared: wall time also counts other processes)."""
    out = ["| regions | syscalls / sample | floor (us) | native (us) | native / floor "
           "(wall) | floor, sleeping waits (us) | loop (us) | loop / floor | generic loop (us) "
           "| generic / floor |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        u = r["cpu_us"]
        out.append(f"| {r['regions']} | {r['syscalls_per_sample']:.0f} | {u['floor']:.1f} | "
                   f"{u['native']:.1f} | **{r['native_over_floor']:.2f}** "
                   f"({r['native_over_floor_wall']:.2f}) | {u['floor_sleeping']:.1f} | "
                   f"{u['loop']:.1f} | {r['loop_over_floor']:.2f} | {u['generic']:.1f} | "
                   f"{r['generic_over_floor']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regions", default="20,1000", help="comma-separated region counts")
    ap.add_argument("--samples", type=int, default=4000, help="native samples per round at "
                    "20 regions (fewer at more regions)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--aggrs", type=int, default=100, help="aggregations per loop round")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench_native_sample: needs root (PFNs in /proc/PID/pagemap)")
    rows = measure([int(x) for x in a.regions.split(",")], a.samples, a.rounds, a.aggrs)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    print(f"load: {os.getloadavg()}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
