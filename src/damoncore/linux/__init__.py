"""Thin, tested wrappers over Linux interfaces; each module has one job.

_syscalls (Cython: every raw syscall, numbers from the platform's <sys/syscall.h>, the perf
ring's acquire/release accesses), system (page size, top of user space), formats (cpulist
and meminfo parsers), migrate (move_pages), pagemap (+ PAGEMAP_SCAN), kpageflags, page_idle,
madvise (process_madvise), pidfd, mempolicy, perf (page-fault sampling) and perf_ring.
Import the submodule you need.
"""
