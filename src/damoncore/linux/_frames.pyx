# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Per-frame syscall loops in C: the idle page bitmap and /proc/PID/pagemap.

A sample step touches tens to thousands of scattered pages; in Python each pread/pwrite costs
about 1 µs of interpreter work on top of the syscall, plus microseconds per numpy call to plan
the batch.  Here the whole step (sort, group by 8-byte word, one syscall per span of words, bit
extraction) runs with the GIL released; errno is turned into ``SyscallError`` after the nogil
block.  Input arrays may be unsorted and hold duplicates; results follow the input order.

Spans: sorted distinct words (bitmap words, or pagemap entries, one per page) no more than
``max_gap`` words apart share one syscall; gap words are written as 0 (which the idle bitmap
ignores) or read and dropped.  A short read or write (kernfs moves at most PAGE_SIZE bytes of the
idle bitmap per call) goes on where it stopped; reads that return nothing (the end of memory,
TASK_SIZE, or an exited process) leave the missing words 0.  Words are little-endian, as the
kernel lays them out.
"""

from libc.errno cimport ENXIO, errno
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcpy, memset

from damoncore.errors import SyscallError

cdef extern from "<unistd.h>" nogil:
    ssize_t pread(int fd, void *buf, size_t count, long offset)
    ssize_t pwrite(int fd, const void *buf, size_t count, long offset)

cdef extern from "<endian.h>" nogil:
    uint64_t htole64(uint64_t x)
    uint64_t le64toh(uint64_t x)

cdef enum:
    WORD_BYTES = 8          # one bitmap word / one pagemap or kpageflags entry


cdef int _cmp_u64(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t *>a)[0], y = (<const uint64_t *>b)[0]
    return (x > y) - (x < y)


cdef Py_ssize_t _sort_unique(uint64_t *v, Py_ssize_t n) noexcept nogil:
    """Sort ``v`` in place (skipped when already sorted) and drop duplicates; the new length."""
    cdef Py_ssize_t i, m
    for i in range(1, n):
        if v[i] < v[i - 1]:
            qsort(v, n, sizeof(uint64_t), _cmp_u64)
            break
    m = 1 if n else 0
    for i in range(1, n):
        if v[i] != v[m - 1]:
            v[m] = v[i]
            m += 1
    return m


cdef Py_ssize_t _find(const uint64_t *v, Py_ssize_t n, uint64_t key) noexcept nogil:
    """Index of ``key`` in sorted ``v`` (which holds it)."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if v[mid] <= key:
            lo = mid
        else:
            hi = mid
    return lo


cdef Py_ssize_t _span_end(const uint64_t *w, Py_ssize_t i, Py_ssize_t m,
                          uint64_t max_gap) noexcept nogil:
    """One past the last distinct word of the span starting at ``w[i]``."""
    i += 1
    while i < m and w[i] - w[i - 1] <= max_gap + 1:
        i += 1
    return i


cdef Py_ssize_t _longest_span(const uint64_t *w, Py_ssize_t m, uint64_t max_gap) noexcept nogil:
    cdef Py_ssize_t i = 0, j, longest = 0
    while i < m:
        j = _span_end(w, i, m, max_gap)
        if <Py_ssize_t>(w[j - 1] - w[i] + 1) > longest:
            longest = w[j - 1] - w[i] + 1
        i = j
    return longest


cdef int _gather(int fd, uint64_t *w, Py_ssize_t m, uint64_t max_gap, uint64_t *vals,
                 Py_ssize_t *nr_calls, Py_ssize_t *nr_empty) noexcept nogil:
    """Read the 8-byte words at indices ``w[0:m]`` (sorted, distinct) of ``fd`` into ``vals``,
    one pread per span.  Returns 0, an errno, or -1 for an allocation failure.

    A short read is continued where it stopped (kernfs hands out at most PAGE_SIZE bytes per
    read of a sysfs bin file such as the idle bitmap); a read that returns nothing ends the
    span (the end of memory, TASK_SIZE or an exited process) and the rest reads as 0."""
    cdef Py_ssize_t i = 0, j, k, nw
    cdef ssize_t got, done
    cdef uint64_t *buf = <uint64_t *>malloc(_longest_span(w, m, max_gap) * WORD_BYTES + 1)
    if buf == NULL:
        return -1
    while i < m:
        j = _span_end(w, i, m, max_gap)
        nw = w[j - 1] - w[i] + 1
        done = 0
        while done < nw * WORD_BYTES:
            got = pread(fd, <char *>buf + done, nw * WORD_BYTES - done,
                        <long>(w[i] * WORD_BYTES + done))
            if got < 0:
                free(buf)
                return errno
            nr_calls[0] += 1
            if got == 0:
                if done == 0:
                    nr_empty[0] += 1
                break
            done += got
        if done < nw * WORD_BYTES:
            memset(<char *>buf + done, 0, nw * WORD_BYTES - done)
        for k in range(i, j):
            vals[k] = le64toh(buf[w[k] - w[i]])
        i = j
    free(buf)
    return 0


cdef _raise(int err, str call):
    if err == -1:
        raise MemoryError()
    raise SyscallError(err, call)


# nogil entry points (declared in _frames.pxd): the def functions below wrap them for Python,
# and damoncore.ops._idle_sample calls them straight from its sample loop.

cdef int idle_mark_c(int fd, const uint64_t *pfns, Py_ssize_t n, uint64_t max_gap,
                     Py_ssize_t *nr_calls) noexcept nogil:
    """Mark frames ``pfns[0:n]`` idle; 0, an errno or -1 (no memory).  See :func:`idle_mark`."""
    cdef Py_ssize_t m, i = 0, j, k, nw
    cdef ssize_t put, done
    cdef uint64_t *w
    cdef uint64_t *bits
    cdef uint64_t *buf = NULL
    cdef int err = 0
    if n == 0:
        return 0
    w = <uint64_t *>malloc(n * sizeof(uint64_t))
    bits = <uint64_t *>malloc(n * sizeof(uint64_t))
    if w == NULL or bits == NULL:
        err = -1
    else:
        memcpy(w, pfns, n * sizeof(uint64_t))
        m = _sort_unique(w, n)          # sorted distinct frames, then ...
        k = 0
        for i in range(m):              # ... distinct words, their bits ORed
            if k and w[i] >> 6 == w[k - 1]:
                bits[k - 1] |= <uint64_t>1 << (w[i] & 63)
            else:
                bits[k] = <uint64_t>1 << (w[i] & 63)
                w[k] = w[i] >> 6
                k += 1
        m = k
        buf = <uint64_t *>malloc(_longest_span(w, m, max_gap) * WORD_BYTES + 1)
        if buf == NULL:
            err = -1
        i = 0
        while err == 0 and i < m:
            j = _span_end(w, i, m, max_gap)
            nw = w[j - 1] - w[i] + 1
            memset(buf, 0, nw * WORD_BYTES)
            for k in range(i, j):
                buf[w[k] - w[i]] = htole64(bits[k])
            # a short write (kernfs takes at most PAGE_SIZE bytes per call) goes on where it
            # stopped; nothing written, or ENXIO on a later part, is the end of memory
            done = 0
            while done < nw * WORD_BYTES:
                put = pwrite(fd, <char *>buf + done, nw * WORD_BYTES - done,
                             <long>(w[i] * WORD_BYTES + done))
                if put < 0:
                    if done == 0 or errno != ENXIO:
                        err = errno
                    else:
                        nr_calls[0] += 1
                    break
                nr_calls[0] += 1
                if put == 0:
                    break
                done += put
            i = j
    free(w)
    free(bits)
    free(buf)
    return err


cdef int idle_read_c(int fd, const uint64_t *pfns, Py_ssize_t n, uint8_t *out_idle,
                     uint64_t max_gap, Py_ssize_t *nr_calls) noexcept nogil:
    """``out_idle[i]`` = frame ``pfns[i]`` still idle; 0, an errno or -1.  See :func:`idle_read`."""
    cdef Py_ssize_t m = 0, i, nr_empty = 0
    cdef uint64_t *w
    cdef uint64_t *vals
    cdef uint64_t p
    cdef int err = 0
    if n == 0:
        return 0
    w = <uint64_t *>malloc(n * sizeof(uint64_t))
    vals = <uint64_t *>malloc(n * sizeof(uint64_t))
    if w == NULL or vals == NULL:
        err = -1
    else:
        for i in range(n):
            w[i] = pfns[i] >> 6
        m = _sort_unique(w, n)
        err = _gather(fd, w, m, max_gap, vals, nr_calls, &nr_empty)
        if err == 0:
            for i in range(n):
                p = pfns[i]
                out_idle[i] = (vals[_find(w, m, p >> 6)] >> (p & 63)) & 1
    free(w)
    free(vals)
    return err


cdef int pagemap_at_c(int fd, const uint64_t *pages, Py_ssize_t n, uint64_t *out,
                      uint64_t max_gap, Py_ssize_t *nr_calls, Py_ssize_t *nr_empty) noexcept nogil:
    """``out[i]`` = pagemap entry of page ``pages[i]``; 0, an errno or -1.  See :func:`pagemap_at`."""
    cdef Py_ssize_t m = 0, i
    cdef uint64_t *w
    cdef uint64_t *vals
    cdef int err = 0
    if n == 0:
        return 0
    w = <uint64_t *>malloc(n * sizeof(uint64_t))
    vals = <uint64_t *>malloc(n * sizeof(uint64_t))
    if w == NULL or vals == NULL:
        err = -1
    else:
        memcpy(w, pages, n * sizeof(uint64_t))
        m = _sort_unique(w, n)
        err = _gather(fd, w, m, max_gap, vals, nr_calls, nr_empty)
        if err == 0:
            for i in range(n):
                out[i] = vals[_find(w, m, pages[i])]
    free(w)
    free(vals)
    return err


def idle_mark(int fd, const uint64_t[::1] pfns, Py_ssize_t max_gap_words=0):
    """Mark the page frames ``pfns`` idle in the idle page bitmap open at ``fd``.

    Bits of one word are ORed into one write; one pwrite per span of words at most
    ``max_gap_words`` apart (more when the kernel takes a span in parts).  Returns the number
    of pwrite calls.
    """
    cdef Py_ssize_t nr_calls = 0
    cdef int err
    if pfns.shape[0] == 0:
        return 0
    with nogil:
        err = idle_mark_c(fd, &pfns[0], pfns.shape[0],
                          max_gap_words if max_gap_words > 0 else 0, &nr_calls)
    if err:
        _raise(err, "pwrite")
    return nr_calls


def idle_read(int fd, const uint64_t[::1] pfns, uint8_t[::1] out_idle,
              Py_ssize_t max_gap_words=0):
    """``out_idle[i]`` = 1 if frame ``pfns[i]`` is still idle in the bitmap open at ``fd``.

    One pread per span of words at most ``max_gap_words`` apart (0: adjacent words only, since
    the kernel checks every frame a read covers).  Frames past the end read as not idle.
    Returns the number of pread calls.
    """
    cdef Py_ssize_t n = pfns.shape[0], nr_calls = 0
    cdef int err
    if out_idle.shape[0] != n:
        raise ValueError("out_idle must have one entry per frame")
    if n == 0:
        return 0
    with nogil:
        err = idle_read_c(fd, &pfns[0], n, &out_idle[0],
                          max_gap_words if max_gap_words > 0 else 0, &nr_calls)
    if err:
        _raise(err, "pread")
    return nr_calls


def pagemap_at(int fd, const uint64_t[::1] pages, uint64_t[::1] out, Py_ssize_t max_gap=0):
    """``out[i]`` = the raw /proc/PID/pagemap entry of virtual page number ``pages[i]``.

    One pread per span of pages at most ``max_gap`` apart.  Entries a read did not return
    (TASK_SIZE, an exited process) are 0.  Returns ``(nr_preads, nr_empty)``; ``nr_empty``
    counts spans whose first pread returned nothing, which the caller tells apart from the top
    of the address space (an exited process returns nothing even at address 0).
    """
    cdef Py_ssize_t n = pages.shape[0], nr_calls = 0, nr_empty = 0
    cdef int err
    if out.shape[0] != n:
        raise ValueError("out must have one entry per page")
    if n == 0:
        return 0, 0
    with nogil:
        err = pagemap_at_c(fd, &pages[0], n, &out[0], max_gap if max_gap > 0 else 0,
                           &nr_calls, &nr_empty)
    if err:
        _raise(err, "pread")
    return nr_calls, nr_empty
