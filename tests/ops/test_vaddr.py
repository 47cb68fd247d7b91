"""VaddrOps on real child processes: regions from maps, access checks, actions, exit."""

import os
import threading
import time

import numpy as np
import pytest
from ops_helpers import PAGE, KernelLikeBitmap

from damoncore.core import Attrs, Context, Target
from damoncore.errors import FeatureMissing
from damoncore.linux.errors import NodeUnavailable
from damoncore.linux.migrate import memory_nodes, query_pages
from damoncore.linux.page_idle import PageIdle, word_runs
from damoncore.linux.pagemap import Pagemap, pfns
from damoncore.ops.common import read_maps, three_ranges
from damoncore.ops.vaddr import VaddrOps, soft_dirty_supported
from damoncore.schemes.scheme import AccessPattern, Filter, Scheme

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (PFNs, move_pages of others)")
FAST = Attrs(sample_us=5_000, aggr_us=50_000, ops_update_us=100_000)


def ctx_for(ops, *targets, primitives=("page_fault",), schemes=(), attrs=FAST):
    return Context(ops, targets=list(targets), attrs=attrs, primitives=primitives,
                   schemes=schemes)


def test_three_region_init_from_real_maps(make_child):
    c = make_child(256)
    t = Target(pid=c.pid)
    ctx = ctx_for(VaddrOps(), t)
    ctx.start()
    assert t.ranges == three_ranges(read_maps(c.pid))
    assert len(t.ranges) == 3
    t.regions.check_invariants(t.ranges)
    assert any(a <= c.addr and c.end <= b for a, b in t.ranges), "buffer not covered"
    assert t.regions.nr >= ctx.attrs.min_nr_regions
    ctx.ops.cleanup(ctx)


def test_update_refits_regions_to_new_mappings(make_child):
    c = make_child(16)
    t = Target(pid=c.pid)
    ctx = ctx_for(VaddrOps(), t)
    ctx.start()
    before = t.regions.copy()
    new = int(c.cmd("map 4096"))          # 16 MiB more, placed by the kernel
    ctx.ops.update(ctx)
    t.regions.check_invariants(t.ranges)
    assert any(a <= new < b for a, b in t.ranges)
    kept = np.isin(t.regions.start, before.start) & np.isin(t.regions.end, before.end)
    assert kept.sum() >= before.nr - 4, "re-fitting must keep interior regions"
    ctx.ops.cleanup(ctx)


@pytest.mark.skipif(os.path.exists("/sys/kernel/mm/page_idle/bitmap") or soft_dirty_supported(),
                    reason="this kernel has page idle tracking or soft-dirty")
def test_page_table_without_idle_or_soft_dirty_is_a_clear_error(make_child):
    c = make_child(4)
    ctx = ctx_for(VaddrOps(), Target(pid=c.pid), primitives=("page_table",))
    with pytest.raises(FeatureMissing) as ei:
        ctx.start()
    assert "CONFIG_IDLE_PAGE_TRACKING" in str(ei.value)
    assert "CONFIG_MEM_SOFT_DIRTY" in str(ei.value)


@root
def test_idle_checks_against_fixture_bitmap(make_child, tmp_path):
    """prepare marks the sampled frames idle, check reports frames touched since."""
    c = make_child(64)
    c.touch()
    with Pagemap(c.pid) as pm:
        frames = pfns(pm.read(c.addr, c.end))
    nr_pfns = 1 << 24
    assert frames.max() < nr_pfns
    bm = KernelLikeBitmap(str(tmp_path / "bitmap"), nr_pfns)
    ops = VaddrOps(page_idle=PageIdle(io=bm))
    t = Target(pid=c.pid, ranges=[(c.addr, c.end)])
    ctx = ctx_for(ops, t, primitives=("page_table",), attrs=Attrs(min_nr_regions=16))
    ctx.start()
    assert ops.check == "idle" and t.regions.nr == 16
    ctx.sample_begin()                       # picks sampling addresses and marks them idle
    sampled = ((t.regions.sampling_addr - np.uint64(c.addr)) // np.uint64(PAGE)).astype(int)
    assert bm.idle(frames[sampled]).all()
    touched = np.arange(16) % 3 == 0
    bm.access(frames[sampled[touched]])      # the workload touches some of them
    got = ops.check_accesses(ctx)[0]
    assert got.astype(bool).tolist() == touched.tolist()
    # one pwrite per span of nearby bitmap words and one pread per span of the words
    # read (reads bridge no gaps), not one per region
    pi = ops.page_idle
    f = frames[sampled]
    assert pi.nr_syscalls == (len(word_runs(f, pi.max_gap_words)[1])
                              + len(word_runs(f, pi.max_read_gap_words)[1]))
    ops.cleanup(ctx)


@root
def test_migrate_hot_to_node0_reports_sz_applied(make_child):
    c = make_child(512)
    c.touch(0, 384)                          # the last 128 pages stay absent
    ops = VaddrOps()
    t = Target(pid=c.pid, ranges=[(c.addr, c.end)])
    s = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    ctx = ctx_for(ops, t, schemes=[s])
    ctx.start()
    starts = np.array([c.addr, c.addr + 256 * PAGE], np.uint64)
    ends = np.array([c.addr + 256 * PAGE, c.end], np.uint64)
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 384 * PAGE
    assert res.region_sz_applied.tolist() == [256 * PAGE, 128 * PAGE]
    assert res.sz_ops_filter_passed == 384 * PAGE
    assert (query_pages(c.pid, np.arange(c.addr, c.addr + 384 * PAGE, PAGE)) == 0).all()
    ops.cleanup(ctx)


@root
def test_migrate_through_the_loop_and_anon_filter(make_child):
    c = make_child(256)
    c.touch()
    keep = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    reject = Scheme(AccessPattern(), action="migrate_cold", target_nid=0,
                    filters=[Filter("anon", matching=True, allow=False)])
    t = Target(pid=c.pid, ranges=[(c.addr, c.end)])
    ctx = ctx_for(VaddrOps(), t, schemes=[keep, reject])
    ctx.run(duration_us=300_000)
    assert keep.stats.sz_applied >= 256 * PAGE and keep.stats.nr_applied > 0
    assert reject.stats.sz_tried > 0 and reject.stats.sz_applied == 0
    assert reject.stats.sz_ops_filter_passed == 0


@pytest.mark.skipif(1 in memory_nodes(), reason="node 1 has memory here")
def test_migrate_to_memoryless_node_fails_at_start(make_child):
    c = make_child(4)
    s = Scheme(AccessPattern(), action="migrate_cold", target_nid=1)
    ctx = ctx_for(VaddrOps(), Target(pid=c.pid), schemes=[s])
    with pytest.raises(NodeUnavailable, match="NUMA node 1"):
        ctx.start()


@root
def test_cold_and_pageout_advise_the_ranges(make_child):
    c = make_child(64)
    c.touch()
    ops = VaddrOps()
    t = Target(pid=c.pid, ranges=[(c.addr, c.end)])
    ctx = ctx_for(ops, t)
    ctx.start()
    starts, ends = np.array([c.addr], np.uint64), np.array([c.end], np.uint64)
    res = ops.apply_scheme(ctx, t, Scheme(action="cold"), starts, ends)
    assert res.sz_applied == 64 * PAGE and res.region_sz_applied.tolist() == [64 * PAGE]
    # with an ops filter the pages are advised as runs of passing present pages
    c.cmd("drop")
    c.touch(0, 16)
    c.touch(32, 40)
    res = ops.apply_scheme(ctx, t, Scheme(action="pageout",
                                          filters=[Filter("anon", allow=True)]), starts, ends)
    assert res.sz_ops_filter_passed == 24 * PAGE and res.sz_applied == 24 * PAGE
    ops.cleanup(ctx)


def test_child_exit_mid_run_ends_monitoring(make_child):
    c = make_child(16)
    t = Target(pid=c.pid)
    ctx = ctx_for(VaddrOps(), t)
    threading.Timer(0.3, c.exit).start()
    t0 = time.monotonic()
    ctx.run(duration_us=10_000_000)
    assert time.monotonic() - t0 < 3, "the loop must end when its only target exits"
    assert t.obsolete and ctx.stopped.is_set()
