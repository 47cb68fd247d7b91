# cython: language_level=3, boundscheck=False, wraparound=False
"""Every raw system call damoncore makes, and the platform facts they depend on.

Syscall numbers come from the platform's ``<sys/syscall.h>`` (``SYS_*``, else the kernel
headers' ``__NR_*``), ioctl request numbers and advice values from the kernel's uapi
headers, the page size from ``sysconf(_SC_PAGESIZE)``: nothing here is an x86-64 constant.
A call the platform's headers do not know has number -1 and fails with ENOSYS, which the
wrappers in :mod:`damoncore.linux` turn into :class:`~damoncore.errors.FeatureMissing`.

Every call returns the kernel's result, or ``-errno`` when it failed; the Python wrappers
(``linux/migrate.py``, ``madvise.py``, ``mempolicy.py``, ``perf.py``, ``pidfd.py``) name the
errno.  Calls that may run long (move_pages, process_madvise, mbind) release the GIL.

The perf ring's ``data_head``/``data_tail`` are read and written here too, with acquire and
release semantics (the ordering ``include/uapi/linux/perf_event.h`` asks of user space: an
``smp_rmb()`` after reading ``data_head``, an ``smp_mb()`` before writing ``data_tail``), so
the ring is correct on weakly ordered CPUs, not only on x86's TSO.
"""

from libc.errno cimport errno
from libc.stdint cimport int32_t, uint64_t
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    #include <errno.h>
    #include <stdint.h>
    #include <sys/syscall.h>
    #include <sys/uio.h>
    #include <unistd.h>
    #if defined(__has_include)
    #  if __has_include(<linux/mman.h>)
    #    include <linux/mman.h>
    #  endif
    #  if __has_include(<linux/perf_event.h>)
    #    include <linux/perf_event.h>
    #  endif
    #  if __has_include(<linux/fs.h>)
    #    include <linux/fs.h>
    #  endif
    #  if __has_include(<linux/ioctl.h>)
    #    include <linux/ioctl.h>
    #  endif
    #endif

    /* syscall numbers: glibc's SYS_*, else the kernel headers' __NR_*, else unknown (-1) */
    #if defined(SYS_move_pages)
    #  define DC_SYS_move_pages SYS_move_pages
    #elif defined(__NR_move_pages)
    #  define DC_SYS_move_pages __NR_move_pages
    #else
    #  define DC_SYS_move_pages (-1)
    #endif
    #if defined(SYS_pidfd_open)
    #  define DC_SYS_pidfd_open SYS_pidfd_open
    #elif defined(__NR_pidfd_open)
    #  define DC_SYS_pidfd_open __NR_pidfd_open
    #else
    #  define DC_SYS_pidfd_open (-1)
    #endif
    #if defined(SYS_process_madvise)
    #  define DC_SYS_process_madvise SYS_process_madvise
    #elif defined(__NR_process_madvise)
    #  define DC_SYS_process_madvise __NR_process_madvise
    #else
    #  define DC_SYS_process_madvise (-1)
    #endif
    #if defined(SYS_perf_event_open)
    #  define DC_SYS_perf_event_open SYS_perf_event_open
    #elif defined(__NR_perf_event_open)
    #  define DC_SYS_perf_event_open __NR_perf_event_open
    #else
    #  define DC_SYS_perf_event_open (-1)
    #endif
    #if defined(SYS_mbind)
    #  define DC_SYS_mbind SYS_mbind
    #elif defined(__NR_mbind)
    #  define DC_SYS_mbind __NR_mbind
    #else
    #  define DC_SYS_mbind (-1)
    #endif
    #if defined(SYS_set_mempolicy)
    #  define DC_SYS_set_mempolicy SYS_set_mempolicy
    #elif defined(__NR_set_mempolicy)
    #  define DC_SYS_set_mempolicy __NR_set_mempolicy
    #else
    #  define DC_SYS_set_mempolicy (-1)
    #endif
    #if defined(SYS_get_mempolicy)
    #  define DC_SYS_get_mempolicy SYS_get_mempolicy
    #elif defined(__NR_get_mempolicy)
    #  define DC_SYS_get_mempolicy __NR_get_mempolicy
    #else
    #  define DC_SYS_get_mempolicy (-1)
    #endif

    /* advice values (asm/mman.h is per architecture); -1: unknown to these headers */
    #ifndef MADV_WILLNEED
    #  define MADV_WILLNEED (-1)
    #endif
    #ifndef MADV_HUGEPAGE
    #  define MADV_HUGEPAGE (-1)
    #endif
    #ifndef MADV_NOHUGEPAGE
    #  define MADV_NOHUGEPAGE (-1)
    #endif
    #ifndef MADV_COLD
    #  define MADV_COLD (-1)
    #endif
    #ifndef MADV_PAGEOUT
    #  define MADV_PAGEOUT (-1)
    #endif
    #ifndef MADV_COLLAPSE
    #  define MADV_COLLAPSE (-1)
    #endif

    /* ioctl numbers: the header's, else encoded with this architecture's _IO* macros
       (their bit layout differs between architectures); 0: no ioctl macros at all */
    struct dc_pm_scan_arg { uint64_t f[12]; };       /* struct pm_scan_arg, 96 bytes */
    #if defined(PAGEMAP_SCAN)
    #  define DC_PAGEMAP_SCAN PAGEMAP_SCAN
    #elif defined(_IOWR)
    #  define DC_PAGEMAP_SCAN _IOWR('f', 16, struct dc_pm_scan_arg)
    #else
    #  define DC_PAGEMAP_SCAN 0
    #endif
    #ifndef PAGE_IS_PRESENT
    #  define PAGE_IS_PRESENT (1 << 3)      /* uapi linux/fs.h, Linux >= 6.7 */
    #endif
    #if defined(PERF_EVENT_IOC_ENABLE)
    #  define DC_PERF_IOC_ENABLE PERF_EVENT_IOC_ENABLE
    #  define DC_PERF_IOC_DISABLE PERF_EVENT_IOC_DISABLE
    #  define DC_PERF_IOC_SET_OUTPUT PERF_EVENT_IOC_SET_OUTPUT
    #elif defined(_IO)
    #  define DC_PERF_IOC_ENABLE _IO('$', 0)
    #  define DC_PERF_IOC_DISABLE _IO('$', 1)
    #  define DC_PERF_IOC_SET_OUTPUT _IO('$', 5)
    #else
    #  define DC_PERF_IOC_ENABLE 0
    #  define DC_PERF_IOC_DISABLE 0
    #  define DC_PERF_IOC_SET_OUTPUT 0
    #endif

    static long dc_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
        if (nr < 0) { errno = ENOSYS; return -1; }
        return syscall(nr, a, b, c, d, e, f);
    }
    static uint64_t dc_load_acquire(uint64_t addr) {
        return __atomic_load_n((uint64_t *)(uintptr_t)addr, __ATOMIC_ACQUIRE);
    }
    static void dc_store_release(uint64_t addr, uint64_t value) {
        __atomic_store_n((uint64_t *)(uintptr_t)addr, value, __ATOMIC_RELEASE);
    }
    """
    long DC_SYS_move_pages, DC_SYS_pidfd_open, DC_SYS_process_madvise
    long DC_SYS_perf_event_open, DC_SYS_mbind, DC_SYS_set_mempolicy, DC_SYS_get_mempolicy
    int MADV_WILLNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLD, MADV_PAGEOUT
    int MADV_COLLAPSE
    unsigned long DC_PAGEMAP_SCAN, PAGE_IS_PRESENT
    unsigned long DC_PERF_IOC_ENABLE, DC_PERF_IOC_DISABLE, DC_PERF_IOC_SET_OUTPUT
    long dc_syscall6(long nr, long a, long b, long c, long d, long e, long f) nogil
    uint64_t dc_load_acquire(uint64_t addr) nogil
    void dc_store_release(uint64_t addr, uint64_t value) nogil

cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    int _SC_PAGESIZE

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

#: bytes per base page, from sysconf(_SC_PAGESIZE): the one page size of the package
PAGE_SIZE = sysconf(_SC_PAGESIZE)

#: the syscall numbers this platform's headers give (-1: unknown to them)
SYSCALLS = {
    "move_pages": DC_SYS_move_pages, "pidfd_open": DC_SYS_pidfd_open,
    "process_madvise": DC_SYS_process_madvise, "perf_event_open": DC_SYS_perf_event_open,
    "mbind": DC_SYS_mbind, "set_mempolicy": DC_SYS_set_mempolicy,
    "get_mempolicy": DC_SYS_get_mempolicy,
}
#: madvise advice values of this architecture (-1: unknown to its headers)
ADVICE = {"MADV_WILLNEED": MADV_WILLNEED, "MADV_HUGEPAGE": MADV_HUGEPAGE,
          "MADV_NOHUGEPAGE": MADV_NOHUGEPAGE, "MADV_COLD": MADV_COLD,
          "MADV_PAGEOUT": MADV_PAGEOUT, "MADV_COLLAPSE": MADV_COLLAPSE}
#: ioctl request numbers, encoded for this architecture (0: no ioctl headers)
PAGEMAP_SCAN = DC_PAGEMAP_SCAN
PAGEMAP_SCAN_PRESENT = PAGE_IS_PRESENT
PERF_EVENT_IOC_ENABLE = DC_PERF_IOC_ENABLE
PERF_EVENT_IOC_DISABLE = DC_PERF_IOC_DISABLE
PERF_EVENT_IOC_SET_OUTPUT = DC_PERF_IOC_SET_OUTPUT

DEFAULT_CHUNK = 16384


cdef inline long _ret(long rc) noexcept nogil:
    return -errno if rc < 0 else rc


# --- move_pages(2) ----------------------------------------------------------------------------
def move_pages_batch(int pid, const uint64_t[::1] addrs, const int32_t[::1] nodes,
                     int32_t[::1] status, int flags, Py_ssize_t chunk=DEFAULT_CHUNK):
    """Call move_pages(2) over ``addrs`` in chunks of ``chunk`` pages, GIL released.

    Args:
        pid: target process id (0 = the caller).
        addrs: page-aligned virtual addresses (bytes), one per page.
        nodes: destination node per page, or None for query mode (status = current node).
        status: output, one int32 per page: a node id or -errno.
        flags: MPOL_MF_MOVE or MPOL_MF_MOVE_ALL; ignored in query mode.
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
    if nodes is not None and nodes.shape[0] != n:
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
            # void ** and int * have the layout of uint64_t / int32_t arrays on LP64
            rc = dc_syscall6(DC_SYS_move_pages, <long>pid, <long>m, <long>&addrs[i],
                             <long>nodes_p, <long>&status[i], <long>flags)
            if rc < 0:
                err = errno
                break
            not_moved += rc
            i += m
    return not_moved, err, i


# --- processes --------------------------------------------------------------------------------
def pidfd_open(int pid, unsigned int flags=0):
    """pidfd_open(2): a pidfd, or -errno."""
    return _ret(dc_syscall6(DC_SYS_pidfd_open, pid, flags, 0, 0, 0, 0))


def process_madvise(int pidfd, const uint64_t[::1] starts, const uint64_t[::1] lengths,
                    Py_ssize_t first, Py_ssize_t n, int advice):
    """process_madvise(2) on ranges ``first .. first + n`` of (starts, lengths) (bytes), as
    one iovec array: the bytes advised, or -errno.  GIL released."""
    cdef Py_ssize_t k
    cdef long rc
    if first < 0 or n < 0 or first + n > starts.shape[0] or lengths.shape[0] != starts.shape[0]:
        raise ValueError("ranges out of bounds")
    cdef iovec *iov = <iovec *>malloc(max(n, 1) * sizeof(iovec))
    if iov == NULL:
        raise MemoryError()
    try:
        for k in range(n):
            iov[k].iov_base = <void *><size_t>starts[first + k]
            iov[k].iov_len = <size_t>lengths[first + k]
        with nogil:
            rc = _ret(dc_syscall6(DC_SYS_process_madvise, pidfd, <long>iov, n, advice, 0, 0))
    finally:
        free(iov)
    return rc


# --- perf -------------------------------------------------------------------------------------
def perf_event_open(const unsigned char[::1] attr, int pid, int cpu, int group_fd,
                    unsigned long flags):
    """perf_event_open(2) with a packed ``struct perf_event_attr``: an fd, or -errno."""
    return _ret(dc_syscall6(DC_SYS_perf_event_open, <long>&attr[0], pid, cpu, group_fd,
                            <long>flags, 0))


def load_acquire_u64(uint64_t address):
    """The u64 at ``address`` (e.g. a perf ring's ``data_head``), read with acquire order:
    no later memory access of this thread is done before it."""
    return dc_load_acquire(address)


def store_release_u64(uint64_t address, uint64_t value):
    """Store ``value`` at ``address`` (a perf ring's ``data_tail``) with release order: every
    earlier memory access of this thread (the copy out of the ring) is done before it."""
    dc_store_release(address, value)


# --- memory policies --------------------------------------------------------------------------
cdef inline long _mask_ptr(const unsigned long[::1] mask):
    return 0 if mask is None else <long>&mask[0]


def set_mempolicy(int mode, const unsigned long[::1] mask, unsigned long maxnode):
    """set_mempolicy(2) for the calling thread (``mask`` None: no nodes): 0 or -errno."""
    return _ret(dc_syscall6(DC_SYS_set_mempolicy, mode, _mask_ptr(mask), <long>maxnode,
                            0, 0, 0))


def mbind(unsigned long addr, unsigned long length, unsigned long mode,
          const unsigned long[::1] mask, unsigned long maxnode, unsigned int flags):
    """mbind(2) on ``[addr, addr + length)`` of the calling process: 0 or -errno."""
    cdef long p = _mask_ptr(mask)
    cdef long rc
    with nogil:
        rc = _ret(dc_syscall6(DC_SYS_mbind, <long>addr, <long>length, <long>mode, p,
                              <long>maxnode, flags))
    return rc


def get_mempolicy(unsigned long[::1] mask, unsigned long maxnode, unsigned long addr,
                  unsigned long flags):
    """get_mempolicy(2): ``(0, mode)`` with the nodes in ``mask``, or ``(-errno, 0)``."""
    cdef int mode = 0
    cdef long rc = _ret(dc_syscall6(DC_SYS_get_mempolicy, <long>&mode, <long>&mask[0],
                                    <long>maxnode, <long>addr, <long>flags, 0))
    return rc, mode
