"""errno -> damoncore exceptions, shared by every syscall wrapper in ``linux/``."""

from __future__ import annotations

import errno as _errno

from damoncore.errors import FeatureMissing, InvalidConfig, SyscallError, TargetGone


class NodeUnavailable(InvalidConfig):
    """A NUMA node named as a destination is not online or has no memory."""

    def __init__(self, node: int, detail: str = ""):
        self.node = node
        msg = f"NUMA node {node} is not online or has no memory"
        super().__init__(msg + (f" ({detail})" if detail else ""))


def errno_name(err: int) -> str:
    """Symbolic name of a positive errno value, e.g. ``2 -> 'ENOENT'``."""
    return _errno.errorcode.get(err, f"E{err}")


def raise_for_errno(err: int, syscall: str, pid: int | None = None, detail: str = ""):
    """Raise the named exception for a whole-call failure ``err`` of ``syscall``.

    ESRCH on a pid means the target exited (TargetGone); ENOSYS means the kernel lacks the call
    (FeatureMissing); everything else is a SyscallError carrying errno, syscall and pid.
    """
    if err == _errno.ESRCH and pid is not None:
        raise TargetGone(pid)
    if err == _errno.ENOSYS:
        raise FeatureMissing(f"{syscall}(2)", detail or "syscall not implemented by this kernel")
    raise SyscallError(err, syscall, pid, detail)
