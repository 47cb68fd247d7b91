"""process_madvise on a real child: what really happens on this (swapless) machine."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
from linux_helpers import PAGE, requires_root, smaps_entry

from damoncore.errors import TargetGone
from damoncore.linux import _syscalls
from damoncore.linux import kpageflags as kpf
from damoncore.linux import madvise as M
from damoncore.linux.pagemap import Pagemap, pfns, present

N = 256


def swap_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SwapTotal:"):
                return int(line.split()[1])
    return 0


def active_pages(c):
    with Pagemap(c.pid, page_size=PAGE) as pm:
        ent = pm.read(c.addr, c.addr + c.size)
    with kpf.KPageFlags() as k:
        return int(kpf.has(k.read(pfns(ent)[present(ent)]), kpf.ACTIVE).sum())


@requires_root
def test_pageout_drops_rss_of_clean_file_mapping(make_child, tmp_path):
    path = tmp_path / "data"
    with open(path, "wb") as f:
        f.write(os.urandom(N * PAGE))
        f.flush()
        os.fsync(f.fileno())  # dirty page cache would have to be written back first
    c = make_child(N, kind=str(path))
    c.touch()
    assert smaps_entry(c.pid, c.addr)["Rss"] == N * PAGE
    res = M.madvise_range(c.pid, c.addr, c.addr + c.size, M.MADV_PAGEOUT)
    assert res.bytes_advised == N * PAGE and res.errors == {}
    assert smaps_entry(c.pid, c.addr)["Rss"] <= N * PAGE // 10


@requires_root
@pytest.mark.skipif(swap_total() > 0, reason="with swap, anon PAGEOUT really reclaims")
def test_swapless_anon_pageout_keeps_rss_and_cold_deactivates(make_child):
    c = make_child(N)
    c.touch()
    M.madvise_range(c.pid, c.addr, c.addr + c.size, M.MADV_PAGEOUT)
    # Without swap, reclaim cannot free anon pages: they stay, and go back as active.
    assert smaps_entry(c.pid, c.addr)["Rss"] == N * PAGE
    assert active_pages(c) >= N // 2
    res = M.madvise_range(c.pid, c.addr, c.addr + c.size, M.MADV_COLD)
    assert res.bytes_advised == N * PAGE
    assert active_pages(c) <= N // 8


@requires_root
def test_unmapped_range_is_counted_and_the_rest_still_advised(make_child):
    c = make_child(N)
    c.touch()
    starts = [c.addr, PAGE, c.addr + PAGE * (N // 2)]  # PAGE: below mmap_min_addr, never mapped
    lens = [PAGE * (N // 2), PAGE, PAGE * (N // 2)]
    res = M.process_madvise(c.pid, starts, lens, M.MADV_COLD)
    assert res.bytes_advised == N * PAGE
    assert res.errors == {"ENOMEM": 1}


@requires_root
def test_more_than_uio_maxiov_ranges(make_child):
    c = make_child(N * 10)
    c.touch()
    starts = c.addr + PAGE * np.arange(N * 10, dtype=np.uint64)
    res = M.process_madvise(c.pid, starts, np.full(N * 10, PAGE), M.MADV_COLD)
    assert res.bytes_advised == N * 10 * PAGE and res.nr_calls == 3


@requires_root
def test_hugepage_refused_up_front_and_by_the_kernel(make_child):
    c = make_child(4)
    with pytest.raises(M.AdviceNotSupported, match="MADV_COLD"):
        M.madvise_range(c.pid, c.addr, c.addr + c.size, M.MADV_HUGEPAGE)
    # The kernel agrees: EINVAL for HUGEPAGE on another process (the raw syscall).
    fd = M.pidfd_open(c.pid)
    rc = _syscalls.process_madvise(fd, np.array([c.addr], np.uint64),
                                   np.array([c.size], np.uint64), 0, 1, M.MADV_HUGEPAGE)
    os.close(fd)
    assert rc == -errno.EINVAL


def test_exited_pid_is_target_gone():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(TargetGone):
        M.madvise_range(p.pid, 0x10000, 0x20000, M.MADV_COLD)
