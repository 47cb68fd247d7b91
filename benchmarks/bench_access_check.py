"""Access-check cost of the real backends, per region per sample, and the paddr reverse map.

- vaddr idle path: pagemap reads at the sampling addresses + idle bitmap mark/read, against a
  plain bitmap file (this machine has no /sys/kernel/mm/page_idle); the child's 1 GiB
  buffer is touched, so every sampling page is present.  This is the generic per-sample
  path (sample_begin + check_accesses); the native sample path and its ratio to the
  syscall floor are in bench_native_sample.py.  The bitmap goes through the C loops
  of linux/_frames; ``vaddr_py`` is the same with PageIdle's Python path as the baseline.
- paddr idle path: bitmap mark/read only (sampling addresses are frames already).
- perf reports path: the core's mark_reported over a batch of reports (per report).
- owner index (paddr's reverse map): ms per GiB of present memory to index one process
  (PAGEMAP_SCAN + pagemap reads); its steady cost per lookup is in bench_rmap.py.

    PYTHONPATH=src python benchmarks/bench_access_check.py
    PYTHONPATH=src python -m pytest benchmarks/bench_access_check.py --benchmark-enable -q
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from damoncore import _regions
from damoncore.core import Attrs, Context, Target
from damoncore.linux.page_idle import FileIO, PageIdle
from damoncore.linux.pagemap import Pagemap
from damoncore.ops.paddr import PaddrOps
from damoncore.ops.rmap import index_process
from damoncore.ops.vaddr import VaddrOps

PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 1 << 30
CHILD = r"""
import ctypes, mmap, sys
import numpy as np
m = mmap.mmap(-1, int(sys.argv[1]), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
np.frombuffer(m, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""
NR_REGIONS = (10, 100, 1000, 10000)
NR_PFNS = 1 << 24


def start_child(size):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(size)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def stop_child(p):
    p.stdin.write("x\n")
    p.stdin.flush()
    p.wait()


def make_ctx(ops, target, nr_regions):
    ctx = Context(ops, targets=[target], primitives=("page_table",),
                  attrs=Attrs(min_nr_regions=nr_regions, max_nr_regions=max(1000, nr_regions)))
    ctx.start()
    return ctx


def one_sample(ctx):
    ctx.sample_begin()
    return ctx.ops.check_accesses(ctx)


def time_per_region(ctx, nr_regions, reps=20):
    one_sample(ctx)
    t0 = time.perf_counter()
    for _ in range(reps):
        one_sample(ctx)
    return (time.perf_counter() - t0) / reps / nr_regions * 1e9


class PythonPathIO(FileIO):
    """A plain file that PageIdle does not hand to C (not exactly FileIO): the baseline."""


def idle_fixture(tmpdir, io_class=FileIO):
    """A plain file as the bitmap: the syscall pattern of the real one, without its
    kernel-side cost (per frame: get the folio; per idle frame: an rmap walk)."""
    path = os.path.join(tmpdir, "bitmap")
    with open(path, "wb") as f:
        f.truncate(NR_PFNS // 8)
    return PageIdle(io=io_class(path))


@pytest.fixture(scope="module")
def child():
    p, addr = start_child(GIB)
    yield p.pid, addr
    stop_child(p)


@pytest.mark.parametrize("nr", NR_REGIONS)
def test_vaddr_idle_sample(benchmark, child, tmp_path, nr):
    pid, addr = child
    ctx = make_ctx(VaddrOps(page_idle=idle_fixture(str(tmp_path))),
                   Target(pid=pid, ranges=[(addr, addr + GIB)]), nr)
    benchmark(one_sample, ctx)


@pytest.mark.parametrize("nr", NR_REGIONS)
def test_paddr_idle_sample(benchmark, tmp_path, nr):
    ctx = make_ctx(PaddrOps(page_idle=idle_fixture(str(tmp_path))),
                   Target(ranges=[(0, NR_PFNS * PAGE)]), nr)
    benchmark(one_sample, ctx)


def mark_reported(nr_regions, nr_reports, seed=0):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(GIB // PAGE, nr_regions - 1, replace=False)).astype(np.uint64)
    start = np.r_[np.uint64(0), cuts * np.uint64(PAGE)].astype(np.uint64)
    end = np.r_[cuts * np.uint64(PAGE), np.uint64(GIB)].astype(np.uint64)
    addr = rng.integers(0, GIB, nr_reports, dtype=np.uint64)
    size = np.ones(nr_reports, np.uint64)
    keep = np.ones(nr_reports, np.uint8)
    acc = np.zeros(nr_regions, np.uint8)
    return lambda: _regions.mark_reported(start, end, addr, size, keep, acc)


@pytest.mark.parametrize("nr", NR_REGIONS)
def test_mark_reported_100k(benchmark, nr):
    benchmark(mark_reported(nr, 100_000))


def test_owner_index_one_gib(benchmark, child):
    with Pagemap(child[0]) as pm:
        benchmark(index_process, pm)


def main():
    tmp = tempfile.mkdtemp()
    p, addr = start_child(GIB)
    try:
        print("regions  vaddr_idle_ns/region  vaddr_py/C  paddr_idle_ns/region  "
              "mark_reported_ns/report")
        for nr in NR_REGIONS:
            v, vpy = (time_per_region(make_ctx(VaddrOps(page_idle=idle_fixture(tmp, io)),
                                               Target(pid=p.pid, ranges=[(addr, addr + GIB)])
                                               , nr), nr)
                      for io in (FileIO, PythonPathIO))
            pa = time_per_region(make_ctx(PaddrOps(page_idle=idle_fixture(tmp)),
                                          Target(ranges=[(0, NR_PFNS * PAGE)]), nr), nr)
            fn = mark_reported(nr, 100_000)
            fn()
            t0 = time.perf_counter()
            for _ in range(20):
                fn()
            mr = (time.perf_counter() - t0) / 20 / 100_000 * 1e9
            print(f"{nr:7d}  {v:20.0f}  {vpy / v:10.1f}  {pa:20.0f}  {mr:23.1f}")
        with Pagemap(p.pid) as pm:
            for _ in range(2):
                t0 = time.perf_counter()
                ext = index_process(pm)
                dt = time.perf_counter() - t0
        print(f"owner index, one process with 1 GiB present: {dt * 1e3:.1f} ms "
              f"(ms/GiB), {len(ext)} extents, {ext.nbytes} bytes")
    finally:
        stop_child(p)


if __name__ == "__main__":
    main()
