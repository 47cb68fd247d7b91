"""Weighted interleave on the 4-node guest (6.12 kernel): sysfs weights and page placement.

One guest boot runs :func:`guest_weighted_interleave` and returns what it saw.
"""
from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.vm

NPAGES = 16384          # 64 MiB


def guest_weighted_interleave(npages):
    import ctypes
    import mmap
    import os

    import numpy as np

    from damoncore.linux import mempolicy as mp
    from damoncore.linux.migrate import page_addrs, query_pages

    def counts(addr, n):
        st = query_pages(os.getpid(), page_addrs(addr, addr + n * mmap.PAGESIZE))
        vals, cnt = np.unique(st, return_counts=True)
        return {str(int(v)): int(c) for v, c in zip(vals, cnt)}

    out = {"before": mp.read_weights(), "auto": mp.read_auto()}
    with mp.preserved_weights():
        mp.write_weights({0: 3, 1: 1})
        out["written"] = mp.read_weights()
        m = mmap.mmap(-1, npages * mmap.PAGESIZE)
        buf = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(buf)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        mp.mbind_weighted_interleave(addr, npages * mmap.PAGESIZE, [0, 1])
        out["policy"] = list(mp.get_mempolicy(addr))
        m[:] = b"x" * len(m)
        out["mbind_counts"] = counts(addr, npages)
        # the calling thread's policy, with new weights, for a fresh mapping
        mp.write_weights({0: 1, 1: 1, 2: 1, 3: 1})
        mp.set_weighted_interleave([0, 1, 2, 3])
        m2 = mmap.mmap(-1, npages * mmap.PAGESIZE)
        buf2 = ctypes.c_char.from_buffer(m2)
        m2.madvise(mmap.MADV_NOHUGEPAGE)
        m2[:] = b"y" * len(m2)
        out["thread_counts"] = counts(ctypes.addressof(buf2), npages)
        mp.set_mempolicy(mp.MPOL_DEFAULT)
    out["after"] = mp.read_weights()
    return out


def test_weights_and_placement_in_the_guest(guest):
    r = harness.run_python(guest_weighted_interleave, NPAGES, timeout=300)
    assert set(r["before"]) == {"0", "1", "2", "3"}
    assert r["written"]["0"] == 3 and r["written"]["1"] == 1
    assert r["after"] == r["before"]
    assert r["policy"] == [6, [0, 1]]
    c = r["mbind_counts"]
    assert set(c) == {"0", "1"}
    assert c["0"] / NPAGES == pytest.approx(0.75, abs=0.02), c
    t = r["thread_counts"]
    assert set(t) == {"0", "1", "2", "3"}
    for n in "0123":
        assert t[n] / NPAGES == pytest.approx(0.25, abs=0.02), t
