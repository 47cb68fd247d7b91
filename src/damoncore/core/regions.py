"""A target's regions as a struct of numpy arrays, and the invariant check tests use.

The columns are what the Cython kernels in :mod:`damoncore._regions` operate on; this class
only owns them and offers whole-array helpers.  Sizes and addresses are bytes.
"""

from __future__ import annotations

import numpy as np

ADDR = np.uint64
COUNT = np.uint32

COLUMNS = ("start", "end", "sampling_addr", "nr_accesses", "nr_accesses_bp",
           "last_nr_accesses", "age")


class Regions:
    """Columns of one target's regions, sorted by ``start``, half-open ``[start, end)``.

    ``nr_accesses``: samples of the current aggregation interval that found an access.
    ``nr_accesses_bp``: pseudo moving sum of it in basis points (10000 per access).
    ``last_nr_accesses``: ``nr_accesses`` of the previous aggregation interval.
    ``age``: aggregation intervals the region's access frequency has stayed similar.
    """

    __slots__ = COLUMNS

    def __init__(self, start=(), end=(), nr_accesses=None, nr_accesses_bp=None,
                 last_nr_accesses=None, age=None):
        self.start = np.ascontiguousarray(start, dtype=ADDR)
        self.end = np.ascontiguousarray(end, dtype=ADDR)
        n = len(self.start)
        if len(self.end) != n:
            raise ValueError("start and end differ in length")
        self.sampling_addr = self.start.copy()

        def col(v):
            return np.zeros(n, COUNT) if v is None else np.ascontiguousarray(v, dtype=COUNT)

        self.nr_accesses = col(nr_accesses)
        self.nr_accesses_bp = col(nr_accesses_bp)
        self.last_nr_accesses = col(last_nr_accesses)
        self.age = col(age)

    @property
    def nr(self) -> int:
        return len(self.start)

    def __len__(self):
        return len(self.start)

    def sizes(self) -> np.ndarray:
        return self.end - self.start

    def total_size(self) -> int:
        return int(self.sizes().sum())

    def truncate(self, n: int) -> None:
        for c in COLUMNS:
            setattr(self, c, getattr(self, c)[:n])

    def replace(self, start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age):
        self.start, self.end = start, end
        self.nr_accesses, self.nr_accesses_bp = nr_accesses, nr_accesses_bp
        self.last_nr_accesses, self.age = last_nr_accesses, age
        self.sampling_addr = start.copy()

    def copy(self) -> "Regions":
        r = Regions.__new__(Regions)
        for c in COLUMNS:
            setattr(r, c, getattr(self, c).copy())
        return r

    def split_at(self, idx: np.ndarray, addrs: np.ndarray) -> None:
        """Split region ``idx[k]`` at ``addrs[k]`` (strictly inside); counters are copied."""
        idx = np.asarray(idx, dtype=np.intp)
        addrs = np.asarray(addrs, dtype=ADDR)
        if len(idx) == 0:
            return
        if np.any((addrs <= self.start[idx]) | (addrs >= self.end[idx])):
            raise ValueError("split address outside its region")
        new_start = np.insert(self.start, idx + 1, addrs)
        new_end = np.insert(self.end, idx, addrs)
        cols = {c: np.insert(getattr(self, c), idx + 1, getattr(self, c)[idx])
                for c in COLUMNS[2:]}
        self.start, self.end = new_start, new_end
        for c, v in cols.items():
            setattr(self, c, v)

    def check_invariants(self, ranges=None) -> None:
        """Raise AssertionError unless sorted, non-empty, non-overlapping (and covering ranges)."""
        err = self.invariant_error(ranges)
        assert err is None, err

    def invariant_error(self, ranges=None) -> str | None:
        """What is wrong (sorted, non-empty, non-overlapping, covering ``ranges``), or None."""
        s, e = self.start, self.end
        if len(s) != len(e) or any(len(getattr(self, c)) != len(s) for c in COLUMNS[2:]):
            return "columns of different lengths"
        if not np.all(s < e):
            return "empty or inverted region"
        if not np.all(e[:-1] <= s[1:]):
            return "regions overlap or are unsorted"
        if ranges is not None:
            covered = self.covered()
            want = _coalesce(np.array([r[0] for r in ranges], ADDR),
                             np.array([r[1] for r in ranges], ADDR))
            if covered != want:
                return f"regions cover {covered}, ranges are {want}"
        return None

    def covered(self) -> list:
        """The bytes covered, as coalesced [start, end) ranges."""
        return _coalesce(self.start, self.end)


def _coalesce(s, e):
    out = []
    for a, b in zip(s.tolist(), e.tolist()):
        if out and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [tuple(x) for x in out]


def shares_by_size(sizes, want: int):
    """Split ``want`` pieces over items proportionally to ``sizes``: at least one each,
    largest remainders first."""
    total = sum(sizes)
    want = max(want, len(sizes))
    exact = [want * sz / total for sz in sizes]
    shares = [max(1, int(x)) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: shares[i] - exact[i]):
        if sum(shares) >= want:
            break
        shares[i] += 1
    return shares


def even_regions(ranges, nr_pieces_total: int, min_region: int) -> Regions:
    """Split ``ranges`` into ``nr_pieces_total`` pieces overall, shared by size.

    Like damon_apply_min_nr_regions() / damon_va_evenly_split_region(): each range gets a
    share of the pieces proportional to its size (at least one, largest remainders first),
    and is cut into equal pieces aligned to ``min_region``, the last taking the remainder.
    """
    ranges = sorted((int(a), int(b)) for a, b in ranges)
    for a, b in ranges:
        if b <= a:
            raise ValueError(f"empty or inverted range [{a:#x}, {b:#x})")
    for (a0, b0), (a1, _) in zip(ranges, ranges[1:]):
        if a1 < b0:
            raise ValueError(f"overlapping ranges at {a1:#x}")
    starts, ends = [], []
    for (a, b), n in zip(ranges, shares_by_size([b - a for a, b in ranges], nr_pieces_total)):
        n = max(1, min(n, (b - a) // min_region))
        step = max(min_region, (b - a) // n // min_region * min_region)
        cuts = a + np.arange(n, dtype=np.uint64) * np.uint64(step)
        starts.append(cuts)
        ends.append(np.append(cuts[1:], np.uint64(b)))
    return Regions(np.concatenate(starts), np.concatenate(ends))


def count_in_regions(start, end, addrs) -> np.ndarray:
    """How many of ``addrs`` fall in each region ``[start[i], end[i])`` (sorted, disjoint);
    uint64 per region.  Addresses between or outside regions are not counted."""
    start = np.asarray(start, dtype=np.uint64)
    addrs = np.asarray(addrs, dtype=np.uint64)
    idx = np.searchsorted(start, addrs, side="right") - 1
    ok = idx >= 0
    ok[ok] = addrs[ok] < np.asarray(end, dtype=np.uint64)[idx[ok]]
    return np.bincount(idx[ok], minlength=len(start)).astype(np.uint64)


def _aligned_ranges(ranges, min_region):
    """Sorted ranges, start aligned down and end up to ``min_region``, overlaps merged."""
    out = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        a, b = a - a % min_region, -(-b // min_region) * min_region
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return (np.array([r[0] for r in out], ADDR), np.array([r[1] for r in out], ADDR))


def fit_regions(regions: Regions, ranges, min_region: int) -> Regions:
    """damon_set_regions(): fit ``regions`` to new ``ranges`` (list of (start, end) bytes).

    Regions intersecting no range are dropped; per range, the first intersecting region is
    stretched or cut to start at the range's start and the last to end at its end, holes
    between the kept regions of a range are filled with fresh regions, and a range no region
    intersects becomes one fresh region.  A region spanning two ranges belongs to the first
    (and is cut at its end).  Fresh regions have zero counters; kept ones keep theirs.
    """
    rs, re_ = _aligned_ranges(ranges, min_region)
    s, e = regions.start, regions.end
    # first range whose end lies after the region's start; intersecting if it starts before end
    j = np.searchsorted(re_, s, side="right")
    keep = j < len(rs)
    keep[keep] = rs[j[keep]] < e[keep]
    kidx = np.flatnonzero(keep)
    j = j[kidx]
    cols = {c: getattr(regions, c)[kidx].copy() for c in COLUMNS}
    ks, ke = cols["start"], cols["end"]
    if len(kidx):
        first = np.r_[True, j[1:] != j[:-1]]
        last = np.r_[j[1:] != j[:-1], True]
        ks[first] = rs[j[first]]
        ke[last] = re_[j[last]]
    # holes between consecutive kept regions of one range
    same = (j[1:] == j[:-1]) & (ke[:-1] < ks[1:]) if len(kidx) > 1 else np.zeros(0, bool)
    hs, he = ke[:-1][same], ks[1:][same]
    # ranges with no region
    empty = np.ones(len(rs), bool)
    empty[j] = False
    ns = np.concatenate([ks, hs, rs[empty]])
    ne = np.concatenate([ke, he, re_[empty]])
    nfresh = len(ns) - len(ks)
    order = np.argsort(ns, kind="stable")
    out = Regions(ns[order], ne[order])
    for c in COLUMNS[3:]:
        v = getattr(regions, c)
        setattr(out, c, np.concatenate([cols[c], np.zeros(nfresh, v.dtype)])[order])
    return out
