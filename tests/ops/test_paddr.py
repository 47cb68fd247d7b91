"""PaddrOps: reverse map, idle-bitmap checks against a fixture, migration of physical ranges."""

import os

import numpy as np
import pytest
from ops_helpers import PAGE, KernelLikeBitmap

from damoncore.core import Attrs, Context, Target
from damoncore.errors import ActionNotSupported, FeatureMissing
from damoncore.linux import kpageflags as kpf
from damoncore.linux.migrate import move_pages, query_pages
from damoncore.linux.page_idle import PageIdle, word_runs
from damoncore.linux.pagemap import Pagemap, pfns, present
from damoncore.ops.paddr import PaddrOps, ReverseMap
from damoncore.schemes.scheme import AccessPattern, Filter, Scheme

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (PFNs, kpageflags)")
BITMAP = "/sys/kernel/mm/page_idle/bitmap"


def frames_of(c):
    with Pagemap(c.pid) as pm:
        return pfns(pm.read(c.addr, c.end))


def _frame_ranges(frames):
    """One [start, end) byte range per frame, by frame number."""
    starts = np.sort(frames) * np.uint64(PAGE)
    return starts, starts + np.uint64(PAGE)


def test_reverse_map_agrees_with_pagemap(make_child):
    c = make_child(300)
    c.touch(0, 200)
    frames = frames_of(c)[:200]
    rm = ReverseMap()
    rm.build([c.pid])
    assert rm.nr_pids == 1
    i = np.searchsorted(rm.pfn, frames)
    assert (rm.pfn[i] == frames).all()
    assert (rm.pid[i] == c.pid).all()
    assert rm.vaddr[i].tolist() == [c.addr + k * PAGE for k in range(200)]
    # a physical range lookup returns exactly the frames inside it
    lo, hi = int(frames.min()), int(frames.max()) + 1
    idx, ridx = rm.lookup(np.array([lo * PAGE], np.uint64), np.array([hi * PAGE], np.uint64))
    assert set(frames.tolist()) <= set(rm.pfn[idx].tolist())
    assert ((rm.pfn[idx] >= lo) & (rm.pfn[idx] < hi)).all() and (ridx == 0).all()


@pytest.mark.skipif(os.path.exists(BITMAP), reason="this kernel has idle page tracking")
def test_page_table_needs_idle_tracking_page_fault_does_not():
    ctx = Context(PaddrOps(), targets=[Target()], primitives=("page_table",))
    with pytest.raises(FeatureMissing, match="CONFIG_IDLE_PAGE_TRACKING"):
        ctx.start()
    young = Scheme(action="migrate_hot", target_nid=0, filters=[Filter("young", allow=True)])
    ctx = Context(PaddrOps(), targets=[Target()], primitives=("page_fault",), schemes=[young])
    with pytest.raises(FeatureMissing, match="CONFIG_IDLE_PAGE_TRACKING"):
        ctx.start()
    ctx = Context(PaddrOps(), targets=[Target()], primitives=("page_fault",),
                  attrs=Attrs(sample_us=1000, aggr_us=10_000))
    ctx.run(duration_us=50_000)                      # reports only: no bitmap needed
    (t,) = ctx.targets
    assert t.regions.nr >= 10 and t.regions.total_size() > 0


def kpageflags_fixture(tmp_path, nr, not_lru=()):
    """A procfs root whose kpageflags says every frame is an LRU page but ``not_lru``."""
    flags = np.full(nr, 1 << 5, np.uint64)             # KPF_LRU
    flags[np.asarray(not_lru, np.int64)] = 1 << 10     # KPF_BUDDY: a free frame
    root = tmp_path / "proc"
    root.mkdir(exist_ok=True)
    flags.tofile(root / "kpageflags")
    return str(root)


def test_idle_checks_against_fixture_bitmap(tmp_path):
    nr = 1 << 20
    bm = KernelLikeBitmap(str(tmp_path / "bitmap"), nr)
    ops = PaddrOps(page_idle=PageIdle(io=bm), procfs_root=kpageflags_fixture(tmp_path, nr))
    targets = [Target(ranges=[(0, 1 << 30)]), Target(ranges=[(2 << 30, 3 << 30)])]
    ctx = Context(ops, targets=targets, primitives=("page_table",),
                  attrs=Attrs(min_nr_regions=100))
    ctx.start()
    ctx.sample_begin()
    frames = np.concatenate([t.regions.sampling_addr for t in targets]) // np.uint64(PAGE)
    assert bm.idle(frames).all()
    rng = np.random.default_rng(0)
    touched = rng.random(len(frames)) < 0.4
    bm.access(frames[touched])
    calls = ops.page_idle.nr_syscalls
    got = np.concatenate(ops.check_accesses(ctx)).astype(bool)
    assert got.tolist() == touched.tolist()
    # one pread per span of words for all targets together, not one per region
    pi = ops.page_idle
    assert pi.nr_syscalls - calls == len(word_runs(frames, pi.max_read_gap_words)[1]) \
        <= len(frames)


def test_frames_off_the_lru_are_never_accessed(tmp_path):
    """Free frames, slab and page tables cannot be marked idle, so they read "accessed";
    like the kernel's paddr (no folio for them) they must count as not accessed."""
    nr = 1 << 20
    bm = KernelLikeBitmap(str(tmp_path / "bitmap"), nr)
    t = Target(ranges=[(0, 1 << 30)])
    ctx = Context(PaddrOps(page_idle=PageIdle(io=bm)), targets=[t], primitives=("page_table",),
                  attrs=Attrs(min_nr_regions=200))
    ctx.start()
    ctx.sample_begin()
    frames = t.regions.sampling_addr // np.uint64(PAGE)
    free = frames[::3]
    ops = PaddrOps(page_idle=PageIdle(io=bm),
                   procfs_root=kpageflags_fixture(tmp_path, nr, free.astype(np.int64)))
    ctx.ops = ops
    ops.init(ctx)
    ops.prepare_access_checks(ctx)
    bm.access(frames)                                  # everything reads "not idle"
    got = ops.check_accesses(ctx)[0].astype(bool)
    want = ~np.isin(frames, free)
    assert got.tolist() == want.tolist()
    assert 0 < (~got).sum() < len(got)


def test_same_frame_sampled_twice_is_checked_once(tmp_path):
    bm = KernelLikeBitmap(str(tmp_path / "bitmap"), 1 << 12)
    ops = PaddrOps(page_idle=PageIdle(io=bm), procfs_root=kpageflags_fixture(tmp_path, 1 << 12))
    t = Target(ranges=[(0, 16 * PAGE)])
    ctx = Context(ops, targets=[t], primitives=("page_table",), attrs=Attrs(min_nr_regions=3))
    ctx.start()
    t.regions.sampling_addr[:] = 5 * PAGE            # every region samples frame 5
    ops.prepare_access_checks(ctx)
    bm.access([5])
    assert ops.check_accesses(ctx)[0].tolist() == [1] * t.regions.nr
    assert ops.page_idle.nr_syscalls == 2              # one mark, one read


def test_migrate_physical_range_to_node0(make_child):
    c = make_child(256)
    c.touch()
    frames = frames_of(c)
    # no owner-miss rebuild within the test: it checks what a stale map does
    ops = PaddrOps(pids=[c.pid], rmap_retry_s=3600)
    s = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    t = Target(ranges=[(0, 1 << 40)])
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[s])
    ctx.start()
    assert len(ops.rmap) >= 256
    # one range per frame of the child's buffer
    starts, ends = _frame_ranges(frames)
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 256 * PAGE and res.sz_ops_filter_passed == 256 * PAGE
    assert (res.region_sz_applied == PAGE).all()
    assert (query_pages(c.pid, np.arange(c.addr, c.end, PAGE)) == 0).all()
    # frames freed and re-faulted elsewhere: stale map entries move nothing
    c.cmd("drop")
    c.touch()
    moved = set(frames_of(c).tolist()) & set(frames.tolist())
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.nr_failed.get("stale", 0) >= 256 - len(moved)
    assert res.sz_applied <= len(moved) * PAGE
    # unmapped-reject filter passes the mapped anon pages, anon-reject none
    ops.update(ctx)
    starts, ends = _frame_ranges(frames_of(c))
    keep = Scheme(action="migrate_hot", target_nid=0,
                  filters=[Filter("unmapped", allow=False), Filter("anon", allow=True)])
    res = ops.apply_scheme(ctx, t, keep, starts, ends)
    assert res.sz_ops_filter_passed == 256 * PAGE and res.sz_applied == 256 * PAGE
    drop = Scheme(action="migrate_hot", target_nid=0, filters=[Filter("anon", allow=False)])
    res = ops.apply_scheme(ctx, t, drop, starts, ends)
    assert res.sz_ops_filter_passed == 0 and res.sz_applied == 0
    ops.cleanup(ctx)


def test_process_started_after_setup_is_found_by_a_rebuild(make_child):
    """A process started after the map was built owns frames the map does not know: the
    migration rebuilds the map (at most once per rmap_retry_s) and retries once."""
    ops = PaddrOps(rmap_retry_s=60)                  # every process: the monitor's default
    s = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    t = Target(ranges=[(0, 1 << 40)])
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[s])
    ctx.start()
    built = ops._rmap_built_at
    c = make_child(128)
    c.touch()
    starts, ends = _frame_ranges(frames_of(c))
    assert not np.isin(starts // np.uint64(PAGE), ops.rmap.pfn).any()
    # within the rate limit: no rebuild, so no owner and nothing moves
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 0 and ops.nr_rmap_retries == 0 and ops._rmap_built_at == built
    # the limit passed: one rebuild, the child's pages found and moved
    ops._rmap_built_at -= ops.rmap_retry_s
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert ops.nr_rmap_retries == 1
    assert res.sz_applied == 128 * PAGE and (res.region_sz_applied == PAGE).all()
    assert (query_pages(c.pid, np.arange(c.addr, c.end, PAGE)) == 0).all()
    # every mapped frame of the ranges has a known owner now: no further rebuild
    starts, ends = _frame_ranges(frames_of(c))
    ops.update(ctx)
    ops._rmap_built_at -= ops.rmap_retry_s
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert ops.nr_rmap_retries == 1 and res.sz_applied == 128 * PAGE
    ops.cleanup(ctx)


def _present(c):
    with Pagemap(c.pid) as pm:
        return present(pm.read(c.addr, c.end))


def _active(c):
    with Pagemap(c.pid) as pm:
        ent = pm.read(c.addr, c.end)
    with kpf.KPageFlags() as k:
        return kpf.has(k.read(pfns(ent)), kpf.ACTIVE) & present(ent)


def _drain_lru_batches(c):
    # frames still in another CPU's LRU add batch cannot be isolated, so reclaim skips them
    # (some of the 64 pages stayed mapped in 1 of 12 runs); any move_pages call drains them
    move_pages(c.pid, [c.addr], int(query_pages(c.pid, [c.addr])[0]))


def test_pageout_of_physical_ranges_reclaims_only_their_pages(make_child, tmp_path):
    # clean page cache can be reclaimed without swap; half of the child's frames are in range
    path = tmp_path / "data"
    path.write_bytes(os.urandom(64 * PAGE))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        # the write made large folios; dropped, they come back one page each on random faults
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    c = make_child(64, path)
    c.touch()
    _drain_lru_batches(c)
    assert _present(c).all()
    frames = frames_of(c)
    with kpf.KPageFlags() as k:
        fl = k.read(frames)
    # reclaim takes whole folios (the kernel's paddr pageout too): the split must be on one
    assert not (kpf.has(fl, kpf.COMPOUND_HEAD) | kpf.has(fl, kpf.COMPOUND_TAIL)).any(), \
        "large folios in the page cache: the test needs order-0 pages"
    s = Scheme(AccessPattern(), action="pageout")
    ops = PaddrOps(pids=[c.pid])
    t = Target(ranges=[(0, 1 << 40)])
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[s])
    ctx.start()
    starts, ends = _frame_ranges(frames[:32])
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 32 * PAGE and not any(res.nr_failed.values())
    assert (res.region_sz_applied == PAGE).all()
    now = _present(c)
    assert not now[:32].any(), "pages in the ranges stay mapped"
    assert now[32:].all(), "pages outside the ranges were reclaimed"
    ops.cleanup(ctx)


def test_lru_deprio_of_physical_ranges_deactivates_only_their_pages(make_child):
    c = make_child(64)
    c.touch()
    ops = PaddrOps(pids=[c.pid])
    t = Target(ranges=[(0, 1 << 40)])
    # swapless here: anon pageout cannot free the pages, reclaim puts them back active
    out, cold = Scheme(action="pageout"), Scheme(action="lru_deprio")
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[out, cold])
    ctx.start()
    frames = frames_of(c)
    _drain_lru_batches(c)
    ops.apply_scheme(ctx, t, out, *_frame_ranges(frames))
    before = _active(c)
    assert before.sum() >= 48, f"only {before.sum()} of 64 pages active to begin with"
    res = ops.apply_scheme(ctx, t, cold, *_frame_ranges(frames[:32]))
    assert res.sz_applied == 32 * PAGE
    after = _active(c)
    assert after[:32].sum() <= 4, f"{after[:32].sum()} of 32 deprioritized pages still active"
    assert after[32:].sum() >= before[32:].sum() - 4, "pages outside the ranges deactivated"
    ops.cleanup(ctx)


def test_lru_prio_is_refused_with_the_supported_list():
    ctx = Context(PaddrOps(pids=[]), targets=[Target(ranges=[(0, 1 << 30)])],
                  primitives=("page_fault",))
    with pytest.raises(ActionNotSupported, match="lru_prio.*lru_deprio.*pageout"):
        ctx.add_scheme(Scheme(action="lru_prio"))
