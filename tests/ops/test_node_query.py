"""The queries policies make of an ops backend: ``node_ranges`` (which node holds a range)
and ``page_keys`` (a page's identity, the same after it migrates)."""

import os

import numpy as np
import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.ops.base import KEY_NONE, Operations
from damoncore.ops.sim import SimOps
from damoncore.sim import Accessor, Mapping, Process, Stream, Workload
from damoncore.sim.extents import key_of
from damoncore.sim.presets import seed_machine

MiB = 1 << 20
BASE = 1 << 40
PAGE = 4096


def sim(pid=5):
    m = seed_machine(64 * MiB, 64 * MiB)
    a = Accessor("cpu0", 0, cpu=0, tid=1)
    m.add_workload(Workload([Process(pid, (Mapping(BASE, BASE + 8 * MiB, node=0),))],
                            [(0, [Stream(a, pid, BASE, BASE + 8 * MiB, 1.0)])]))
    return m


def test_defaults_say_unknown():
    assert Operations().node_ranges(None, None, [0], [PAGE]) is None
    assert Operations().page_keys(None, None, [0]) is None


def test_sim_vaddr_node_ranges_follow_migrations():
    m = sim()
    m.migrate(5, BASE + MiB, BASE + 3 * MiB, 2)
    ops = SimOps(m, space="vaddr", pid=5)
    s, e, n = ops.node_ranges(None, Target(pid=5), [BASE], [BASE + 4 * MiB])
    assert list(zip(s.tolist(), e.tolist(), n.tolist())) == [
        (BASE, BASE + MiB, 0), (BASE + MiB, BASE + 3 * MiB, 2), (BASE + 3 * MiB, BASE + 4 * MiB, 0)]
    m.swap_out(key_of(m.pidx(5), [BASE]), key_of(m.pidx(5), [BASE + MiB]))
    s, e, n = ops.node_ranges(None, Target(pid=5), [BASE], [BASE + 2 * MiB])
    assert s.tolist() == [BASE + MiB] and n.tolist() == [2]      # swapped: not present


def test_sim_paddr_node_ranges_cut_at_node_boundaries():
    m = sim()
    ops = SimOps(m, space="paddr")
    lo, hi = m.node_range(0)[1] - MiB, m.node_range(1)[0] + MiB
    s, e, n = ops.node_ranges(None, Target(), [lo], [hi])
    assert list(zip(s.tolist(), e.tolist(), n.tolist())) == [
        (lo, m.node_range(0)[1], 0), (m.node_range(1)[0], hi, 1)]


def test_sim_page_keys_survive_a_migration():
    m = sim()
    ops = SimOps(m, space="paddr")
    t = Target()
    before = m.extents.lookup(np.array([(m.pidx(5) << 48) | (BASE + MiB)], np.uint64))
    k1 = ops.page_keys(None, t, before + np.uint64(100))      # any byte of the page
    m.migrate(5, BASE + MiB, BASE + 2 * MiB, 2)
    after = m.extents.lookup(np.array([(m.pidx(5) << 48) | (BASE + MiB)], np.uint64))
    assert m.node_of(after)[0] == 2 and after[0] != before[0]
    assert ops.page_keys(None, t, after).tolist() == k1.tolist()
    nxt = ops.page_keys(None, t, after + np.uint64(PAGE))
    assert int(nxt[0]) == int(k1[0]) + 1                       # keys count pages
    assert ops.page_keys(None, t, before).tolist() != k1.tolist()   # the old frame
    free = np.array([m.node_range(3)[0]], np.uint64)
    assert ops.page_keys(None, t, free).tolist() == [KEY_NONE]
    v = SimOps(m, space="vaddr", pid=5)
    assert v.page_keys(None, Target(pid=5), [BASE + MiB]).tolist() == k1.tolist()


def test_vaddr_node_ranges_of_a_real_process(make_child):
    """move_pages(2) query of every page: present pages in runs per node (this machine has
    node 0 only), pages never touched left out."""
    from damoncore.ops.vaddr import VaddrOps
    c = make_child(64)
    c.touch(0, 16)
    c.touch(32, 48)
    ops = VaddrOps()
    s, e, n = ops.node_ranges(None, Target(pid=c.pid), [c.addr], [c.end])
    assert list(zip(s.tolist(), e.tolist())) == [(c.addr, c.addr + 16 * PAGE),
                                                 (c.addr + 32 * PAGE, c.addr + 48 * PAGE)]
    assert n.tolist() == [0, 0]
    assert ops.page_keys(None, Target(pid=c.pid), [c.addr + 5]).tolist() == [c.addr // PAGE]


@pytest.mark.skipif(os.geteuid() != 0, reason="PFNs in pagemap need root")
def test_perf_paddr_page_keys_name_the_faulting_page(make_child):
    """PerfOps over paddr remembers which (pid, virtual page) each reported frame was when
    it translated the fault: page_keys gives that back for the frames reports named."""
    from damoncore.linux import pagemap as pmap
    from damoncore.ops.paddr import PaddrOps
    from damoncore.ops.perf import PerfOps
    c = make_child(32)
    ops = PerfOps(PaddrOps(pids=[c.pid]), pid=c.pid, sample_period=1, drain_thread=False)
    ctx = Context(ops, [Target(ranges=[(0, 1 << 46)])], Attrs(), primitives=("page_fault",))
    ctx.start()
    try:
        c.touch()
        ops.drain()
        with pmap.Pagemap(c.pid) as pm:
            ent = pm.read(c.addr, c.end)
        pfn = (ent & pmap.PFN_MASK)[pmap.present(ent)]
        keys = ops.page_keys(ctx, ctx.targets[0], pfn * np.uint64(PAGE))
        want = (np.uint64(c.pid) << np.uint64(36)) + np.arange(c.addr // PAGE,
                                                               c.end // PAGE, dtype=np.uint64)
        assert len(pfn) == 32 and keys.tolist() == want.tolist()
        assert ops.page_keys(ctx, ctx.targets[0], [PAGE]).tolist() == [KEY_NONE]
    finally:
        ops.cleanup(ctx)
