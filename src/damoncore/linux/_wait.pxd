# The clock and the wait of compiled loops that run whole samples (the native sample path,
# damoncore/ops/_idle_sample.pyx): inline, so the system calls stay in linux/ while the
# loop that issues them needs no Python.
from libc.stdint cimport int64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int ppoll(pollfd *fds, unsigned long nfds, const timespec *timeout, const void *sigmask)
    short POLLIN


cdef inline int64_t monotonic_us() noexcept nogil:
    """CLOCK_MONOTONIC in microseconds: time.monotonic_ns() // 1000, the core's RealClock."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline int wait_readable(pollfd *fds, unsigned long nfds, int64_t timeout_us) noexcept nogil:
    """ppoll(2) until one of ``fds`` is readable, a signal comes or ``timeout_us`` (>= 0)
    passes: ppoll's result (0: timed out; -1 with errno set: failed or interrupted)."""
    cdef timespec ts
    ts.tv_sec = timeout_us // 1000000
    ts.tv_nsec = (timeout_us % 1000000) * 1000
    return ppoll(fds, nfds, &ts, NULL)
