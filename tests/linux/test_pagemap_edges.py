"""Pagemap reads at the edges: the top of the user address space, unmapped ranges, dead pids."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from linux_helpers import PAGE

from damoncore.errors import TargetGone
from damoncore.linux.pagemap import Pagemap, present

TASK_SIZE = 0x7FFFFFFFF000          # x86_64, 4-level paging: the top user page ends here
N = 4

# Maps N pages ending right at TASK_SIZE and touches them.
CHILD = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
top, n = int(sys.argv[1]), int(sys.argv[2])
MAP_FIXED_NOREPLACE = 0x100000
addr = top - n * mmap.PAGESIZE
got = libc.mmap(addr, n * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
assert got == addr, (got, ctypes.get_errno())
ctypes.memset(addr, 1, n * mmap.PAGESIZE)
print(addr, flush=True)
sys.stdin.readline()
"""

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64" or PAGE != 4096, reason="TASK_SIZE below is x86_64's"
)


@pytest.fixture
def top_child():
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(TASK_SIZE), str(N)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line:
        p.wait()
        pytest.skip("cannot map the top of the address space (5-level paging?)")
    yield p, int(line)
    p.stdin.close()
    p.wait(timeout=10)


def test_read_across_task_size_is_valid_part_then_zeros(top_child):
    p, addr = top_child
    with Pagemap(p.pid, page_size=PAGE) as pm:
        ent = pm.read(addr, TASK_SIZE + N * PAGE)
        assert ent.shape == (2 * N,)
        assert present(ent[:N]).all(), "the child's pages right below TASK_SIZE are present"
        assert (ent[N:] == 0).all()
        assert (pm.read(TASK_SIZE, TASK_SIZE + 3 * PAGE) == 0).all()     # wholly above
        assert (pm.read(1 << 50, (1 << 50) + PAGE) == 0).all()
        hole = addr - 64 * PAGE                                          # unmapped, below
        assert (pm.read(hole, addr) == 0).all()


def test_exited_process_is_target_gone(top_child):
    p, addr = top_child
    pm = Pagemap(p.pid, page_size=PAGE)
    assert present(pm.read(addr, addr + PAGE)).all()
    p.stdin.close()
    p.wait(timeout=10)
    for start, end in ((addr, addr + PAGE), (0, PAGE), (TASK_SIZE, TASK_SIZE + PAGE)):
        with pytest.raises(TargetGone):
            pm.read(start, end)
    pm.close()
    with pytest.raises(TargetGone):
        Pagemap(p.pid)                                                   # reaped: no such pid


def test_zombie_is_target_gone():
    p = subprocess.Popen(["true"])
    for _ in range(200):                       # exited but not reaped
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        with pytest.raises(TargetGone):
            Pagemap(p.pid)
    finally:
        p.wait()



def test_read_runs_matches_read_per_run(top_child):
    p, addr = top_child
    pm = Pagemap(p.pid, page_size=PAGE)
    first = addr // PAGE
    runs = [(first - 100, 3), (first, N + 2), (first + N + 5, 1), (first - 1, 1)]
    got = pm.read_runs([f for f, _ in runs], [n for _, n in runs])
    want = [pm.read(f * PAGE, (f + n) * PAGE) for f, n in runs]
    assert got.tolist() == [int(x) for w in want for x in w]
    assert present(got[3:3 + N]).all() and (got[3 + N:3 + N + 3] == 0).all()
    assert pm.read_runs([], []).shape == (0,)
    p.stdin.close()
    p.wait(timeout=10)
    with pytest.raises(TargetGone):
        pm.read_runs([first], [1])
    pm.close()


def test_pagemap_cache_closes_the_files_of_exited_processes(make_child):
    """PagemapCache (paddr's fault-address translation) keeps one open pagemap per faulting
    process; once a process has exited its file is closed at the next sweep, even if the
    process never faults again (perf's cache kept it open for the whole run)."""
    from damoncore.linux.pagemap import PagemapCache

    a, b = make_child(8), make_child(8)
    a.touch()
    b.touch()
    cache = PagemapCache(sweep_s=0)
    fds = len(os.listdir("/proc/self/fd"))
    addrs = np.array([a.addr, b.addr + PAGE], np.uint64)
    phys, kept = cache.phys_addrs(np.array([a.pid, b.pid]), addrs)
    assert len(cache) == 2 and len(os.listdir("/proc/self/fd")) == fds + 2
    if os.geteuid() == 0:                  # PFNs need CAP_SYS_ADMIN
        assert kept.all() and (phys % PAGE == addrs % PAGE).all()
    b.proc.kill()
    b.proc.wait()
    assert cache.sweep() == 1 and len(cache) == 1
    assert len(os.listdir("/proc/self/fd")) == fds + 1
    # a lookup for the gone process is not kept, and leaves nothing open
    _, kept = cache.phys_addrs(np.array([b.pid]), addrs[1:])
    assert not kept.any() and len(cache) == 1
    cache.close()
    assert len(cache) == 0 and len(os.listdir("/proc/self/fd")) == fds
