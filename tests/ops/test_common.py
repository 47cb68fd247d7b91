"""Shared ops helpers: fit_regions (damon_set_regions), pagemap reads, page runs, folio sizes."""

import os

import numpy as np
import pytest

from damoncore.core.regions import Regions
from damoncore.linux import kpageflags as kpf
from damoncore.linux.pagemap import Pagemap
from damoncore.linux.migrate import pages_of_ranges
from damoncore.linux.pagemap import present_ranges
from damoncore.ops.common import fit_regions, folio_bytes, page_runs, pagemap_entries, \
    read_maps, dests_by_address


def regions(pairs, nr=None):
    r = Regions([a for a, _ in pairs], [b for _, b in pairs])
    r.nr_accesses[:] = nr if nr is not None else np.arange(1, len(pairs) + 1)
    return r


def spans(r):
    return list(zip(r.start.tolist(), r.end.tolist()))


# min_region 1, like the kernel's KUnit tables.  Pictures: regions above, ranges below.
CASES = [
    # |--|--|--|        regions 0-10, 10-20, 20-30
    #  [====]           range 5-25: first cut to 5, last cut to 25, middle kept
    ("clip both ends", [(0, 10), (10, 20), (20, 30)], [(5, 25)],
     [(5, 10), (10, 20), (20, 25)], [1, 2, 3]),
    #    |--|           region 10-20
    # [=========]       range 0-30: stretched both ways
    ("extend", [(10, 20)], [(0, 30)], [(0, 30)], [1]),
    # |--|   |--|       regions 0-10, 40-50; range 0-50: hole 10-40 filled fresh
    ("fill hole", [(0, 10), (40, 50)], [(0, 50)], [(0, 10), (10, 40), (40, 50)], [1, 0, 2]),
    # |--|              region 0-10 intersects nothing: dropped; range 100-200 fresh
    ("drop and add", [(0, 10)], [(100, 200)], [(100, 200)], [0]),
    # |---------|       region 0-100 spans two ranges: belongs to the first, cut at its end
    # [==]   [==]       ranges 0-30, 60-100: the second gets a fresh region
    ("span two ranges", [(0, 100)], [(0, 30), (60, 100)], [(0, 30), (60, 100)], [1, 0]),
    # |--|--|  |--|     three regions, two ranges each intersected
    ("two ranges", [(0, 10), (10, 20), (50, 60)], [(2, 18), (45, 70)],
     [(2, 10), (10, 18), (45, 70)], [1, 2, 3]),
    ("no regions", [], [(0, 10), (20, 30)], [(0, 10), (20, 30)], [0, 0]),
]


@pytest.mark.parametrize("name,regs,ranges,want,want_nr", CASES, ids=[c[0] for c in CASES])
def test_fit_regions_table(name, regs, ranges, want, want_nr):
    got = fit_regions(regions(regs), ranges, 1)
    assert spans(got) == want
    assert got.nr_accesses.tolist() == want_nr
    got.check_invariants(ranges)


def test_fit_regions_aligns_to_min_region():
    got = fit_regions(regions([(4096, 8192)]), [(100, 9000)], 4096)
    assert spans(got) == [(0, 12288)]


@pytest.mark.parametrize("seed", range(20))
def test_fit_regions_covers_ranges_and_keeps_counters(seed):
    rng = np.random.default_rng(seed)
    cuts = np.unique(rng.integers(0, 1000, 30))
    r = regions(list(zip(cuts[:-1].tolist(), cuts[1:].tolist())))
    r.age[:] = np.arange(r.nr) + 100
    edges = np.unique(rng.integers(0, 1200, 2 * rng.integers(1, 5)))
    if len(edges) % 2:
        edges = edges[:-1]
    ranges = list(zip(edges[0::2].tolist(), edges[1::2].tolist()))
    got = fit_regions(r, ranges, 1)
    got.check_invariants(ranges)
    # a kept region keeps its counters: matched through its (unchanged) interior
    for s, e, a in zip(got.start.tolist(), got.end.tolist(), got.age.tolist()):
        if a:
            i = a - 100
            assert max(s, int(r.start[i])) < min(e, int(r.end[i]))


def test_pages_of_ranges_and_runs():
    addrs, ridx = pages_of_ranges([0, 8192 * 4], [8192, 8192 * 4 + 4096], 4096)
    assert addrs.tolist() == [0, 4096, 32768] and ridx.tolist() == [0, 0, 1]
    s, ln = page_runs(np.array([0, 4096, 8192, 20480, 40960, 45056], np.uint64), 4096)
    assert s.tolist() == [0, 20480, 40960] and ln.tolist() == [12288, 4096, 8192]


def test_dests_by_address_in_address_order():
    pages = np.arange(6, dtype=np.uint64) * 4096
    assert dests_by_address(pages, [(1, 1), (3, 2)]).tolist() == [1, 3, 3, 1, 3, 3]
    assert dests_by_address(pages[:3], [(2, 1)]).tolist() == [2, 2, 2]
    # a page's node depends on its address only, not on the batch it comes in
    assert dests_by_address(pages[3:], [(1, 1), (3, 2)]).tolist() == [1, 3, 3]


def test_pagemap_entries_match_contiguous_reads(make_child):
    c = make_child(64)
    c.touch(0, 64)
    addrs = np.array([c.addr + 4096 * i for i in (63, 0, 5, 5, 40)], np.uint64)
    with Pagemap(c.pid) as pm:
        full = pm.read(c.addr, c.end)
        got = pagemap_entries(pm, addrs, max_gap_pages=2)
    assert got.tolist() == full[[63, 0, 5, 5, 40]].tolist()


def test_present_ranges_find_touched_pages(make_child):
    c = make_child(64)
    c.touch(8, 24)
    with Pagemap(c.pid) as pm:
        s, e = present_ranges(pm, c.addr, c.end)
    assert list(zip((s - c.addr).tolist(), (e - c.addr).tolist())) == [(8 * 4096, 24 * 4096)]


def test_read_maps_skips_vsyscall():
    maps = read_maps(os.getpid())
    assert all(b < 0xffffffffff600000 for _, b in maps)
    assert maps == sorted(maps)


class FakeFlags:
    """A kpageflags reader over a dict pfn -> flags."""

    def __init__(self, flags):
        self.flags = flags

    def read(self, pfns):
        return np.array([self.flags.get(int(p), 0) for p in pfns], np.uint64)


def test_folio_bytes_from_compound_flags():
    H, T = np.uint64(1 << kpf.COMPOUND_HEAD), np.uint64(1 << kpf.COMPOUND_TAIL)
    f = {1024: H, **{p: T for p in range(1025, 1536)}}           # a 2 MiB THP at 1024
    f.update({2048: H, 2049: T, 2050: T, 2051: T})               # a 16 KiB mTHP
    f.update({4096: H, **{p: T for p in range(4097, 4096 + 1024)}})   # bigger than a block
    reader = FakeFlags(f)
    pfns = np.array([1024, 1300, 2050, 3000, 4096, 4700], np.uint64)
    got = folio_bytes(reader, pfns, reader.read(pfns), 4096)
    assert got.tolist() == [2 << 20, 2 << 20, 16384, 4096, 1 << 30, 1 << 30]
