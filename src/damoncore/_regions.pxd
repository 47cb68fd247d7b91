# Column dtypes of a target's regions, matched to numpy dtypes in core/regions.py.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

ctypedef uint64_t addr_t      # region start/end, sampling address (numpy.uint64)
ctypedef uint32_t count_t     # nr_accesses, nr_accesses_bp, last_nr_accesses, age (numpy.uint32)

cdef uint64_t splitmix64_next(uint64_t *state) noexcept nogil
cdef uint64_t rand_range(uint64_t *state, uint64_t lo, uint64_t hi) noexcept nogil

# the per-sample kernels, for the native sample path (damoncore/ops/_idle_sample.pyx)
cdef void pick_sampling_addrs_c(const uint64_t *start, const uint64_t *end,
                                uint64_t *sampling_addr, Py_ssize_t n,
                                uint64_t *rng) noexcept nogil
cdef uint32_t update_accesses_c(uint32_t *nr_accesses, uint32_t *nr_accesses_bp,
                                const uint32_t *last_nr_accesses, const uint8_t *accessed,
                                Py_ssize_t n, uint32_t len_window) noexcept nogil
