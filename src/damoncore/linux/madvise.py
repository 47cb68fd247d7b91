"""Advise on another process's memory with process_madvise(2) (x86_64 syscall numbers).

A remote process accepts only MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED and MADV_COLLAPSE (Linux 6.x,
checked on 6.18: ``process_madvise_remote_valid``); other advice (e.g. MADV_HUGEPAGE) is refused
up front with ``AdviceNotSupported``.  Ranges are passed as iovecs, UIO_MAXIOV (1024) per call.
Needs PTRACE_MODE_READ on the target and CAP_SYS_NICE.

Effects worth knowing: PAGEOUT reclaims clean file pages at once, but anonymous pages only when
swap exists; COLD only moves pages to the inactive LRU list.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from dataclasses import dataclass, field

import numpy as np

from damoncore.linux.errors import errno_name, raise_for_errno
from damoncore.errors import InvalidConfig

SYS_PIDFD_OPEN = 434  # x86_64
SYS_PROCESS_MADVISE = 440  # x86_64
UIO_MAXIOV = 1024

MADV_WILLNEED = 3
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25
REMOTE_ADVICE = frozenset({MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED, MADV_COLLAPSE})


class AdviceNotSupported(InvalidConfig):
    """process_madvise(2) does not accept this advice for another process."""

    def __init__(self, advice: int):
        self.advice = advice
        super().__init__(
            f"process_madvise does not accept advice {advice} on another process; "
            "supported: MADV_COLD(20), MADV_PAGEOUT(21), MADV_WILLNEED(3), MADV_COLLAPSE(25)"
        )


IOVEC_BYTES = 16  # struct iovec {void *iov_base; size_t iov_len;} on LP64


@functools.lru_cache(maxsize=1)
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def pidfd_open(pid: int) -> int:
    """A pidfd (an fd number) for ``pid``; raises TargetGone if it does not exist."""
    fd = _libc().syscall(ctypes.c_long(SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        raise_for_errno(ctypes.get_errno(), "pidfd_open", pid)
    return int(fd)


@dataclass
class MadviseResult:
    """Outcome of one ``process_madvise`` batch.

    Attributes:
        bytes_advised: bytes the kernel accepted.
        errors: errno name -> number of ranges refused with it (e.g. ``{'ENOMEM': 1}`` for a range
            that is not mapped).
        nr_calls: syscalls issued.
    """

    bytes_advised: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    nr_calls: int = 0


def process_madvise(pid: int, starts, lengths, advice: int) -> MadviseResult:
    """Apply ``advice`` to ranges ``[starts[i], starts[i] + lengths[i])`` (bytes) of ``pid``.

    A range the kernel refuses is counted in ``errors`` and the next ranges are still advised.
    Raises TargetGone if the process exits, AdviceNotSupported for advice a remote process does
    not accept, SyscallError for whole-call failures such as EPERM.
    """
    if advice not in REMOTE_ADVICE:
        raise AdviceNotSupported(advice)
    s = np.asarray(starts, dtype=np.uint64).ravel()
    ln = np.asarray(lengths, dtype=np.uint64).ravel()
    if s.shape != ln.shape:
        raise ValueError("starts and lengths must have the same length")
    # iovec is {void *, size_t}: interleave into one uint64 array and pass it as is.
    iov = np.empty(2 * s.size, dtype=np.uint64)
    iov[0::2], iov[1::2] = s, ln
    lens = ln.astype(np.int64)
    result = MadviseResult()
    libc = _libc()
    pidfd = pidfd_open(pid)
    try:
        i = 0
        while i < s.size:
            n = min(UIO_MAXIOV, s.size - i)
            ptr = iov.ctypes.data + i * IOVEC_BYTES
            rc = libc.syscall(
                ctypes.c_long(SYS_PROCESS_MADVISE), ctypes.c_int(pidfd), ctypes.c_void_p(ptr),
                ctypes.c_size_t(n), ctypes.c_int(advice), ctypes.c_uint(0),
            )  # fmt: skip
            result.nr_calls += 1
            if rc < 0:
                err = ctypes.get_errno()
                if err in (errno.ESRCH, errno.EPERM, errno.EBADF, errno.ENOSYS):
                    raise_for_errno(err, "process_madvise", pid, f"advice {advice}")
                # The first range of this batch was refused: count it and go on after it.
                name = errno_name(err)
                result.errors[name] = result.errors.get(name, 0) + 1
                i += 1
                continue
            result.bytes_advised += int(rc)
            # rc covers whole iovecs; a short count means the next range failed (retried alone).
            done = np.searchsorted(np.cumsum(lens[i : i + n]), rc, side="right")
            i += max(int(done), 1)
    finally:
        os.close(pidfd)
    return result


def madvise_range(pid: int, start: int, end: int, advice: int) -> MadviseResult:
    """Apply ``advice`` to one range ``[start, end)`` (bytes) of ``pid``."""
    return process_madvise(pid, [start], [end - start], advice)
