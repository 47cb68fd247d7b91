"""Page-fault sampling of a real two-thread child, each thread pinned to its own CPU."""

import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from linux_helpers import requires_root

from damoncore.errors import FeatureMissing
from damoncore.linux import perf_ring as pr
from damoncore.linux.perf import DEFAULT_SAMPLE_PERIOD, PageFaultSampler

N = 2000  # pages per thread

# Threads start (or are already waiting), mmap fresh buffers, and touch each page once on "go".
CHILD = r"""
import mmap, os, sys, threading, ctypes
n, spawn_late = int(sys.argv[1]), sys.argv[2] == "late"
go, ready, lock = threading.Event(), threading.Barrier(3), threading.Lock()
info = {}
def worker(cpu):
    os.sched_setaffinity(0, {cpu})
    m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    info[cpu] = (threading.get_native_id(), ctypes.addressof(ctypes.c_char.from_buffer(m)))
    ready.wait()
    go.wait()
    for i in range(0, n * mmap.PAGESIZE, mmap.PAGESIZE):
        m[i] = 1
    ready.wait()
def start():
    ts = [threading.Thread(target=worker, args=(c,)) for c in (0, 1)]
    for t in ts: t.start()
    ready.wait()
    return ts
if not spawn_late:
    ts = start()
print("ready", flush=True)
sys.stdin.readline()
if spawn_late:
    ts = start()
go.set()
ready.wait()
for c in (0, 1):
    print(c, *info[c], flush=True)
sys.stdin.readline()
"""

needs_two_cpus = pytest.mark.skipif(os.cpu_count() < 2, reason="needs two CPUs")


def tracefs_root():
    """Where tracefs is mounted (None if nowhere)."""
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if fstype == "tracefs":
                return mnt
    return None


TRACEFS = tracefs_root()


def run_child(spawn):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(N), spawn],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout.readline().strip() == "ready"
    return p


def go_and_collect(p, sampler):
    p.stdin.write("go\n")
    p.stdin.flush()
    threads = {}
    for _ in range(2):
        cpu, tid, addr = (int(x) for x in p.stdout.readline().split())
        threads[cpu] = (tid, addr)
    parts = [sampler.read()]
    while True:
        more = sampler.read(timeout_s=0.05)
        if more["addr"].size == 0:
            break
        parts.append(more)
    p.stdin.write("exit\n")
    p.stdin.flush()
    p.wait(timeout=10)
    return threads, {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}


@requires_root
@needs_two_cpus
@pytest.mark.parametrize("spawn", ["early", "late"])
def test_samples_attributed_to_thread_cpu_and_buffer(spawn):
    p = run_child(spawn)
    with PageFaultSampler(pid=p.pid, sample_period=1) as s:
        threads, got = go_and_collect(p, s)
        assert s.lost == 0
    page = os.sysconf("SC_PAGE_SIZE")
    for cpu, (tid, base) in threads.items():
        inside = (got["addr"] >= base) & (got["addr"] < base + N * page)
        n_in = int(inside.sum())
        assert n_in >= 0.99 * N, f"cpu {cpu}: {n_in} samples in its buffer"
        right = inside & (got["tid"] == tid) & (got["cpu"] == cpu)
        assert right.sum() >= 0.99 * n_in
        # Each page faulted exactly once.
        pages = np.unique((got["addr"][inside] - base) // page)
        assert pages.size >= 0.99 * N
    assert (np.diff(np.sort(got["time_ns"])) >= 0).all()
    assert not got["is_write"].any()  # the software event cannot tell


def test_parse_records_mixed_stream():
    dt = pr.sample_dtype(pr.SAMPLE_TID | pr.SAMPLE_ADDR | pr.SAMPLE_CPU)
    assert dt.itemsize == 32
    recs = np.zeros(5, dtype=dt)
    recs["type"], recs["size"] = pr.PERF_RECORD_SAMPLE, 32
    recs["addr"] = np.arange(5) * 4096
    recs["tid"] = 7
    lost = struct.pack("<IHHQQ", pr.PERF_RECORD_LOST, 0, 24, 1, 13)  # header, id, lost
    buf = recs[:3].tobytes() + lost + recs[3:].tobytes()
    chunks, counts = pr.parse_records(buf, lambda size: dt)
    assert counts["lost"] == 13
    assert np.concatenate([c["addr"] for c in chunks]).tolist() == [0, 4096, 8192, 12288, 16384]
    assert [len(c) for c in chunks] == [3, 2]


def test_tracepoint_missing_is_feature_missing(tmp_path):
    with pytest.raises(FeatureMissing, match="page_fault_user"):
        PageFaultSampler.tracepoint(pid=1, tracefs_root=str(tmp_path))


@requires_root
@pytest.mark.skipif(
    TRACEFS is None
    or not os.path.exists(f"{TRACEFS}/events/exceptions/page_fault_user/id"),
    reason="tracefs with exceptions:page_fault_user not available",
)
def test_tracepoint_tells_writes_and_addresses():
    p = run_child("early")
    with PageFaultSampler.tracepoint(pid=p.pid, tracefs_root=TRACEFS, sample_period=1) as s:
        threads, got = go_and_collect(p, s)
    page = os.sysconf("SC_PAGE_SIZE")
    for tid, base in threads.values():
        inside = (got["addr"] >= base) & (got["addr"] < base + N * page)
        assert inside.sum() >= 0.99 * N, "the address comes from the payload, not SAMPLE_ADDR"
        assert (got["tid"][inside] == tid).mean() >= 0.99
        assert got["is_write"][inside].mean() >= 0.99


@requires_root
def test_default_period_and_time_without_sample_time():
    # TID|ADDR only: time_ns is the drain time, cpu the ring's; every 3rd fault by default.
    p = run_child("early")
    t0 = time.monotonic_ns()
    with PageFaultSampler(pid=p.pid, sample_type=pr.SAMPLE_TID | pr.SAMPLE_ADDR) as s:
        threads, got = go_and_collect(p, s)
        assert s.lost == 0
    t1 = time.monotonic_ns()
    assert ((got["time_ns"] >= t0) & (got["time_ns"] <= t1)).all()
    assert set(got["cpu"].tolist()) <= set(range(os.cpu_count()))
    page = os.sysconf("SC_PAGE_SIZE")
    for tid, base in threads.values():
        inside = (got["addr"] >= base) & (got["addr"] < base + N * page)
        assert abs(int(inside.sum()) - N / DEFAULT_SAMPLE_PERIOD) <= 0.02 * N
        assert (got["tid"][inside] == tid).all()


@requires_root
@needs_two_cpus
def test_full_ring_counts_lost_samples():
    p = run_child("early")
    with PageFaultSampler(pid=p.pid, ring_pages=2, sample_period=1) as s:
        threads, got = go_and_collect(p, s)  # nothing is read while the child faults
        page = os.sysconf("SC_PAGE_SIZE")
        addr = got["addr"]
        seen = sum(int(((addr >= b) & (addr < b + N * page)).sum()) for _, b in threads.values())
        assert seen < 2 * N // 4  # two 8 KiB rings hold ~500 samples
        assert s.lost > 0
        # Lost + seen covers the buffer faults (plus the interpreter's own faults).
        assert s.lost + got["addr"].size >= 2 * N
