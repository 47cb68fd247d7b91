"""edge-split: its Cython kernels against tests/reference_adapt.py, its invariants under
hypothesis, and what it is for (simulated memory, real core loop)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import reference as ref
import reference_adapt as refa
from damoncore import _adapt, _regions
from damoncore.core import Attrs, Context, KernelAdaptation, Target
from damoncore.core.adaptations import ADAPTATIONS, TRUSTED
from damoncore.core.edge_split import EdgeSplit, _Rates
from damoncore.core.regions import COLUMNS, Regions
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.presets import GiB, MiB, tiering_machine
from damoncore.sim.workloads import DEFAULT_BASE as BASE

PAGE = 4096
SEEDS = range(12)
COLS6 = ("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age")


def random_regions(seed, n, max_pages=512, max_nr=20, gaps=True):
    g = np.random.default_rng(seed)
    sizes = g.integers(1, max_pages, n) * PAGE
    gap = np.where(g.random(n) < 0.2, g.integers(1, 8, n) * PAGE, 0) if gaps else 0
    start = np.cumsum(np.concatenate([[PAGE], (sizes + gap)[:-1]])).astype(np.uint64)
    end = start + sizes.astype(np.uint64)
    nr = g.integers(0, max_nr + 1, n)
    return Regions(start, end, nr_accesses=nr, nr_accesses_bp=nr * 10000,
                   last_nr_accesses=g.integers(0, max_nr + 1, n), age=g.integers(0, 50, n))


def as_dicts(r):
    return [dict(zip(COLUMNS, vals)) for vals in zip(*(getattr(r, c).tolist() for c in COLUMNS))]


def cols(dicts):
    return {c: [d[c] for d in dicts] for c in COLS6}


def random_samples(seed, r, m=20):
    """Per sample, one address per region, accessed with a per-region pattern: none, all,
    a sub-range, or at random."""
    g = np.random.default_rng(seed + 1000)
    addrs = np.empty((m, r.nr), np.uint64)
    acc = np.empty((m, r.nr), np.uint8)
    kind = g.integers(0, 4, r.nr)
    lo = r.start + (r.end - r.start) // np.uint64(4)
    hi = r.start + (r.end - r.start) // np.uint64(2)
    for k in range(m):
        a = r.start + (g.random(r.nr) * (r.end - r.start).astype(float)).astype(np.uint64)
        a = np.minimum(a // np.uint64(PAGE) * np.uint64(PAGE), r.end - np.uint64(1))
        addrs[k] = a
        inside = (a >= lo) & (a < hi)
        acc[k] = np.select([kind == 0, kind == 1, kind == 2], [0, 1, inside],
                           g.random(r.nr) < 0.5).astype(np.uint8)
    return addrs, acc


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gains", [(6.0, 6.0), (6.0, 3.0), (0.0, 0.0)])
def test_sample_edges_matches_reference(seed, gains):
    r = random_regions(seed, 200, gaps=False)
    addrs, acc = random_samples(seed, r)
    cuts = np.empty(2 * r.nr, np.uint64)
    n = _adapt.sample_edges(r.start, r.end, addrs, acc, PAGE, cuts, *gains)
    smp = [list(zip(addrs[:, i].tolist(), acc[:, i].tolist())) for i in range(r.nr)]
    want = refa.sample_edges(list(zip(r.start.tolist(), r.end.tolist())), smp, PAGE, *gains)
    assert cuts[:n].tolist() == want
    assert n > 0 and np.all(np.diff(cuts[:n].astype(np.int64)) > 0)


def test_sample_edges_finds_a_hot_sub_range():
    """Samples accessed only in [40%, 60%) of a region: the cuts bracket that sub-range."""
    start, end = np.array([0], np.uint64), np.array([100 * MiB], np.uint64)
    addrs = (np.arange(20, dtype=np.uint64) * np.uint64(5 * MiB) + np.uint64(MiB))[:, None]
    acc = ((addrs >= 40 * MiB) & (addrs < 60 * MiB)).astype(np.uint8)
    cuts = np.empty(2, np.uint64)
    n = _adapt.sample_edges(start, end, addrs, acc, PAGE, cuts)
    assert n == 2
    assert 36 * MiB <= cuts[0] <= 41 * MiB and 56 * MiB <= cuts[1] <= 61 * MiB
    # the gap between the last idle and the first accessed sample goes to the hot piece
    assert cuts[0] < 38.5 * MiB and cuts[1] > 58.5 * MiB


def test_sample_edges_needs_evidence():
    """Agreeing samples, or one stray idle sample in an accessed region: no cut."""
    start, end = np.array([0, 100 * MiB], np.uint64), np.array([100 * MiB, 200 * MiB], np.uint64)
    addrs = np.stack([np.arange(20, dtype=np.uint64) * np.uint64(5 * MiB),
                      np.arange(20, dtype=np.uint64) * np.uint64(5 * MiB) + np.uint64(100 * MiB)],
                     axis=1)
    acc = np.zeros((20, 2), np.uint8)
    acc[:, 1] = 1
    acc[7, 1] = 0
    cuts = np.empty(4, np.uint64)
    assert _adapt.sample_edges(start, end, addrs, acc, PAGE, cuts) == 0
    with pytest.raises(ValueError, match="samples, regions"):
        _adapt.sample_edges(start, end, addrs[:, :1].copy(), acc[:, :1].copy(), PAGE, cuts)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nb", [1, 7, 64])
def test_rate_map_matches_reference(seed, nb):
    """rate_learn over three aggregations (decay between them), then region_rates, for
    regions with gaps and bins finer or coarser than the regions."""
    r = random_regions(seed, 60, gaps=True)
    total = r.total_size()
    bs = max(1, -(-total // nb))
    hits, trials = np.zeros(nb), np.zeros(nb)
    rh, rt = [0.0] * nb, [0.0] * nb
    regions = list(zip(r.start.tolist(), r.end.tolist()))
    for k in range(3):
        addrs, acc = random_samples(seed + 17 * k, r)
        _adapt.rate_learn(hits, trials, r.start, r.end, addrs, acc, bs, 0.9)
        refa.rate_learn(rh, rt, regions,
                        [list(zip(addrs[:, i].tolist(), acc[:, i].tolist()))
                         for i in range(r.nr)], bs, 0.9)
    assert hits.tolist() == rh and trials.tolist() == rt
    assert trials.sum() == pytest.approx(20 * r.nr * (1 + 0.9 + 0.81))
    h, m = np.empty(r.nr), np.empty(r.nr)
    _adapt.region_rates(r.start, r.end, hits, trials, bs, h, m)
    assert list(zip(h.tolist(), m.tolist())) == refa.region_rates(regions, rh, rt, bs)
    with pytest.raises(ValueError, match="same, non-zero length"):
        _adapt.rate_learn(hits, np.zeros(nb + 1), r.start, r.end, addrs, acc, bs, 0.9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("join_z, cold_z", [(1.5, None), (-1.5, 1.5), (0.0, 0.5)])
def test_pool_runs_matches_reference(seed, join_z, cold_z):
    """Random long-run rates around the bar, random counts: the same pooled regions and
    restored boundaries as the reference, with joins and cold runs on and off."""
    r = random_regions(seed, 300, gaps=True)
    g = np.random.default_rng(seed + 7)
    m = g.choice([0.0, 10.0, 40.0, 100.0, 400.0, 4000.0], r.nr)
    h = np.floor(m * np.clip(g.normal(0.5, 0.25, r.nr), 0, 1))
    d = as_dicts(r)
    want, want_restore = refa.pool_runs(d, list(zip(h.tolist(), m.tolist())), 20, 0.5, 1.5,
                                        0.9, join_z, cold_z)
    restore = np.empty(r.nr, np.uint64)
    k, nr = _adapt.pool_runs(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                             r.last_nr_accesses, r.age, h, m, 20, 0.5, 1.5, 0.9, restore,
                             join_z, cold_z is not None, cold_z or 0.0)
    r.truncate(k)
    assert cols(as_dicts(r)) == cols(want)
    assert restore[:nr].tolist() == want_restore
    assert k < len(d) and nr > 0          # the seeds do pool something


def test_pool_runs_keeps_each_run_on_its_side():
    """A hot run whose joins would read under the bar pools its sure regions alone; a cold
    run that would read over it is not pooled; a join beside no sure region stays alone."""
    mib = 1 << 20
    n = 6
    start = np.arange(n, dtype=np.uint64) * np.uint64(mib)
    end = start + np.uint64(mib)
    def run(nr, p, m=1000.0):
        nr = np.array(nr, np.uint32)
        cols_ = [start.copy(), end.copy(), nr.copy(), nr * np.uint32(10000), nr.copy(),
                 np.zeros(n, np.uint32)]
        restore = np.empty(n, np.uint64)
        trials = np.full(n, m)
        k, _ = _adapt.pool_runs(*cols_, np.array(p) * trials, trials, 20, 0.5, 1.5, 0.9,
                                restore, -1.5, True, 1.5)
        return [(int(s // mib), int(e // mib), int(a)) for s, e, a in
                zip(cols_[0][:k], cols_[1][:k], cols_[2][:k])]
    # two sure, then joins reading 3 of 20: all six would read 7, under 10
    assert run([20, 20, 3, 3, 3, 3], [0.9, 0.9, 0.49, 0.49, 0.49, 0.49]) == [
        (0, 2, 20), (2, 3, 3), (3, 4, 3), (4, 5, 3), (5, 6, 3)]
    # joins reading 9: the run reads 12, pooled whole
    assert run([20, 20, 9, 9, 9, 9], [0.9, 0.9, 0.49, 0.49, 0.49, 0.49]) == [(0, 6, 12)]
    # joins alone (no sure region): nothing pooled
    assert run([9] * 6, [0.49] * 6) == [(i, i + 1, 9) for i in range(6)]
    # cold regions reading 9 pool; with two reading 14 the run would read 10.6: not pooled
    assert run([9] * 6, [0.4] * 6) == [(0, 6, 9)]
    assert run([9, 9, 14, 14, 9, 14], [0.4] * 6) == [(i, i + 1, a) for i, a in
                                                     enumerate([9, 9, 14, 14, 9, 14])]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("room", [1, 5, 1000])
def test_report_edges_matches_reference(seed, room):
    """Random regions, cuts (some on boundaries, outside or repeated), pooled boundaries
    and samples: the same reported regions as the reference, or none."""
    r = random_regions(seed, 200, gaps=True)
    g = np.random.default_rng(seed + 13)
    lo, hi = int(r.start[0]), int(r.end[-1])
    cuts = np.sort(np.concatenate([g.integers(lo - PAGE, hi + PAGE, 60),
                                   r.start[g.integers(0, r.nr, 5)]]).astype(np.uint64))
    pooled = np.sort(g.choice(r.start[1:], 10, replace=False)).astype(np.uint64)
    addrs = g.integers(lo, hi, (20, 300)).astype(np.uint64)
    acc = (g.random((20, 300)) < 0.5).astype(np.uint8)
    d = as_dicts(r)
    samples = list(zip(addrs.ravel().tolist(), acc.ravel().tolist()))
    want = refa.report_edges(d, cuts.tolist(), pooled.tolist(), samples, 20, 3, room)
    got = _adapt.report_edges(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                              r.last_nr_accesses, r.age, cuts, pooled, addrs, acc, 20, 3,
                              room)
    assert want is not None and got is not None        # the seeds do cut something
    cols_, used = got
    out = r.copy()
    out.replace(*cols_)
    assert used == want[1] <= room
    assert cols(as_dicts(out)) == cols(want[0])
    assert _adapt.report_edges(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, cuts, pooled, addrs, acc, 20, 3,
                               0) is None


def test_report_edges_is_report_only():
    """The report's pieces change the snapshots, not the adaptation: the same regions are
    sampled with it and without (checks per sample equal in every aggregation), and every
    snapshot covers at least as much of the truly hot bytes; moved ranges show sooner.
    (Without the flanks placed from the snapshot, which use the pieces on purpose.)"""
    from damoncore.evaluation.run import COLUMNS, Cell, run_cell
    ix = {c: i for i, c in enumerate(COLUMNS)}
    on = run_cell(Cell("edge-split", "small-moving", 3, duration_us=15_000_000,
                       options={"snapshot_flanks": False}))
    off = run_cell(Cell("edge-split", "small-moving", 3, duration_us=15_000_000,
                        options={"report_edges": False, "snapshot_flanks": False}))
    assert len(on) == len(off) == 150
    assert [x[ix["checks_per_sample"]] for x in on] == \
        [x[ix["checks_per_sample"]] for x in off]
    assert all(a[ix["coverage"]] >= b[ix["coverage"]] - 1e-9 for a, b in zip(on, off))
    assert sum(a[ix["coverage"]] > b[ix["coverage"]] + 0.05 for a, b in zip(on, off)) >= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_edge_pieces_matches_reference(seed):
    r = random_regions(seed, 300, gaps=True)
    g = np.random.default_rng(seed + 11)
    cuts = np.unique(g.integers(int(r.start[0]), int(r.end[-1]), 40).astype(np.uint64))
    lim = np.uint64(64 * PAGE)
    extra, total = _adapt.edge_pieces(r.start, r.end, r.last_nr_accesses, cuts, 20, lim)
    want = refa.edge_pieces(list(zip(r.start.tolist(), r.end.tolist())),
                            r.last_nr_accesses.tolist(), cuts.tolist(), 20, int(lim))
    assert extra.tolist() == want and total == sum(want) > 0


def test_pooled_runs_report_as_one_region_and_come_back_as_pieces():
    """Regions confidently hot in the long run are reported as one region with their
    samples pooled; the split restores the pieces they were sampled as."""
    size = 64 * MiB
    es = EdgeSplit()
    start = np.arange(8, dtype=np.uint64) * np.uint64(size // 8) + np.uint64(BASE)
    nr = np.array([20, 18, 12, 9, 16, 0, 0, 0], np.uint32)
    r = Regions(start.copy(), start + np.uint64(size // 8), nr_accesses=nr, last_nr_accesses=nr)
    st = es._rates[0] = _Rates(size, 64)
    rate = np.repeat([0.99, 0.9, 0.7, 0.45, 0.8, 0.0, 0.0, 0.0], 8)
    st.trials[:] = 400
    st.hits[:] = rate * 400
    es._pool(0, r, 20)
    # [0, 3) pooled (the 0.45 region is not confidently hot), [4] alone, the cold ones alone
    assert r.nr == 6
    assert r.start[0] == start[0] and r.end[0] == start[3]
    assert r.nr_accesses[0] == (20 + 18 + 12) // 3
    assert es._restore[0].tolist() == [int(start[1]), int(start[2])]
    assert r.invariant_error() is None


@pytest.mark.parametrize("seed", SEEDS)
def test_merge_regions_matches_reference(seed):
    r = random_regions(seed, 400, gaps=True)
    d = as_dicts(r)
    thres, lim, mixed = 2, 64 * PAGE, 8 * PAGE
    n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, thres, lim, mixed, 20)
    r.truncate(n)
    assert cols(as_dicts(r)) == cols(ref.merge_regions_of(d, thres, lim, mixed, 20))


def test_merge_regions_is_the_kernels_with_a_large_mixed_limit():
    for seed in SEEDS:
        a, b = random_regions(seed, 300), random_regions(seed, 300)
        na = _regions.merge_regions(a.start, a.end, a.nr_accesses, a.nr_accesses_bp,
                                    a.last_nr_accesses, a.age, 2, 1 << 40, 1 << 40, 20)
        nb = _regions.merge_regions(b.start, b.end, b.nr_accesses, b.nr_accesses_bp,
                                    b.last_nr_accesses, b.age, 2, 1 << 40)
        a.truncate(na)
        b.truncate(nb)
        assert cols(as_dicts(a)) == cols(as_dicts(b))


@pytest.mark.parametrize("seed", SEEDS)
def test_split_at_matches_reference(seed):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 150)
    pieces = g.integers(0, 6, r.nr).astype(np.uint32)
    cuts = np.unique(g.integers(int(r.start[0]), int(r.end[-1]), 120).astype(np.uint64)
                     // np.uint64(PAGE) * np.uint64(PAGE))
    rng = np.array([seed * 3 + 5], np.uint64)
    out = Regions()
    out.replace(*_adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                 r.last_nr_accesses, r.age, cuts, pieces, PAGE, rng))
    pyrng = ref.Rng(seed * 3 + 5)
    want = refa.split_at(as_dicts(r), cuts.tolist(), pieces.tolist(), PAGE, pyrng)
    assert cols(as_dicts(out)) == cols(want)
    assert int(rng[0]) == pyrng.state
    assert out.covered() == r.covered()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("room", [0, 3, 40, 1000])
def test_plan_split_matches_reference(seed, room):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 60, max_pages=4096)
    ev = np.unique(g.integers(int(r.start[0]), int(r.end[-1]), 30).astype(np.uint64)
                   // np.uint64(PAGE) * np.uint64(PAGE))
    cuts, pieces = _adapt.plan_split(r.start, r.end, r.last_nr_accesses, ev, room, 20, PAGE, 4)
    want_c, want_p = refa.plan_split(list(zip(r.start.tolist(), r.end.tolist())),
                                     r.last_nr_accesses.tolist(), ev.tolist(), room, 20, PAGE, 4)
    assert cuts.tolist() == want_c
    assert pieces.tolist() == want_p
    # within the room: every cut and every extra piece is one more region
    assert len(cuts) + int(pieces.sum()) - r.nr <= max(room, 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_flanks_match_reference(seed):
    """Counts in blocks (runs of similar regions, as after even splits) and at random."""
    g = np.random.default_rng(seed)
    r = random_regions(seed, 120, gaps=seed % 2 == 0)
    count = np.repeat(g.integers(0, 21, 30), 4)[:r.nr] if seed % 3 else \
        g.integers(0, 21, r.nr)
    count = count.astype(np.uint32)
    cuts = np.unique(g.integers(int(r.start[0]), int(r.end[-1]), 25).astype(np.uint64)
                     // np.uint64(PAGE) * np.uint64(PAGE))
    regions = list(zip(r.start.tolist(), r.end.tolist()))
    got, _ = _adapt.flanks(r.start, r.end, count, 20, PAGE, np.zeros(0, np.uint64))
    assert got.tolist() == sorted(set(refa.flanks(regions, count.tolist(), 20, PAGE)))
    for min_host in (0, 100 * PAGE, 400 * PAGE):
        got, large = _adapt.flanks(r.start, r.end, count, 20, PAGE, cuts, min_host)
        assert (got.tolist(), large) == refa.flanks_and_cuts(regions, count.tolist(), 20,
                                                             PAGE, cuts.tolist(), min_host)
        assert np.all(np.diff(got.astype(np.int64)) > 0)


def test_flank_is_sized_by_the_hot_run_not_its_last_piece():
    """A 32 MiB hot range in four even pieces beside a 64 MiB idle region: the flank reaches
    8 MiB into the idle one (a quarter of the run), not 2 MiB (a quarter of one piece)."""
    bounds = [0, 8, 16, 24, 32, 96]
    start = np.array(bounds[:-1], np.uint64) * np.uint64(MiB)
    end = np.array(bounds[1:], np.uint64) * np.uint64(MiB)
    count = np.array([20, 19, 20, 18, 0], np.uint32)
    got, _ = _adapt.flanks(start, end, count, 20, PAGE, np.zeros(0, np.uint64))
    assert got.tolist() == [40 * MiB]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [0, 1, 7, 10_000])
def test_merge_small_matches_reference(seed, k):
    r = random_regions(seed, 150, max_pages=64, gaps=seed % 2 == 0)
    want = refa.merge_small(as_dicts(r), 40 * PAGE, k)
    out = r.copy()
    n = _adapt.merge_small(out.start, out.end, out.nr_accesses, out.nr_accesses_bp,
                           out.last_nr_accesses, out.age, 40 * PAGE, k)
    out.truncate(n)
    assert cols(as_dicts(out)) == cols(want)
    assert r.nr - n <= k and out.covered() == r.covered()
    assert all(b - a <= 40 * PAGE for a, b in zip(out.start.tolist(), out.end.tolist())
               if (a, b) not in set(zip(r.start.tolist(), r.end.tolist())))
    if k >= 10_000 and seed % 2:    # no gaps, no limit on merges: every pair left is big
        assert all(int(out.end[i + 1] - out.start[i]) > 40 * PAGE for i in range(n - 1))


def test_cuts_in_large_regions_get_room_from_small_ones():
    """The budget is spent on tiny regions reading hot and idle in turn (a heap), and the
    samples show an edge in a large idle region: the split merges tiny neighbours (unions
    within total / (16 x budget)) to make room for the cuts in large regions, as many as
    those cuts need and no more; with room to spare, nothing merges."""
    KiB = 1 << 10
    m = tiering_machine(4 * GiB, 4 * GiB, seed=1)
    m.add_workload(Workload.moving_hot(1024 * MiB, 32 * MiB, [(0, 0)]))
    es = EdgeSplit(budget=40)
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)],
                  Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=8,
                        max_nr_regions=1000), seed=1, adaptation=es)
    big = [(BASE, BASE + 512 * MiB), (BASE + 512 * MiB, BASE + 1000 * MiB)]
    tiny = [(BASE + 1000 * MiB + j * 64 * KiB, BASE + 1000 * MiB + (j + 1) * 64 * KiB)
            for j in range(38)]
    bounds = big + tiny + [(tiny[-1][1], BASE + 1024 * MiB)]
    last = [0, 0] + [20 * ((j + 1) % 2) for j in range(38)] + [0]

    def regions():
        return Regions(np.array([a for a, _ in bounds], np.uint64),
                       np.array([b for _, b in bounds], np.uint64),
                       last_nr_accesses=np.array(last), age=np.zeros(len(bounds)))
    total = 1024 * MiB
    lim = total // (16 * 40)                                    # 1.6 MiB
    edges = np.array([BASE + 300 * MiB, BASE + 332 * MiB, BASE + 1000 * MiB + 100 * KiB],
                     np.uint64)     # two in a 512 MiB region, one in a tiny one
    # cuts in large regions: the two edges, and the flank into the 488 MiB region beside
    # the first tiny one (hot); the flanks into tiny regions do not count
    r = regions()
    assert r.nr == 41
    assert es._free_room(ctx, r, edges, 0, total, 20) == 3
    assert r.nr == 38 and r.covered() == regions().covered()
    changed = [(a, b) for a, b in zip(r.start.tolist(), r.end.tolist()) if (a, b) not in bounds]
    assert changed and all(b - a <= lim for a, b in changed)
    assert [(int(a), int(b)) for a, b in zip(r.start[:2], r.end[:2])] == big
    r = regions()
    assert es._free_room(ctx, r, edges, 2, total, 20) == 1 and r.nr == 40
    r = regions()
    assert es._free_room(ctx, r, edges, 3, total, 20) == 0 and r.nr == 41


def test_split_at_without_cuts_or_pieces_changes_nothing():
    r = random_regions(1, 50)
    out = _adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses,
                          r.age, np.zeros(0, np.uint64), np.ones(r.nr, np.uint32), PAGE,
                          np.array([1], np.uint64))
    for c, col in zip(COLS6, out):
        assert col.tolist() == getattr(r, c).tolist()


# --- invariants under hypothesis ------------------------------------------------------------

@st.composite
def region_sets(draw):
    n = draw(st.integers(1, 40))
    sizes = draw(st.lists(st.integers(1, 64), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 1, 3]), min_size=n, max_size=n))
    nr = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    last = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    start = np.cumsum([1] + [s + g for s, g in zip(sizes, gaps)][:-1]) * PAGE
    end = start + np.array(sizes) * PAGE
    return Regions(start, end, nr_accesses=nr, nr_accesses_bp=np.array(nr) * 10000,
                   last_nr_accesses=last, age=[0] * n)


@settings(max_examples=150, deadline=None)
@given(region_sets(), st.integers(0, 2**32), st.integers(0, 60), st.booleans())
def test_kernels_keep_the_invariants(r, seed, room, accessed_minority):
    covered, n0 = r.covered(), r.nr
    g = np.random.default_rng(seed)
    m = 20
    addrs = (r.start + (g.random((m, r.nr)) * (r.end - r.start)).astype(np.uint64))
    acc = (g.random((m, r.nr)) < (0.2 if accessed_minority else 0.8)).astype(np.uint8)
    ev = np.empty(2 * r.nr, np.uint64)
    k = _adapt.sample_edges(r.start, r.end, addrs, acc, PAGE, ev, 0.0, 0.0)
    ev = ev[:k]
    assert np.all(np.diff(ev.astype(np.int64)) > 0)
    cuts, pieces = _adapt.plan_split(r.start, r.end, r.last_nr_accesses, ev, room, m, PAGE, 4)
    r.replace(*_adapt.split_at(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, cuts, pieces, PAGE,
                               np.array([seed], np.uint64)))
    assert r.invariant_error() is None and r.covered() == covered
    assert r.nr <= n0 + max(0, room)
    assert np.all((r.start % PAGE == 0) & (r.end % PAGE == 0))
    n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, 2, 16 * PAGE, 4 * PAGE, m)
    r.truncate(n)
    assert r.invariant_error() is None and r.covered() == covered


class CheckedEdgeSplit(EdgeSplit):
    """A subclass: the core checks its regions after every merge and split."""

    name = "edge-split-checked"


def _moving_machine(size, hot, offsets, seed):
    """``hot`` bytes jumping to each of ``offsets`` in turn, one second each."""
    m = tiering_machine(2 * size, 2 * size, seed=seed)
    m.add_workload(Workload.moving_hot(size, hot, [(i * 1_000_000, o)
                                                   for i, o in enumerate(offsets)],
                                       hot_rate=500.0, cold_rate=0.1))
    return m


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), lo=st.integers(3, 40), extra=st.integers(0, 100),
       hot_mib=st.integers(1, 64), off_mib=st.lists(st.integers(0, 440), min_size=1,
                                                    max_size=3))
def test_the_core_finds_no_broken_regions(seed, lo, extra, hot_mib, off_mib):
    """A checked subclass through the real loop: any broken invariant raises
    AdaptationError; the count never exceeds max_nr_regions after a split."""
    size = 512 * MiB
    m = _moving_machine(size, hot_mib * MiB, [o * MiB for o in off_mib], seed)
    attrs = Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=lo,
                  max_nr_regions=lo + extra)
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)], attrs, seed=seed,
                  adaptation=CheckedEdgeSplit())
    counts = []
    ctx.add_callback(lambda c, s: counts.append(c.nr_regions()))
    ctx.run(len(off_mib) * 1_000_000)
    ctx.targets[0].regions.check_invariants([(BASE, BASE + size)])
    assert counts and max(counts) <= max(attrs.max_nr_regions, attrs.min_nr_regions)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), sz_kib=st.integers(4, 4096))
def test_schemes_that_split_regions_keep_them_whole(seed, sz_kib):
    """A quota-limited scheme splits regions between the merge (the report's pieces and
    pooled runs) and the split (which puts them back): the regions stay whole and the
    quota holds."""
    from damoncore import AccessPattern, Quota, Scheme
    from fakes import HotRangeOps
    ops = HotRangeOps(hot=[(8 * MiB, 12 * MiB), (40 * MiB, 41 * MiB)], p_cold=0.05, seed=seed)
    s = Scheme(AccessPattern(), "pageout", quota=Quota(sz_bytes=sz_kib * 1024,
                                                       reset_interval_ms=100))
    ctx = Context(ops, [Target(ranges=[(0, 64 * MiB)])],
                  Attrs(sample_us=5000, aggr_us=100_000), schemes=[s], seed=seed,
                  adaptation=CheckedEdgeSplit())
    ctx.run(3_000_000)
    ctx.targets[0].regions.check_invariants([(0, 64 * MiB)])
    assert s.stats.sz_tried <= 30 * sz_kib * 1024


# --- behaviour ---------------------------------------------------------------------------

def test_edge_split_is_selectable_and_trusted():
    assert ADAPTATIONS["edge-split"] is EdgeSplit and EdgeSplit in TRUSTED
    assert CheckedEdgeSplit not in TRUSTED
    assert issubclass(EdgeSplit, KernelAdaptation)


def _found_after_move(adaptation, seed):
    """8 GiB, 32 MiB hot range moving once: aggregations until 90% of it reads hot."""
    size, hot = 8 * GiB, 32 * MiB
    g = np.random.default_rng(seed)
    offs = [int(g.integers(0, (size - hot) // PAGE)) * PAGE for _ in range(2)]
    m = tiering_machine(2 * size, 2 * size, seed=seed)
    m.add_workload(Workload.moving_hot(size, hot, [(0, offs[0]), (2_000_000, offs[1])],
                                       hot_rate=500.0, cold_rate=0.1))
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)],
                  Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=10,
                        max_nr_regions=1000), seed=seed, adaptation=adaptation)
    found = []

    def cb(c, snap):
        t = snap.targets[0]
        if snap.end_us <= 2_000_000 or found:
            return
        lo, hi = BASE + offs[1], BASE + offs[1] + hot
        ov = np.clip(np.minimum(t.end, hi).astype(np.int64)
                     - np.maximum(t.start, lo).astype(np.int64), 0, None)
        if ov[t.nr_accesses >= 10].sum() >= 0.9 * hot:
            found.append((snap.end_us - 2_000_000) // 100_000)
    ctx.add_callback(cb)
    ctx.run(4_000_000)
    return found[0] if found else 99


def test_finds_a_small_moved_range_sooner_than_the_kernels():
    """The reason it exists: 0.4% of the space, found within 3 aggregations of a move in
    nearly every seed (20 seeds: 18 within 3, two in 4; the kernel's: 1 within 3, two
    never in the 2 s), and never late."""
    es = np.array([_found_after_move(EdgeSplit(), s) for s in range(1, 21)])
    kernel = np.array([_found_after_move(KernelAdaptation(), s) for s in range(1, 21)])
    assert (es <= 3).mean() >= 0.9 and es.max() <= 4, es
    assert (kernel <= 3).mean() <= 0.2 and es.sum() < kernel.sum() / 2, (es, kernel)


def test_two_targets_and_one_that_exits():
    """The budget is shared by size; a target that exits mid-run stops being sampled and
    split, the other goes on; the core checks every merge and split."""
    m = tiering_machine(4 * GiB, 4 * GiB, seed=7)
    m.add_workload(Workload.moving_hot(1 * GiB, 16 * MiB, [(0, 0), (1_000_000, 512 * MiB)],
                                       pid=1000))
    m.add_workload(Workload.moving_hot(256 * MiB, 8 * MiB, [(0, 64 * MiB)], pid=1001,
                                       exit_us=1_500_000))
    ctx = Context(SimOps(m, space="vaddr"), [Target(pid=1000), Target(pid=1001)],
                  Attrs(sample_us=5000, aggr_us=100_000, min_nr_regions=10,
                        max_nr_regions=1000), seed=7, adaptation=CheckedEdgeSplit())
    seen = []
    ctx.add_callback(lambda c, s: seen.append([(t.pid, len(t.start)) for t in s.targets]))
    ctx.run(3_000_000)
    assert ctx.targets[1].obsolete and not ctx.targets[0].obsolete
    assert all(len(x) == 2 for x in seen[:14]) and all(len(x) == 1 for x in seen[-10:])
    # both were split beyond their initial regions while alive, within the budget (50)
    assert max(dict(x)[1001] for x in seen[:14]) > 2
    assert all(sum(n for _, n in x) <= 50 for x in seen)
    ctx.targets[0].regions.check_invariants([(BASE, BASE + GiB)])
