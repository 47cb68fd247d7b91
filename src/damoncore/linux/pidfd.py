"""Process handles through pidfd_open(2): tell whether a process still runs without racing
pid reuse."""

from __future__ import annotations

import os
import select

from damoncore.linux import _syscalls
from damoncore.linux.errors import raise_for_errno


def pidfd_open(pid: int) -> int:
    """A pidfd (an fd number) for ``pid``; raises TargetGone if it does not exist,
    FeatureMissing on a kernel (< 5.3) or platform without pidfd_open."""
    fd = _syscalls.pidfd_open(pid)
    if fd < 0:
        raise_for_errno(-fd, "pidfd_open", pid)
    return int(fd)


class ProcessWatch:
    """Tells whether a process is still running (not exited or zombie) through a pidfd:
    it polls readable once the process has exited."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = pidfd_open(pid)        # TargetGone if it does not exist
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def alive(self) -> bool:
        return self.fd >= 0 and not self._poll.poll(0)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
