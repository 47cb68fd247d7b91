# nogil entry points of the frame syscall loops, for other Cython modules (the native sample
# path, damoncore/ops/_idle_sample.pyx).  Each returns 0, an errno, or -1 (out of memory) and
# adds the syscalls it issued to ``nr_calls``; see the def wrappers in _frames.pyx.
from libc.stdint cimport uint8_t, uint64_t

cdef int idle_mark_c(int fd, const uint64_t *pfns, Py_ssize_t n, uint64_t max_gap,
                     Py_ssize_t *nr_calls) noexcept nogil
cdef int idle_read_c(int fd, const uint64_t *pfns, Py_ssize_t n, uint8_t *out_idle,
                     uint64_t max_gap, Py_ssize_t *nr_calls) noexcept nogil
cdef int pagemap_at_c(int fd, const uint64_t *pages, Py_ssize_t n, uint64_t *out,
                      uint64_t max_gap, Py_ssize_t *nr_calls, Py_ssize_t *nr_empty) noexcept nogil
