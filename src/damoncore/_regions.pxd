# Column dtypes of a target's regions, matched to numpy dtypes in core/regions.py.
cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

ctypedef uint64_t addr_t      # region start/end, sampling address (numpy.uint64)
ctypedef uint32_t count_t     # nr_accesses, nr_accesses_bp, last_nr_accesses, age (numpy.uint32)

# The kernel's integer units, defined once: one whole is 10000 basis points; DAMOS scores are
# 0..DAMOS_MAX_SCORE.  Python code takes them from damoncore.units, Cython code cimports them.
cdef enum:
    BP_ONE = 10000              # basis points in one (nr_accesses_bp per access)
    MAX_SCORE_C = 99            # DAMOS_MAX_SCORE
    NR_SCORES = MAX_SCORE_C + 1
    MAX_SUBSCORE = 100          # DAMON_MAX_SUBSCORE (damon_hot_score())
    MAX_AGE_IN_LOG = 32         # DAMON_MAX_AGE_IN_LOG

cdef uint64_t splitmix64_next(uint64_t *state) noexcept nogil
cdef uint64_t rand_range(uint64_t *state, uint64_t lo, uint64_t hi) noexcept nogil

# the per-sample kernels, for the native sample path (damoncore/ops/_idle_sample.pyx)
cdef void pick_sampling_addrs_c(const uint64_t *start, const uint64_t *end,
                                uint64_t *sampling_addr, Py_ssize_t n,
                                uint64_t *rng) noexcept nogil
cdef uint32_t update_accesses_c(uint32_t *nr_accesses, uint32_t *nr_accesses_bp,
                                const uint32_t *last_nr_accesses, const uint8_t *accessed,
                                Py_ssize_t n, uint32_t len_window) noexcept nogil


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void move_region(uint64_t[::1] start, uint64_t[::1] end,
                             uint32_t[::1] nr_accesses, uint32_t[::1] nr_accesses_bp,
                             uint32_t[::1] last_nr_accesses, uint32_t[::1] age,
                             Py_ssize_t w, Py_ssize_t i) noexcept nogil:
    """Region ``i``'s six columns into row ``w``: the compaction step of the in-place
    merges (``merge_regions``, ``_adapt.pool_runs``, ``_adapt.merge_small``)."""
    start[w] = start[i]
    end[w] = end[i]
    nr_accesses[w] = nr_accesses[i]
    nr_accesses_bp[w] = nr_accesses_bp[i]
    last_nr_accesses[w] = last_nr_accesses[i]
    age[w] = age[i]
