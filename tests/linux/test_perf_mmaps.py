"""Mapping records (PERF_RECORD_MMAP) and stale fault addresses: a real child faults on a
mapping, replaces it with a new one at the same addresses (MAP_FIXED) and faults again;
drained only afterwards, the first faults' addresses name the new mapping's frames.  The
child may fault on one CPU and map on another: the record is in the mapping CPU's ring."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from linux_helpers import requires_root

from damoncore.core import Context, Target
from damoncore.linux import pagemap as pmap
from damoncore.linux import perf_ring as pr
from damoncore.linux.perf import PageFaultSampler, remapped_after
from damoncore.ops.paddr import PaddrOps
from damoncore.ops.perf import PerfOps

N = 500
PAGE = os.sysconf("SC_PAGE_SIZE")

CHILD = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
import os
n, page, touch_cpu, map_cpu = (int(x) for x in sys.argv[1:5])
def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
size = n * page
def new_map(at=None):
    fixed = 0x10 if at else 0                       # MAP_FIXED
    a = libc.mmap(at, size, 3, 0x22 | fixed, -1, 0)  # PROT_READ|WRITE, PRIVATE|ANONYMOUS
    assert a not in (None, ctypes.c_void_p(-1).value) and (not at or a == at)
    libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(size), 14)   # MADV_NOHUGEPAGE
    return a
def touch(a):
    buf = (ctypes.c_char * size).from_address(a)
    for off in range(0, size, page):
        buf[off] = b"\x01"
a = new_map()
print(a, flush=True)
for step in ("touch", "remap"):
    sys.stdin.readline()
    if step == "remap":
        pin(map_cpu)
        new_map(a)                                   # the same addresses, fresh pages
    pin(touch_cpu)
    touch(a)
    print(step, flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def child(request):
    cpus = getattr(request, "param", (-1, -1))
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(N), str(PAGE), *map(str, cpus)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    addr = int(p.stdout.readline())
    yield p, addr

    if p.poll() is None:
        p.stdin.write("exit\n")
        p.stdin.flush()
        p.wait(timeout=10)


def step(p, name):
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == name


def test_parse_records_collects_mmap_records():
    st = pr.SAMPLE_TID | pr.SAMPLE_TIME | pr.SAMPLE_ADDR | pr.SAMPLE_CPU
    tail = pr.sample_id_time_from_end(st)
    assert tail == 16 and pr.sample_id_time_from_end(pr.SAMPLE_ADDR) is None
    name = b"//anon\0\0"
    sid = struct.pack("<IIQII", 7, 8, 123456789, 1, 0)      # pid, tid, time, cpu, res
    body = struct.pack("<IIQQQ", 7, 8, 0x7000, 0x3000, 0) + name + sid
    rec = struct.pack("<IHH", pr.PERF_RECORD_MMAP, 0, 8 + len(body)) + body
    dt = pr.sample_dtype(st)
    s = np.zeros(2, dt)
    s["type"], s["size"], s["addr"] = pr.PERF_RECORD_SAMPLE, dt.itemsize, [1, 2]
    mm = []
    chunks, counts = pr.parse_records(s[:1].tobytes() + rec + s[1:].tobytes(),
                                      lambda size: dt, mm, tail)
    assert counts["mmap"] == 1 and mm == [(7, 0x7000, 0xA000, 123456789)]
    assert [c["addr"].tolist() for c in chunks] == [[1], [2]]
    chunks, counts = pr.parse_records(rec, lambda size: dt)        # not asked: only counted
    assert counts["mmap"] == 1 and not chunks


def test_remapped_after_is_per_process_range_and_time():
    got = {"pid": np.array([5, 5, 5, 6, 5], np.int32),
           "addr": np.array([0x1000, 0x1fff, 0x1000, 0x1000, 0x3000], np.uint64),
           "time_ns": np.array([10, 10, 30, 10, 10], np.uint64)}
    mmaps = {"pid": np.array([5], np.int32), "start": np.array([0x1000], np.uint64),
             "end": np.array([0x2000], np.uint64), "time_ns": np.array([20], np.uint64)}
    # before the mapping, inside it, same process: stale; later, other pid, outside: kept
    assert remapped_after(got, mmaps, chunk=1).tolist() == [True, True, False, False, False]
    none = {k: v[:0] for k, v in mmaps.items()}
    assert not remapped_after(got, none).any()


def test_track_mmaps_needs_sample_time():
    with pytest.raises(ValueError, match="SAMPLE_TIME"):
        PageFaultSampler(pid=os.getpid(), sample_type=pr.SAMPLE_TID | pr.SAMPLE_ADDR,
                         track_mmaps=True)


@requires_root
def test_new_mapping_marks_earlier_faults_at_its_addresses(child):
    p, a = child
    with PageFaultSampler(pid=p.pid, sample_period=1, track_mmaps=True) as s:
        step(p, "touch")
        step(p, "remap")              # drained only now, like a late drain thread
        got = s.read()
        mm = s.take_mmaps()
        assert s.lost == 0
    mine = (mm["start"] <= a) & (mm["end"] >= a + N * PAGE) & (mm["pid"] == p.pid)
    assert mine.sum() == 1, mm                     # the MAP_FIXED mapping, not the first
    t_map = int(mm["time_ns"][mine][0])
    inside = (got["addr"] >= a) & (got["addr"] < a + N * PAGE)
    before, after = inside & (got["time_ns"] < t_map), inside & (got["time_ns"] > t_map)
    assert before.sum() >= 0.99 * N and after.sum() >= 0.99 * N
    stale = remapped_after(got, mm)
    assert stale[before].all() and not stale[after].any()


@requires_root
@pytest.mark.skipif(os.cpu_count() < 2, reason="needs two CPUs")
@pytest.mark.parametrize("child, cpus", [((-1, -1), None), ((1, 0), [1])],
                         indirect=["child"], ids=["all-cpus", "faults-cpu1-mapping-cpu0"])
def test_paddr_perf_ops_drops_faults_of_replaced_pages(child, cpus):
    """With PerfOps on cpu 1 only (like one accessor of numa-migrate) and the child mapping
    on cpu 0, only the mmap-only events on the other CPUs see the new mapping."""
    p, a = child
    ops = PerfOps(PaddrOps(pids=[p.pid]), pid=p.pid, cpus=cpus, sample_period=1,
                  drain_thread=False)
    ctx = Context(ops, targets=[Target()], primitives=("page_fault",))
    ctx.start()
    try:
        pm = pmap.Pagemap(p.pid)
        step(p, "touch")
        step(p, "remap")              # nothing drained between the two: a late drain
        new = pm.read(a, a + N * PAGE) & pmap.PFN_MASK
        pm.close()
        ops.drain()
        addr = ctx.reports.drain().addr
    finally:
        ops.cleanup(ctx)
    assert ops.nr_samples >= 2 * N and ops.nr_remapped >= 0.99 * N
    # each new page is reported once, for its own fault: the first mapping's faults at the
    # same addresses would have been translated to the new frames too (twice each)
    frames, counts = np.unique(addr // np.uint64(PAGE), return_counts=True)
    on_new = counts[np.isin(frames, new)]
    assert len(on_new) >= 0.99 * N and (on_new == 1).all(), np.bincount(on_new)
