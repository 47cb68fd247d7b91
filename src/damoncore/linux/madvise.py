"""Advise on another process's memory with process_madvise(2).

A remote process accepts only MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED and MADV_COLLAPSE (Linux 6.x,
checked on 6.18: ``process_madvise_remote_valid``); other advice (e.g. MADV_HUGEPAGE) is refused
up front with ``AdviceNotSupported``.  Ranges are passed as iovecs, UIO_MAXIOV (1024) per call.
Needs PTRACE_MODE_READ on the target and CAP_SYS_NICE.  The advice values are this
architecture's (``asm/mman.h``, through :mod:`damoncore.linux._syscalls`).

Effects worth knowing: PAGEOUT reclaims clean file pages at once, but anonymous pages only when
swap exists; COLD only moves pages to the inactive LRU list; COLLAPSE turns each naturally
aligned huge-page-sized extent wholly inside a range into a transparent huge page, whatever
the sysfs THP settings say (:func:`check_collapse` tells whether the kernel has THP).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import numpy as np

from damoncore.errors import FeatureMissing, InvalidConfig
from damoncore.linux import _syscalls
from damoncore.linux.errors import errno_name, raise_for_errno
from damoncore.linux.pidfd import pidfd_open

UIO_MAXIOV = 1024

MADV_WILLNEED = _syscalls.ADVICE["MADV_WILLNEED"]
MADV_HUGEPAGE = _syscalls.ADVICE["MADV_HUGEPAGE"]
MADV_NOHUGEPAGE = _syscalls.ADVICE["MADV_NOHUGEPAGE"]
MADV_COLD = _syscalls.ADVICE["MADV_COLD"]
MADV_PAGEOUT = _syscalls.ADVICE["MADV_PAGEOUT"]
MADV_COLLAPSE = _syscalls.ADVICE["MADV_COLLAPSE"]
#: the advice a remote process accepts (those this platform's headers know)
REMOTE_ADVICE = frozenset({MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED, MADV_COLLAPSE}) - {-1}


class AdviceNotSupported(InvalidConfig):
    """process_madvise(2) does not accept this advice for another process."""

    def __init__(self, advice: int):
        self.advice = advice
        names = ", ".join(f"{n}({v})" for n, v in _syscalls.ADVICE.items()
                          if v in REMOTE_ADVICE)
        super().__init__(f"process_madvise does not accept advice {advice} on another "
                         f"process; supported: {names}")


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
    s = np.ascontiguousarray(starts, dtype=np.uint64).ravel()
    ln = np.ascontiguousarray(lengths, dtype=np.uint64).ravel()
    if s.shape != ln.shape:
        raise ValueError("starts and lengths must have the same length")
    lens = ln.astype(np.int64)
    result = MadviseResult()
    pidfd = pidfd_open(pid)
    try:
        i = 0
        while i < s.size:
            n = min(UIO_MAXIOV, s.size - i)
            rc = _syscalls.process_madvise(pidfd, s, ln, i, n, advice)
            result.nr_calls += 1
            if rc < 0:
                err = -rc
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


THP_DIR = "kernel/mm/transparent_hugepage"


def check_collapse(sysfs_root: str = "/sys") -> None:
    """FeatureMissing unless MADV_COLLAPSE can work: transparent huge pages
    (CONFIG_TRANSPARENT_HUGEPAGE; MADV_COLLAPSE, Linux 6.1+, ignores the sysfs THP
    settings, but not their absence) and an advice number the headers know."""
    if MADV_COLLAPSE < 0:
        raise FeatureMissing("MADV_COLLAPSE", "the system headers do not define it (Linux 6.1+)")
    if not os.path.isdir(os.path.join(sysfs_root, THP_DIR)):
        raise FeatureMissing("CONFIG_TRANSPARENT_HUGEPAGE",
                             f"the collapse action (MADV_COLLAPSE) needs transparent huge "
                             f"pages; {os.path.join(sysfs_root, THP_DIR)} is missing")


def madvise_range(pid: int, start: int, end: int, advice: int) -> MadviseResult:
    """Apply ``advice`` to one range ``[start, end)`` (bytes) of ``pid``."""
    return process_madvise(pid, [start], [end - start], advice)
