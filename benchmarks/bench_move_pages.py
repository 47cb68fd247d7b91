"""Migration throughput: damoncore's batched wrapper vs raw ctypes calls, plus pagemap/kpageflags.

Pages already on node 0 are "moved" to node 0 (one node here): the kernel still isolates, checks
and reports each page, which is the per-page path being measured.  Run:

    PYTHONPATH=src python -m pytest benchmarks/bench_move_pages.py --benchmark-enable -q
    PYTHONPATH=src python benchmarks/bench_move_pages.py      # prints pages/s and ratios
"""

import ctypes
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from damoncore.linux.kpageflags import KPageFlags
from damoncore.linux.migrate import move_pages, page_addrs
from damoncore.linux.pagemap import Pagemap, pfns, present
from damoncore.linux.system import PAGE_SIZE as PAGE
from damoncore.linux.system import syscall_number

SYS_MOVE_PAGES = syscall_number("move_pages")
NR_PAGES = 1 << 15  # 128 MiB of 4 KiB pages
NR_LOOP_PAGES = 2048  # the single-page loop is slow; per-page cost is what matters
CHILD = r"""
import mmap, sys, ctypes
import numpy as np
n = int(sys.argv[1])
m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
np.frombuffer(m, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


@pytest.fixture(scope="module")
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(NR_PAGES)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    addr = int(p.stdout.readline())
    yield p.pid, page_addrs(addr, addr + NR_PAGES * PAGE, PAGE)
    p.stdin.close()
    p.wait()


def wrapper_move(pid, addrs):
    res = move_pages(pid, addrs, 0)
    assert res.nr_moved == addrs.size
    return res


def raw_batched_move(pid, addrs, libc=None):
    """One move_pages syscall for all pages, straight through ctypes."""
    libc = libc or _libc()
    nodes = np.zeros(addrs.size, dtype=np.int32)
    status = np.empty(addrs.size, dtype=np.int32)
    rc = libc.syscall(ctypes.c_long(SYS_MOVE_PAGES), ctypes.c_long(pid),
                      ctypes.c_ulong(addrs.size), ctypes.c_void_p(addrs.ctypes.data),
                      ctypes.c_void_p(nodes.ctypes.data), ctypes.c_void_p(status.ctypes.data),
                      ctypes.c_int(2))  # fmt: skip
    assert rc == 0 and (status == 0).all()


def loop_move(pid, addrs, libc=None):
    """One move_pages syscall per page from a Python loop."""
    libc = libc or _libc()
    page, node, status = ctypes.c_uint64(), ctypes.c_int(0), ctypes.c_int(-1)
    for a in addrs.tolist():
        page.value = a
        libc.syscall(ctypes.c_long(SYS_MOVE_PAGES), ctypes.c_long(pid), ctypes.c_ulong(1),
                     ctypes.byref(page), ctypes.byref(node), ctypes.byref(status),
                     ctypes.c_int(2))  # fmt: skip


def read_flags(pid, addrs):
    with Pagemap(pid, page_size=PAGE) as pm, KPageFlags() as kf:
        ent = pm.read(int(addrs[0]), int(addrs[-1]) + PAGE)
        return kf.read(pfns(ent)[present(ent)])


def read_pagemap(pid, addrs):
    with Pagemap(pid, page_size=PAGE) as pm:
        return pm.read(int(addrs[0]), int(addrs[-1]) + PAGE)


def _record(benchmark, nr_pages):
    benchmark.extra_info["nr_pages"] = nr_pages
    return nr_pages


def test_wrapper(benchmark, child):
    pid, addrs = child
    _record(benchmark, addrs.size)
    benchmark.pedantic(wrapper_move, args=(pid, addrs), rounds=5, warmup_rounds=1)


def test_raw_batched(benchmark, child):
    pid, addrs = child
    _record(benchmark, addrs.size)
    benchmark.pedantic(raw_batched_move, args=(pid, addrs), rounds=5, warmup_rounds=1)


def test_python_loop(benchmark, child):
    pid, addrs = child
    _record(benchmark, NR_LOOP_PAGES)
    benchmark.pedantic(loop_move, args=(pid, addrs[:NR_LOOP_PAGES]), rounds=3)


def test_pagemap_kpageflags(benchmark, child):
    pid, addrs = child
    _record(benchmark, addrs.size)
    flags = benchmark.pedantic(read_flags, args=(pid, addrs), rounds=5, warmup_rounds=1)
    assert flags.size == addrs.size


def _best_seconds(fn, *args, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(NR_PAGES)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    addr = int(p.stdout.readline())
    addrs = page_addrs(addr, addr + NR_PAGES * PAGE, PAGE)
    try:
        wrapper_move(p.pid, addrs)  # warm up
        # Interleave the two batched variants so background load hits both alike.
        t_wrap = t_raw = float("inf")
        for _ in range(15):
            t_wrap = min(t_wrap, _best_seconds(wrapper_move, p.pid, addrs, rounds=1))
            t_raw = min(t_raw, _best_seconds(raw_batched_move, p.pid, addrs, rounds=1))
        t_loop = _best_seconds(loop_move, p.pid, addrs[:NR_LOOP_PAGES], rounds=3)
        t_flags = _best_seconds(read_flags, p.pid, addrs)
        t_pm = _best_seconds(read_pagemap, p.pid, addrs)
    finally:
        p.stdin.close()
        p.wait()
    wrap, raw = NR_PAGES / t_wrap, NR_PAGES / t_raw
    loop = NR_LOOP_PAGES / t_loop
    print(f"wrapper      {wrap:12,.0f} pages/s")
    print(f"raw batched  {raw:12,.0f} pages/s")
    print(f"python loop  {loop:12,.0f} pages/s")
    print(f"ratio wrapper/raw  {wrap / raw:.3f}   wrapper/loop {wrap / loop:.1f}x")
    print(f"pagemap only       {t_pm / NR_PAGES * 1e9:.1f} ns/page")
    print(f"pagemap+kpageflags {t_flags / NR_PAGES * 1e9:.1f} ns/page")


if __name__ == "__main__":
    main()
