"""Cython region kernels vs. the plain-Python reference, 10 to 100k regions.

    PYTHONPATH=src:tests python -m pytest benchmarks/bench_regions.py --benchmark-enable \
        --benchmark-group-by=param:nr -q
    PYTHONPATH=src:tests python benchmarks/bench_regions.py      # ratios table, one run

The "sample step" is what the core does every sample interval (pick sampling addresses,
apply the access-check results); "aggregation" is merge + reset + split.
"""

import sys
import time

import numpy as np
import pytest

import reference as ref
from damoncore import _regions
from damoncore.core.regions import COLUMNS, Regions

PAGE = 4096
SIZES = [10, 100, 1000, 10_000, 100_000]


def make(n, seed=0):
    g = np.random.default_rng(seed)
    sizes = g.integers(1, 64, n).astype(np.uint64) * PAGE
    start = np.cumsum(np.concatenate([[0], sizes[:-1]])).astype(np.uint64)
    nr = g.integers(0, 20, n)
    r = Regions(start, start + sizes, nr_accesses=nr, nr_accesses_bp=nr * 10000,
                last_nr_accesses=g.integers(0, 20, n), age=g.integers(0, 50, n))
    acc = (g.random(n) < 0.3).astype(np.uint8)
    return r, acc


def as_dicts(r):
    return [dict(zip(COLUMNS, v)) for v in zip(*(getattr(r, c).tolist() for c in COLUMNS))]


def cy_sample_step(r, acc, rng):
    _regions.pick_sampling_addrs(r.start, r.end, r.sampling_addr, rng)
    _regions.update_accesses(r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses, acc, 20)


def py_sample_step(d, acc, rng):
    ref.pick_sampling_addrs(d, rng)
    ref.update_accesses(d, acc, 20)


def cy_aggregation(r, rng):
    r = r.copy()
    n = _regions.merge_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                               r.last_nr_accesses, r.age, 2, 1 << 62)
    r.truncate(n)
    _regions.reset_aggregated(r.nr_accesses, r.last_nr_accesses)
    return _regions.split_regions(r.start, r.end, r.nr_accesses, r.nr_accesses_bp,
                                  r.last_nr_accesses, r.age, 2, PAGE, rng)


def py_aggregation(d, rng):
    d = ref.merge_regions_of(d, 2, 1 << 62)
    ref.reset_aggregated(d)
    return ref.split_regions_of(d, 2, PAGE, rng)


@pytest.mark.parametrize("nr", SIZES)
@pytest.mark.parametrize("impl", ["cython", "reference"])
def test_sample_step(benchmark, nr, impl):
    r, acc = make(nr)
    if impl == "cython":
        rng = np.array([1], np.uint64)
        benchmark(cy_sample_step, r, acc, rng)
    else:
        if nr > 10_000:
            pytest.skip("the reference takes seconds at 100k regions")
        benchmark(py_sample_step, as_dicts(r), acc.tolist(), ref.Rng(1))


@pytest.mark.parametrize("nr", SIZES)
@pytest.mark.parametrize("impl", ["cython", "reference"])
def test_aggregation(benchmark, nr, impl):
    r, _ = make(nr)
    if impl == "cython":
        benchmark(cy_aggregation, r, np.array([1], np.uint64))
    else:
        if nr > 10_000:
            pytest.skip("the reference takes seconds at 100k regions")
        benchmark(py_aggregation, as_dicts(r), ref.Rng(1))


def _best(fn, *a, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*a)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    print("| regions | sample step cython (us) | reference (us) | ratio | aggregation cython (us) | reference (us) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for nr in SIZES[:4]:
        r, acc = make(nr)
        d, accl = as_dicts(r), acc.tolist()
        cs = _best(cy_sample_step, r, acc, np.array([1], np.uint64))
        ps = _best(py_sample_step, d, accl, ref.Rng(1))
        ca = _best(cy_aggregation, r, np.array([1], np.uint64))
        pa = _best(py_aggregation, d, ref.Rng(1))
        print(f"| {nr} | {cs * 1e6:.1f} | {ps * 1e6:.1f} | {ps / cs:.0f}x | {ca * 1e6:.1f} | "
              f"{pa * 1e6:.1f} | {pa / ca:.0f}x |")


if __name__ == "__main__":
    sys.exit(main())
