"""Differential tests: every Cython kernel against tests/reference.py, across seeds."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import reference as ref
from damoncore import _regions
from damoncore.core.regions import COLUMNS, Regions

PAGE = 4096


def random_regions(seed, n, max_pages=64, max_nr=20):
    g = np.random.default_rng(seed)
    sizes = g.integers(1, max_pages, n) * PAGE
    gaps = np.where(g.random(n) < 0.2, g.integers(1, 8, n) * PAGE, 0)
    start = np.cumsum(np.concatenate([[PAGE], (sizes + gaps)[:-1]])).astype(np.uint64)
    end = start + sizes.astype(np.uint64)
    nr = g.integers(0, max_nr + 1, n)
    return Regions(start, end, nr_accesses=nr, nr_accesses_bp=nr * 10000,
                   last_nr_accesses=g.integers(0, max_nr + 1, n), age=g.integers(0, 50, n))


def as_dicts(r):
    return [dict(zip(COLUMNS, vals)) for vals in zip(*(getattr(r, c).tolist() for c in COLUMNS))]


def cols(dicts, names=("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age")):
    return {c: [d[c] for d in dicts] for c in names}


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_pick_sampling_addrs(seed):
    r = random_regions(seed, 300)
    rng = np.array([seed * 7 + 1], np.uint64)
    _regions.pick_sampling_addrs(r.start, r.end, r.sampling_addr, rng)
    d = as_dicts(r)
    pyrng = ref.Rng(seed * 7 + 1)
    ref.pick_sampling_addrs(d, pyrng)
    assert r.sampling_addr.tolist() == [x["sampling_addr"] for x in d]
    assert int(rng[0]) == pyrng.state
    assert np.all((r.sampling_addr >= r.start) & (r.sampling_addr < r.end))


@pytest.mark.parametrize("seed", SEEDS)
def test_update_accesses(seed):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 500)
    r.nr_accesses_bp[:] = g.integers(0, 200000, r.nr)
    acc = (g.random(r.nr) < 0.4).astype(np.uint8)
    d = as_dicts(r)
    mx = _regions.update_accesses(r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses, acc, 20)
    assert mx == ref.update_accesses(d, acc.tolist(), 20)
    assert cols(as_dicts(r)) == cols(d)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("thres", [0, 1, 2, 5])
def test_merge(seed, thres):
    r = random_regions(seed, 400, max_nr=6)
    d = as_dicts(r)
    sz_limit = int(r.total_size()) // 10
    n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, thres, sz_limit)
    r.truncate(n)
    want = ref.merge_regions_of(d, thres, sz_limit)
    assert cols(as_dicts(r)) == cols(want)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nr_subs", [2, 3])
def test_split(seed, nr_subs):
    r = random_regions(seed, 300)
    d = as_dicts(r)
    rng = np.array([seed + 99], np.uint64)
    out = _regions.split_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                 r.last_nr_accesses, r.age, nr_subs, PAGE, rng)
    want = ref.split_regions_of(d, nr_subs, PAGE, ref.Rng(seed + 99))
    got = Regions(*out)
    assert cols(as_dicts(got)) == cols(want)
    assert got.nr > r.nr


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [(100, 100), (0, 100), (100, 0), (0, 0), (7, 3)])
def test_hot_scores(seed, weights):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 300)
    r.nr_accesses_bp[:] = g.integers(0, 21, r.nr) * 10000
    r.age[:] = g.integers(0, 100000, r.nr)
    out = np.empty(r.nr, np.uint8)
    _regions.hot_scores(r.nr_accesses_bp, r.age, 20, 100000, *weights, out)
    want = [ref.hot_score(x, 20, 100000, *weights) for x in as_dicts(r)]
    assert out.tolist() == want


@pytest.mark.parametrize("seed", SEEDS)
def test_pattern_histogram_min_score(seed):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 300)
    bounds = (PAGE * 4, PAGE * 40, 2, 15, 3, 40)
    out = np.empty(r.nr, np.uint8)
    _regions.pattern_mask(r.start, r.end, r.nr_accesses_bp, r.age, *bounds, out)
    d = as_dicts(r)
    assert out.astype(bool).tolist() == [ref.pattern_match(x, *bounds) for x in d]
    scores = g.integers(0, 100, r.nr).astype(np.uint8)
    hist = np.zeros(100, np.uint64)
    _regions.score_histogram(r.start, r.end, scores, out, hist)
    want = ref.score_histogram(d, scores.tolist(), out.tolist())
    assert hist.tolist() == want
    for esz in [1, PAGE, int(hist.sum()) // 3, int(hist.sum()), int(hist.sum()) * 2]:
        assert _regions.min_score_for(hist, esz) == ref.min_score_for(want, esz)


@pytest.mark.parametrize("seed", SEEDS)
def test_mark_reported(seed):
    g = np.random.default_rng(seed)
    r = random_regions(seed, 200)
    m = 2000
    addr = g.integers(0, int(r.end[-1]) + PAGE, m).astype(np.uint64)
    size = g.choice([0, 1, 8, PAGE, 3 * PAGE], m).astype(np.uint64)
    keep = (g.random(m) < 0.8).astype(np.uint8)
    acc = np.zeros(r.nr, np.uint8)
    _regions.mark_reported(r.start, r.end, addr, size, keep, acc)
    want = ref.mark_reported(as_dicts(r), list(zip(addr.tolist(), size.tolist(), keep.tolist())))
    assert acc.tolist() == want


@settings(max_examples=300, deadline=None)
@given(last=st.integers(1, 1 << 40), score=st.integers(0, 40000))
def test_feed_loop_matches_reference(last, score):
    from damoncore.feedback import feed_loop_next_input
    assert feed_loop_next_input(last, score) == ref.feed_loop_next_input(last, score)
