"""PaddrOps: the owner index (PFN -> pid, vaddr) on real children, idle-bitmap checks against a
fixture, migration and advice of physical ranges."""

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
from damoncore.ops.paddr import PaddrOps
from damoncore.ops.rmap import Extents, OwnerIndex, index_process, runs_of
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


def owner_index(pids, **kw):
    return OwnerIndex(lambda: list(pids), **kw)


def _in_ranges(pfn, starts, ends):
    i = np.searchsorted(starts // np.uint64(PAGE), pfn, side="right") - 1
    return (i >= 0) & (pfn < ends[np.maximum(i, 0)] // np.uint64(PAGE))


def _mapped_now(pid, vaddr):
    """PFN each of ``pid``'s pages at ``vaddr`` maps now (0: none)."""
    with Pagemap(pid) as pm:
        return np.array([int(pfns(pm.read(int(v), int(v) + PAGE))[0]) for v in vaddr], np.uint64)


def test_owner_index_agrees_with_pagemap(make_child):
    c = make_child(300)
    c.touch(0, 200)
    frames = frames_of(c)[:200]
    rm = owner_index([c.pid])
    own = rm.lookup(*_frame_ranges(frames))
    assert rm.nr_pids == 1 and rm.nr_builds == 1 and rm.nr_denied == 0
    assert sorted(own.pfn.tolist()) == sorted(frames.tolist())
    assert (own.pid == c.pid).all()
    by_pfn = dict(zip(own.pfn.tolist(), own.vaddr.tolist()))
    assert [by_pfn[int(f)] for f in frames] == [c.addr + k * PAGE for k in range(200)]
    # one physical range: exactly the child's frames inside it, each with its range index
    lo, hi = int(frames.min()), int(frames.max()) + 1
    own = rm.lookup(np.array([0, lo * PAGE], np.uint64), np.array([PAGE, hi * PAGE], np.uint64))
    assert set(frames.tolist()) <= set(own.pfn.tolist())
    assert ((own.pfn >= lo) & (own.pfn < hi)).all() and (own.ridx == 1).all()
    # kept across lookups and scope reads: no second indexing
    rm.refresh_scope()
    rm.lookup(*_frame_ranges(frames))
    assert rm.nr_builds == 1


def _reference_find(vpn, pfn, a, b):
    """Plain Python: every (pfn, range) of frames mapped in ranges [a, b), and the vaddrs
    mapping each frame."""
    where = {}
    for v, f in zip(vpn, pfn):
        where.setdefault(f, set()).add(v)
    out = set()
    for r, (lo, hi) in enumerate(zip(a, b)):
        out |= {(f, r) for f in range(lo, hi) if f in where}
    return out, where


@pytest.mark.parametrize("seed", range(6))
def test_extents_find_matches_a_plain_reference(seed):
    """Runs of pages contiguous both ways, frames mapped twice, PFNs past 2**32 and vaddrs
    spread over more than 256 high-bit values: find() returns what a dict would."""
    rng = np.random.default_rng(seed)
    n = 3000
    vpn = np.sort(rng.choice(1 << 20, n, replace=False)).astype(np.uint64)
    if seed % 3 == 1:
        vpn = vpn + (rng.integers(0, 300, n).astype(np.uint64) << np.uint64(32))
        vpn.sort()
    pfn = np.empty(n, np.uint64)
    pfn[0] = 1000
    for i in range(1, n):          # mostly runs, sometimes a jump, sometimes a repeat
        r = rng.random()
        pfn[i] = pfn[i - 1] + 1 if r < 0.7 else rng.integers(0, 6000) if r < 0.95 \
            else pfn[rng.integers(0, i)]
    if seed % 3 == 2:
        pfn += np.uint64(1 << 33)
    ext = Extents(*runs_of(vpn, pfn))
    base = int(pfn.min())
    a = np.sort(rng.integers(base, base + 7000, 40)).astype(np.uint64)
    b = a + rng.integers(0, 400, 40).astype(np.uint64)
    fr, vp, r = ext.find(a, b)
    want, where = _reference_find(vpn.tolist(), pfn.tolist(), a.tolist(), b.tolist())
    got = set(zip(fr.tolist(), r.tolist()))
    assert len(got) == len(fr) and got == want
    assert all(v in where[f] for f, v in zip(fr.tolist(), vp.tolist()))    # one of its vaddrs
    # 11 bytes per extent; a u64 PFN past 2**32 frames, a u64 vaddr past 256 high parts
    per = 11 + (4 if seed % 3 == 2 else 0) + (3 if seed % 3 == 1 else 0)
    assert ext.nbytes <= per * len(ext) + 8 * 256


def test_index_is_the_same_whatever_the_block_size(make_child):
    """The build reads pagemap in blocks (bounded memory); block edges change nothing: the
    child's buffer pages are found at their vaddrs, each frame once."""
    c = make_child(1000)
    c.touch(0, 300)
    c.touch(500, 1000)
    buf = frames_of(c)
    want = {int(buf[k]): c.addr + k * PAGE for k in [*range(300), *range(500, 1000)]}
    a, b = np.array([0], np.uint64), np.array([1 << 40], np.uint64)
    with Pagemap(c.pid) as pm:
        for blocks in (1 << 16, 7, 512):
            f, v, _ = index_process(pm, block_pages=blocks).find(a, b)
            assert len(np.unique(f)) == len(f)
            got = dict(zip(f.tolist(), (v * np.uint64(PAGE)).tolist()))
            assert {k: got.get(k) for k in want} == want, blocks


def test_frames_of_several_processes_and_shared_pages(make_child, tmp_path):
    """Two children with their own pages and two sharing one file's page cache: every frame
    is found once, with an owner that maps it at the vaddr returned."""
    path = tmp_path / "shared"
    path.write_bytes(os.urandom(64 * PAGE))
    a, b = make_child(100), make_child(100)
    s1, s2 = make_child(64, path), make_child(64, path)
    for c in (a, b, s1, s2):
        c.touch()
    shared = frames_of(s1)
    assert (frames_of(s2) == shared).all()
    want = {int(f): a.pid for f in frames_of(a)} | {int(f): b.pid for f in frames_of(b)}
    frames = np.array(sorted(set(want) | set(shared.tolist())), np.uint64)
    rm = owner_index([a.pid, b.pid, s1.pid, s2.pid])
    own = rm.lookup(*_frame_ranges(frames))
    assert sorted(own.pfn.tolist()) == frames.tolist()           # each frame once
    for f, p in zip(own.pfn.tolist(), own.pid.tolist()):
        assert p == want[f] if f in want else p in (s1.pid, s2.pid)
    for p in set(own.pid.tolist()):
        sel = own.pid == p
        assert (_mapped_now(p, own.vaddr[sel]) == own.pfn[sel]).all()


def test_candidates_narrowed_by_memcg(make_child):
    """A process in scope charged to another memcg than the frames is not even indexed;
    the memcg of the frames (kpagecgroup) lists the child among its processes."""
    c = make_child(64)
    c.touch()
    _drain_lru_batches(c)
    rm = owner_index([1, c.pid])
    if rm._memcg_map() is None:
        pytest.skip("no cgroup filesystem")
    with open("/proc/kpagecgroup", "rb") as f:
        f.seek(int(frames_of(c)[0]) * 8)
        ino = int.from_bytes(f.read(8), "little")
    assert c.pid in rm._procs_in([ino])
    if 1 in rm._procs_in([ino]):
        pytest.skip("pid 1 shares the children's memcg here")
    own = rm.lookup(*_frame_ranges(frames_of(c)))
    assert len(own) == 64 and set(rm.procs) == {c.pid}


def test_indexing_stops_once_every_frame_has_an_owner(make_child):
    """Candidates are indexed largest first, and only until the frames are all owned."""
    big, small = make_child(2048), make_child(16)
    big.touch()
    small.touch()
    for c in (big, small):
        _drain_lru_batches(c)
    rm = owner_index([small.pid, big.pid])
    own = rm.lookup(*_frame_ranges(frames_of(big)))
    assert len(own) == 2048 and set(rm.procs) == {big.pid}
    own = rm.lookup(*_frame_ranges(np.r_[frames_of(big)[:8], frames_of(small)]))
    assert len(own) == 24 and set(rm.procs) == {big.pid, small.pid}


def test_denied_processes_are_counted_not_reset(make_child):
    """A scope where every process is gone: counted as denied, and nothing indexed (the
    old map reset itself and zeroed the count exactly then)."""
    c = make_child(16)
    c.touch()
    _drain_lru_batches(c)                           # mapped LRU frames: owners looked for
    ranges = _frame_ranges(frames_of(c))
    rm = owner_index([2 ** 22 + 1])                # one process: no memcg narrowing
    own = rm.lookup(*ranges)
    assert len(own) == 0 and rm.nr_denied == 1 and rm.nr_pids == 0
    rm.lookup(*ranges)
    assert rm.nr_denied == 1                      # not retried until the scope is read again


def test_remapped_or_exited_owner_is_never_returned(make_child):
    """Between the indexing and a lookup the owner drops its pages and faults others, or
    exits: the stale entries are dropped by the verification, so every owner returned
    maps the frame now."""
    c, other = make_child(256), make_child(256)
    c.touch()
    old = frames_of(c)
    rm = owner_index([c.pid, other.pid], retry_s=3600)      # no re-indexing in this test
    assert len(rm.lookup(*_frame_ranges(old))) == 256
    c.cmd("drop")
    other.touch()                                  # may land on c's old frames
    c.touch()
    starts, ends = _frame_ranges(old)
    own = rm.lookup(starts, ends)
    assert _in_ranges(own.pfn, starts, ends).all()
    for p in set(own.pid.tolist()):
        sel = own.pid == p
        assert (_mapped_now(p, own.vaddr[sel]) == own.pfn[sel]).all()
    c.exit()
    own = rm.lookup(starts, ends)
    assert c.pid not in own.pid.tolist()
    rm.refresh_scope()
    assert c.pid not in rm.procs


def _migrate_hot_ctx(**kw):
    """A started context whose paddr backend (``kw``) migrates everything to node 0."""
    ops = PaddrOps(**kw)
    s = Scheme(AccessPattern(), action="migrate_hot", target_nid=0)
    t = Target(ranges=[(0, 1 << 40)])
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[s])
    ctx.start()
    return ops, ctx, t, s


def test_apply_after_owner_exit_moves_nothing(make_child):
    c = make_child(128)
    c.touch()
    frames = frames_of(c)
    ops, ctx, t, s = _migrate_hot_ctx(pids=[c.pid], rmap_retry_s=3600)
    assert ops.apply_scheme(ctx, t, s, *_frame_ranges(frames)).sz_applied == 128 * PAGE
    c.exit()
    res = ops.apply_scheme(ctx, t, s, *_frame_ranges(frames))
    assert res.sz_applied == 0 and res.sz_ops_filter_passed == 0
    ops.update(ctx)
    assert ops.rmap.nr_pids == 0
    ops.cleanup(ctx)


def test_new_faults_are_found_by_reindexing_at_most_once_per_retry(make_child):
    c = make_child(256)
    c.touch(0, 64)
    rm = owner_index([c.pid], retry_s=3600)
    assert len(rm.lookup(*_frame_ranges(frames_of(c)[:64]))) == 64
    c.touch(64, 256)                              # faults after the indexing
    starts, ends = _frame_ranges(frames_of(c)[64:])
    assert len(rm.lookup(starts, ends)) == 0 and rm.nr_builds == 1
    rm.retry_s = 0
    own = rm.lookup(starts, ends)
    assert len(own) == 192 and rm.nr_builds == 2 and rm.nr_retries == 1
    assert len(rm.lookup(starts, ends)) == 192 and rm.nr_builds == 2   # nothing missing


def test_index_memory_is_a_few_bytes_per_page(make_child):
    """Runs of physically contiguous pages share one 11-byte extent (20 bytes per page
    before); never more than 11 bytes per page plus a constant."""
    c = make_child(4096)
    c.touch()
    rm = owner_index([c.pid])
    rm.lookup(*_frame_ranges(frames_of(c)[:1]))
    po = rm.procs[c.pid]
    with open(f"/proc/{c.pid}/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) * 1024 // PAGE
    assert len(po.main) <= rss
    assert po.nbytes <= 11 * len(po.main) + 8 * len(po.main.his) + 64
    print(f"{len(po.main)} extents for {rss} present pages: {po.nbytes / rss:.2f} B/page")


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
    # no re-indexing on a miss within the test: it checks what stale entries do
    ops, ctx, t, s = _migrate_hot_ctx(pids=[c.pid], rmap_retry_s=3600)
    assert ops.rmap.nr_pids == 0                     # nothing indexed before it is needed
    # one range per frame of the child's buffer
    starts, ends = _frame_ranges(frames)
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 256 * PAGE and res.sz_ops_filter_passed == 256 * PAGE
    assert (res.region_sz_applied == PAGE).all()
    assert (query_pages(c.pid, np.arange(c.addr, c.end, PAGE)) == 0).all()
    # frames freed and re-faulted elsewhere: stale index entries move nothing
    c.cmd("drop")
    c.touch()
    moved = set(frames_of(c).tolist()) & set(frames.tolist())
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.nr_failed.get("stale", 0) >= 256 - len(moved)
    assert res.sz_applied <= len(moved) * PAGE
    # unmapped-reject filter passes the mapped anon pages, anon-reject none
    ops.rmap.retry_s = 0                     # the child faulted since: re-indexed on a miss
    starts, ends = _frame_ranges(frames_of(c))
    keep = Scheme(action="migrate_hot", target_nid=0,
                  filters=[Filter("unmapped", allow=False), Filter("anon", allow=True)])
    res = ops.apply_scheme(ctx, t, keep, starts, ends)
    assert res.sz_ops_filter_passed == 256 * PAGE and res.sz_applied == 256 * PAGE
    drop = Scheme(action="migrate_hot", target_nid=0, filters=[Filter("anon", allow=False)])
    res = ops.apply_scheme(ctx, t, drop, starts, ends)
    assert res.sz_ops_filter_passed == 0 and res.sz_applied == 0
    ops.cleanup(ctx)


def test_process_started_after_setup_is_found(make_child):
    """A process started after the scope was read owns frames nobody in scope maps: the
    lookup reads the scope again (at most once per rmap_retry_s) and indexes it."""
    ops, ctx, t, s = _migrate_hot_ctx(rmap_retry_s=60)   # every process: the default
    c = make_child(128)
    c.touch()
    starts, ends = _frame_ranges(frames_of(c))
    # within the rate limit: the scope is not read again, so no owner and nothing moves
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert res.sz_applied == 0 and c.pid not in ops.rmap.scope
    # the limit passed: the child is found and moved
    ops.rmap._scope_read_at -= ops.rmap_retry_s
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert c.pid in ops.rmap.procs and ops.nr_rmap_retries == 1
    assert res.sz_applied == 128 * PAGE and (res.region_sz_applied == PAGE).all()
    assert (query_pages(c.pid, np.arange(c.addr, c.end, PAGE)) == 0).all()
    # every mapped frame of the ranges has a known owner now: nothing re-read
    starts, ends = _frame_ranges(frames_of(c))
    ops.update(ctx)
    builds = ops.rmap.nr_builds
    res = ops.apply_scheme(ctx, t, s, starts, ends)
    assert ops.nr_rmap_retries == 1 and ops.rmap.nr_builds == builds
    assert res.sz_applied == 128 * PAGE
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
