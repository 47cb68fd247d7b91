# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot loops over one target's region columns (struct of numpy arrays).

Every function here takes typed contiguous arrays and integers, runs with the GIL released,
and mirrors a kernel function named in its docstring (mm/damon/core.c, ops-common.c).
Columns: ``start``, ``end``, ``sampling_addr`` (uint64); ``nr_accesses``,
``nr_accesses_bp``, ``last_nr_accesses``, ``age`` (uint32).  Regions are half-open
``[start, end)``, sorted and non-overlapping.

Randomness comes from a splitmix64 state kept in a one-element uint64 array owned by the
caller, so runs are reproducible from a seed and the plain-Python reference in
``tests/reference.py`` can replay the exact same choices.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport abs as c_abs

cnp.import_array()

# The kernel's integer units (cdef enum in _regions.pxd, for these loops and any other
# Cython module), exported to Python here (damoncore.units names them).
BP = BP_ONE
MAX_SCORE = MAX_SCORE_C


cdef uint64_t splitmix64_next(uint64_t *state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef uint64_t rand_range(uint64_t *state, uint64_t lo, uint64_t hi) noexcept nogil:
    """Uniform in [lo, hi), as the kernel's damon_rand(); lo when the range is empty."""
    if hi <= lo:
        return lo
    return lo + splitmix64_next(state) % (hi - lo)


def rand_draw(uint64_t[::1] rng, uint64_t lo, uint64_t hi):
    """One damon_rand(lo, hi) draw from ``rng`` (for callers outside the hot loops)."""
    return rand_range(&rng[0], lo, hi)


cdef void pick_sampling_addrs_c(const uint64_t *start, const uint64_t *end,
                                uint64_t *sampling_addr, Py_ssize_t n,
                                uint64_t *rng) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        sampling_addr[i] = rand_range(rng, start[i], end[i])


def pick_sampling_addrs(const uint64_t[::1] start, const uint64_t[::1] end,
                        uint64_t[::1] sampling_addr, uint64_t[::1] rng):
    """Pick one random address in every region (prepare_access_checks' damon_rand)."""
    cdef Py_ssize_t n = start.shape[0]
    if n == 0:
        return
    with nogil:
        pick_sampling_addrs_c(&start[0], &end[0], &sampling_addr[0], n, &rng[0])


cdef uint32_t update_accesses_c(uint32_t *nr_accesses, uint32_t *nr_accesses_bp,
                                const uint32_t *last_nr_accesses, const uint8_t *accessed,
                                Py_ssize_t n, uint32_t len_window) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t mx = 0
    cdef uint64_t sub, bp
    if len_window == 0:
        len_window = 1
    for i in range(n):
        sub = <uint64_t>last_nr_accesses[i] * BP_ONE / len_window
        bp = nr_accesses_bp[i]
        bp = bp - sub if bp > sub else 0
        if accessed[i]:
            bp += BP_ONE
            nr_accesses[i] += 1
        nr_accesses_bp[i] = <uint32_t>bp
        if nr_accesses[i] > mx:
            mx = nr_accesses[i]
    return mx


def update_accesses(uint32_t[::1] nr_accesses, uint32_t[::1] nr_accesses_bp,
                    const uint32_t[::1] last_nr_accesses, const uint8_t[::1] accessed,
                    uint32_t len_window):
    """Apply one sample's access-check results; returns the max nr_accesses.

    Mirrors damon_update_region_access_rate(): the pseudo moving sum
    ``bp = bp - last*BP_ONE/len_window + (accessed ? BP_ONE : 0)``.
    """
    cdef Py_ssize_t n = nr_accesses.shape[0]
    cdef uint32_t mx
    if n == 0:
        return 0
    with nogil:
        mx = update_accesses_c(&nr_accesses[0], &nr_accesses_bp[0], &last_nr_accesses[0],
                               &accessed[0], n, len_window)
    return mx


def reset_aggregated(uint32_t[::1] nr_accesses, uint32_t[::1] last_nr_accesses):
    """kdamond_reset_aggregated(): last_nr_accesses = nr_accesses; nr_accesses = 0."""
    cdef Py_ssize_t i, n = nr_accesses.shape[0]
    with nogil:
        for i in range(n):
            last_nr_accesses[i] = nr_accesses[i]
            nr_accesses[i] = 0


cdef inline bint is_mixed(uint32_t nr, uint32_t nr_samples) noexcept nogil:
    """A quarter to seven eighths of the samples found an access (short of nearly all:
    edge-split pools confidently hot regions for its report, so regions that read hot
    but not saturated need not merge into large ones that straddle a fading edge)."""
    return 4 * <uint64_t>nr >= nr_samples and 8 * <uint64_t>nr <= 7 * <uint64_t>nr_samples


def merge_regions(uint64_t[::1] start, uint64_t[::1] end, uint32_t[::1] nr_accesses,
                  uint32_t[::1] nr_accesses_bp, uint32_t[::1] last_nr_accesses,
                  uint32_t[::1] age, uint32_t thres, uint64_t sz_limit,
                  uint64_t mixed_sz_limit=0, uint32_t nr_samples=0):
    """One pass of damon_merge_regions_of(); compacts the columns in place.

    Ages every region (reset if |nr_accesses - last_nr_accesses| > thres, else +1), then
    merges adjacent regions whose nr_accesses differ by <= thres and whose summed size is
    <= sz_limit (size-weighted nr_accesses and age).  Returns the new region count; the
    caller truncates the columns to it.

    With ``nr_samples`` (edge-split, not the kernel): a merge where either region reads
    *mixed* (a quarter to seven eighths of ``nr_samples`` accessed) stays within
    ``mixed_sz_limit`` instead, so averaging does not fold the uncertain edge of a hot set
    into one large region.
    """
    cdef Py_ssize_t i, w = -1, n = start.shape[0]
    cdef uint64_t sz_l, sz_r, lim
    cdef int64_t d
    with nogil:
        for i in range(n):
            d = <int64_t>nr_accesses[i] - <int64_t>last_nr_accesses[i]
            if d > thres or -d > thres:
                age[i] = 0
            else:
                age[i] += 1
            nr_accesses_bp[i] = nr_accesses[i] * BP_ONE
            if w >= 0:
                d = <int64_t>nr_accesses[w] - <int64_t>nr_accesses[i]
                sz_l = end[w] - start[w]
                sz_r = end[i] - start[i]
                lim = sz_limit
                if nr_samples and (is_mixed(nr_accesses[w], nr_samples)
                                   or is_mixed(nr_accesses[i], nr_samples)):
                    lim = mixed_sz_limit
                if (end[w] == start[i] and d <= thres and -d <= thres
                        and sz_l + sz_r <= lim):
                    nr_accesses[w] = <uint32_t>((<uint64_t>nr_accesses[w] * sz_l
                                                 + <uint64_t>nr_accesses[i] * sz_r)
                                                / (sz_l + sz_r))
                    nr_accesses_bp[w] = nr_accesses[w] * BP_ONE
                    age[w] = <uint32_t>((<uint64_t>age[w] * sz_l + <uint64_t>age[i] * sz_r)
                                        / (sz_l + sz_r))
                    end[w] = end[i]
                    continue
            w += 1
            if w != i:
                move_region(start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age,
                            w, i)
    return w + 1


def split_regions(const uint64_t[::1] start, const uint64_t[::1] end,
                  const uint32_t[::1] nr_accesses, const uint32_t[::1] nr_accesses_bp,
                  const uint32_t[::1] last_nr_accesses, const uint32_t[::1] age,
                  int nr_subs, uint64_t min_region, uint64_t[::1] rng):
    """damon_split_regions_of(): split each region into up to ``nr_subs`` pieces.

    Each cut is at a random 10-90% point (aligned down to ``min_region``) of the piece
    being split, and the left piece is split again; pieces copy the parent's counters.
    Returns a tuple of the six new columns (sampling_addr is re-picked every sample).
    """
    cdef Py_ssize_t n = start.shape[0]
    cdef Py_ssize_t cap = n * (nr_subs if nr_subs > 1 else 1)
    o_start_a = np.empty(cap, dtype=np.uint64)
    o_end_a = np.empty(cap, dtype=np.uint64)
    o_nr_a = np.empty(cap, dtype=np.uint32)
    o_bp_a = np.empty(cap, dtype=np.uint32)
    o_last_a = np.empty(cap, dtype=np.uint32)
    o_age_a = np.empty(cap, dtype=np.uint32)
    cdef uint64_t[::1] o_start = o_start_a
    cdef uint64_t[::1] o_end = o_end_a
    cdef uint32_t[::1] o_nr = o_nr_a
    cdef uint32_t[::1] o_bp = o_bp_a
    cdef uint32_t[::1] o_last = o_last_a
    cdef uint32_t[::1] o_age = o_age_a
    cdef Py_ssize_t i, j, k, w = 0, nr_cuts
    cdef uint64_t sz_region, sz_sub
    cdef uint64_t cuts[16]
    if nr_subs > 16:
        raise ValueError("nr_subs must be <= 16")
    if min_region == 0:
        min_region = 1
    with nogil:
        for i in range(n):
            sz_region = end[i] - start[i]
            nr_cuts = 0
            j = 0
            while j < nr_subs - 1 and sz_region > 2 * min_region:
                sz_sub = rand_range(&rng[0], 1, 10) * sz_region / 10
                sz_sub -= sz_sub % min_region
                j += 1
                if sz_sub == 0 or sz_sub >= sz_region:
                    continue
                cuts[nr_cuts] = start[i] + sz_sub
                nr_cuts += 1
                sz_region = sz_sub
            # cuts are decreasing: the left piece keeps being split
            for k in range(nr_cuts + 1):
                o_start[w] = start[i] if k == 0 else cuts[nr_cuts - k]
                o_end[w] = end[i] if k == nr_cuts else cuts[nr_cuts - k - 1]
                o_nr[w] = nr_accesses[i]
                o_bp[w] = nr_accesses_bp[i]
                o_last[w] = last_nr_accesses[i]
                o_age[w] = age[i]
                w += 1
    return (o_start_a[:w], o_end_a[:w], o_nr_a[:w], o_bp_a[:w], o_last_a[:w], o_age_a[:w])


def hot_scores(const uint32_t[::1] nr_accesses_bp, const uint32_t[::1] age,
               uint32_t max_nr_accesses, uint64_t aggr_us,
               uint32_t freq_weight, uint32_t age_weight, uint8_t[::1] out):
    """damon_hot_score() for every region: 0 (coldest) .. 99 (hottest).

    The frequency subscore uses the moving sum (nr_accesses_bp / BP_ONE) so a score taken
    between aggregations sees the current rate; at an aggregation end it equals
    nr_accesses.  ``cold score = 99 - hot score`` (damon_cold_score()).
    """
    cdef Py_ssize_t i, n = age.shape[0]
    cdef uint64_t freq, age_sec, hot
    cdef int64_t age_log, age_sub
    if max_nr_accesses == 0:
        max_nr_accesses = 1
    with nogil:
        for i in range(n):
            freq = (<uint64_t>nr_accesses_bp[i] / BP_ONE) * MAX_SUBSCORE / max_nr_accesses
            age_sec = <uint64_t>age[i] * aggr_us / 1000000
            age_log = 0
            while age_log < MAX_AGE_IN_LOG and age_sec:
                age_log += 1
                age_sec >>= 1
            if freq == 0:
                age_log = -age_log
            age_log += MAX_AGE_IN_LOG
            age_sub = age_log * MAX_SUBSCORE / MAX_AGE_IN_LOG / 2
            hot = freq_weight * freq + age_weight * <uint64_t>age_sub
            if freq_weight + age_weight:
                hot = hot / (freq_weight + age_weight)
            hot = hot * MAX_SCORE_C / MAX_SUBSCORE
            if hot > MAX_SCORE_C:
                hot = MAX_SCORE_C
            out[i] = <uint8_t>hot


def pattern_mask(const uint64_t[::1] start, const uint64_t[::1] end,
                 const uint32_t[::1] nr_accesses_bp, const uint32_t[::1] age,
                 uint64_t min_sz, uint64_t max_sz, uint64_t min_nr, uint64_t max_nr,
                 uint64_t min_age, uint64_t max_age, uint8_t[::1] out):
    """__damos_valid_target(): 1 where size, nr_accesses_bp/BP_ONE and age are in range."""
    cdef Py_ssize_t i, n = start.shape[0]
    cdef uint64_t sz, nr
    with nogil:
        for i in range(n):
            sz = end[i] - start[i]
            nr = nr_accesses_bp[i] / BP_ONE
            out[i] = (min_sz <= sz and sz <= max_sz and min_nr <= nr and nr <= max_nr
                      and min_age <= age[i] and age[i] <= max_age)


def score_histogram(const uint64_t[::1] start, const uint64_t[::1] end,
                    const uint8_t[::1] scores, const uint8_t[::1] mask,
                    uint64_t[::1] histogram):
    """Add the size of every masked region to ``histogram[score]`` (damos_adjust_quota)."""
    cdef Py_ssize_t i, n = start.shape[0]
    with nogil:
        for i in range(n):
            if mask[i]:
                histogram[scores[i]] += end[i] - start[i]


def min_score_for(const uint64_t[::1] histogram, uint64_t esz):
    """The lowest score whose cumulated size (from 99 down) still fits ``esz``."""
    cdef int score = MAX_SCORE_C
    cdef uint64_t cum = 0
    with nogil:
        while True:
            cum += histogram[score]
            if cum >= esz or score == 0:
                break
            score -= 1
    return score


def mark_reported(const uint64_t[::1] start, const uint64_t[::1] end,
                  const uint64_t[::1] addr, const uint64_t[::1] size,
                  const uint8_t[::1] keep, uint8_t[::1] accessed):
    """Set ``accessed[i]`` for each region that fully contains a kept report.

    kdamond_check_reported_accesses() semantics; binary search per report, so the cost is
    O(reports * log(regions)).
    """
    cdef Py_ssize_t n = start.shape[0], m = addr.shape[0]
    cdef Py_ssize_t k, lo, hi, mid
    cdef uint64_t a, e
    cdef Py_ssize_t nr_hits = 0
    if n == 0:
        return 0
    with nogil:
        for k in range(m):
            if not keep[k]:
                continue
            a = addr[k]
            e = a + (size[k] if size[k] else 1)
            lo = 0
            hi = n
            while lo < hi:           # first region with start > a
                mid = (lo + hi) >> 1
                if start[mid] <= a:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == 0:
                continue
            lo -= 1
            if e <= end[lo]:
                accessed[lo] = 1
                nr_hits += 1
    return nr_hits
