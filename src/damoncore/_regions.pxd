# Column dtypes of a target's regions, matched to numpy dtypes in core/regions.py.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

ctypedef uint64_t addr_t      # region start/end, sampling address (numpy.uint64)
ctypedef uint32_t count_t     # nr_accesses, nr_accesses_bp, last_nr_accesses, age (numpy.uint32)

cdef uint64_t splitmix64_next(uint64_t *state) noexcept nogil
cdef uint64_t rand_range(uint64_t *state, uint64_t lo, uint64_t hi) noexcept nogil
