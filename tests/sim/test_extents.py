"""Range arithmetic against small per-page references, and placement invariants under
random migrations (hypothesis)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from damoncore.sim import Mapping, Process, SimMachine, SimNode, Workload
from damoncore.sim.extents import (KEY_END, SWAPPED, key_of, overlap_pairs, split_by_offsets,
                                   zip_ranges)

PAGE = 4096


def _ranges(draw, n, lo=0, hi=64):
    pts = sorted(set(draw(st.lists(st.integers(lo, hi), min_size=2 * n, max_size=2 * n))))
    pts = pts[: len(pts) // 2 * 2]
    return np.array(pts[0::2], np.uint64), np.array(pts[1::2], np.uint64)


@st.composite
def two_lists(draw):
    return _ranges(draw, draw(st.integers(0, 6))), _ranges(draw, draw(st.integers(0, 6)))


@given(two_lists())
def test_overlap_pairs_matches_per_unit_reference(lists):
    (qs, qe), (s, e) = lists
    qi, ej, lo, hi = overlap_pairs(qs, qe, s, e)
    got = {(int(i), int(j), x) for i, j, a, b in zip(qi, ej, lo, hi) for x in range(int(a), int(b))}
    want = {(i, j, x) for i in range(len(qs)) for j in range(len(s))
            for x in range(int(qs[i]), int(qe[i])) if s[j] <= x < e[j]}
    assert got == want


@given(st.lists(st.integers(1, 9), min_size=1, max_size=6),
       st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_zip_ranges_is_an_order_preserving_bijection(la, lb):
    if sum(la) != sum(lb):
        lb = lb + [sum(la) - sum(lb)] if sum(la) > sum(lb) else la
        la = list(la)
    if sum(la) != sum(lb):
        return
    sa = np.cumsum([0] + [x + 3 for x in la[:-1]]).astype(np.uint64) + 100
    sb = np.cumsum([0] + [x + 5 for x in lb[:-1]]).astype(np.uint64) + 1000
    s, e, p = zip_ranges(sa, sa + np.array(la, np.uint64), sb, sb + np.array(lb, np.uint64))
    src = [x for a, b in zip(sa, sa + np.array(la, np.uint64)) for x in range(int(a), int(b))]
    dst = [x for a, b in zip(sb, sb + np.array(lb, np.uint64)) for x in range(int(a), int(b))]
    got = {x: int(pp) + (x - int(a)) for a, b, pp in zip(s, e, p) for x in range(int(a), int(b))}
    assert got == dict(zip(src, dst))


def test_split_by_offsets_groups():
    s, e, g = split_by_offsets([0, 100], [10, 130], [5, 25])
    assert list(zip(s.tolist(), e.tolist(), g.tolist())) == [
        (0, 5, 0), (5, 10, 1), (100, 115, 1), (115, 130, 2)]


def _machine(caps=(64, 64, 32)):
    nodes = [SimNode(i, c * PAGE, i == 0) for i, c in enumerate(caps)]
    lat = [[10 + 10 * abs(i - j) for j in range(len(caps))] for i in range(len(caps))]
    m = SimMachine(nodes, lat)
    # pid 1's first mapping spills from node 0 into node 1: physically contiguous across
    # the node boundary, which must still be two extents
    procs = [Process(1, (Mapping(0x10000, 0x10000 + 80 * PAGE),
                         Mapping(0x100000, 0x100000 + 30 * PAGE, node=1)), node=0),
             Process(2, (Mapping(0x10000, 0x10000 + 20 * PAGE),), node=2)]
    m.add_workload(Workload(procs, []))
    return m


def _check_invariants(m):
    """Every virtual page mapped exactly once, every frame used at most once,
    free + used == capacity on every node."""
    x = m.extents
    assert np.all(x.kstart < x.kend) and np.all(x.kend[:-1] <= x.kstart[1:])
    mapped = sum(int(b - a) for a, b in zip(x.kstart, x.kend))
    assert mapped == (80 + 30 + 20) * PAGE
    present = x.pstart != SWAPPED
    first = m.node_of(x.pstart[present])
    last = m.node_of(x.pstart[present] + (x.kend - x.kstart)[present] - np.uint64(1))
    assert np.array_equal(first, last), "an extent spans two nodes"
    ps, pe, _ = x.phys_view()
    assert np.all(pe[:-1] <= ps[1:]), "a frame is mapped twice"
    for n in m.nodes:
        lo, hi = m.node_range(n.nid)
        f = m.free[n.nid]
        assert np.all(f.s >= lo) and np.all(f.e <= hi) and np.all(f.e[:-1] < f.s[1:])
        used = int(((np.minimum(pe, hi).astype(np.int64) - np.maximum(ps, lo).astype(np.int64))
                    .clip(0)).sum())
        assert used + f.free_bytes == n.capacity_bytes
        # a free frame is never mapped
        _, _, lo2, _ = overlap_pairs(f.s, f.e, ps, pe)
        assert len(lo2) == 0


ops = st.lists(st.tuples(st.sampled_from(["v", "p", "swap", "in"]), st.integers(1, 2),
                         st.integers(0, 200), st.integers(1, 60), st.integers(0, 2)),
               max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_random_migrations_keep_placement_consistent(steps):
    m = _machine()
    _check_invariants(m)
    before = {pid: m.extents.lookup(key_of(m.pidx(pid), [0x10000]))[0] for pid in (1, 2)}
    assert before[1] != KEY_END
    for kind, pid, off, n, dst in steps:
        free_before = m.node_free(dst)
        if kind == "v":
            r = m.migrate(pid, 0x10000 + off * PAGE, 0x10000 + (off + n) * PAGE, dst)
        elif kind == "p":
            r = m.migrate_phys(off * PAGE, (off + n) * PAGE, dst)
        elif kind == "swap":
            k = m.pidx(pid)
            m.swap_out(key_of(k, [0x10000 + off * PAGE]), key_of(k, [0x10000 + (off + n) * PAGE]))
            r = None
        else:
            k = m.pidx(pid)
            m.swap_in(key_of(k, [0x10000]), key_of(k, [0x10000 + 200 * PAGE]), dst)
            r = None
        if r is not None:
            assert r.sz_moved <= free_before
            assert all(d == dst and s != dst for s, d in r.moved)
            if r.nr_failed:
                assert m.node_free(dst) == 0
        _check_invariants(m)
        for n in m.nodes:
            assert 0 <= m.node_used(n.nid) <= n.capacity_bytes
    # extents stay few: O(operations), never O(pages)
    assert len(m.extents) <= 8 + 4 * len(steps)


def test_swapped_pages_lookup_and_reverse_map():
    m = _machine()
    k = m.pidx(1)
    m.swap_out(key_of(k, [0x10000]), key_of(k, [0x10000 + 4 * PAGE]))
    assert m.extents.lookup(key_of(k, [0x10000 + PAGE]))[0] == SWAPPED
    p = m.extents.lookup(key_of(k, [0x10000 + 5 * PAGE]))[0]
    assert m.extents.reverse([p])[0] == key_of(k, [0x10000 + 5 * PAGE])[0]
    assert m.swap_in(key_of(k, [0x10000]), key_of(k, [0x20000]), 0) == 4 * PAGE
