# cython: language_level=3, boundscheck=False, wraparound=False
"""Batched move_pages(2) through syscall(2); the only job of this module.

No libnuma: the syscall number comes from <sys/syscall.h>.  The GIL is released for the whole
batch, which is split in chunks so one call never pins the kernel for too long.
"""

from libc.errno cimport errno
from libc.stdint cimport int32_t, uint64_t

cdef extern from "<sys/syscall.h>":
    long SYS_move_pages

cdef extern from "<unistd.h>":
    long syscall(long number, ...) nogil

DEFAULT_CHUNK = 16384


cdef long _one_call(int pid, Py_ssize_t n, const uint64_t *addrs, const int32_t *nodes,
                    int32_t *status, int flags) noexcept nogil:
    # void ** and int * have the same layout as uint64_t / int32_t arrays on LP64.
    return syscall(SYS_move_pages, <long>pid, <unsigned long>n, <void *>addrs,
                   <void *>nodes, <void *>status, <long>flags)


def move_pages_batch(int pid, const uint64_t[::1] addrs, const int32_t[::1] nodes,
                     int32_t[::1] status, int flags, Py_ssize_t chunk=DEFAULT_CHUNK):
    """Call move_pages(2) over ``addrs`` in chunks of ``chunk`` pages.

    Args:
        pid: target process id (0 = the caller).
        addrs: page-aligned virtual addresses (bytes), one per page.
        nodes: destination node per page, or None for query mode (status = current node).
        status: output, one int32 per page: a node id or -errno.
        flags: MPOL_MF_MOVE (2) or MPOL_MF_MOVE_ALL (4); ignored in query mode.
        chunk: pages per syscall.

    Returns:
        ``(nr_not_moved, err, nr_done)``: the sum of the syscall's positive returns (pages it
        could not move), the errno of a whole-call failure (0 if none), and the number of pages
        handled before that failure.
    """
    cdef Py_ssize_t n = addrs.shape[0]
    cdef Py_ssize_t i = 0, m
    cdef long rc, not_moved = 0
    cdef int err = 0
    cdef const int32_t *nodes_p = NULL
    if status.shape[0] != n:
        raise ValueError("status must have one entry per address")
    if nodes is not None:
        if nodes.shape[0] != n:
            raise ValueError("nodes must have one entry per address")
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    if n == 0:
        return 0, 0, 0
    with nogil:
        while i < n:
            m = chunk if n - i > chunk else n - i
            if nodes is not None:
                nodes_p = &nodes[i]
            rc = _one_call(pid, m, &addrs[i], nodes_p, &status[i], flags)
            if rc < 0:
                err = errno
                break
            not_moved += rc
            i += m
    return not_moved, err, i
