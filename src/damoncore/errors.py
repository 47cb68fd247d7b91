"""One exception hierarchy for the whole package.

Library code raises these; only the CLI prints and exits.
"""


class DamonError(Exception):
    """Base of every damoncore error."""


class InvalidConfig(DamonError, ValueError):
    """A user-supplied value is out of range or inconsistent (names the value)."""


class FeatureMissing(DamonError):
    """The running kernel (or this machine) lacks a feature the caller asked for.

    ``feature`` names it the way a user would search for it, e.g.
    ``CONFIG_IDLE_PAGE_TRACKING`` or ``a second NUMA node``.
    """

    def __init__(self, feature, detail=""):
        self.feature = feature
        msg = f"missing kernel feature: {feature}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ActionNotSupported(DamonError):
    """A scheme asks for an action its ops backend cannot perform."""


class AdaptationError(DamonError):
    """A custom region adaptation left a target's regions broken (names the adaptation)."""


class SyscallError(DamonError, OSError):
    """A system call failed; carries errno, the syscall name and the pid if any."""

    def __init__(self, errno_, syscall, pid=None, detail=""):
        import os

        self.syscall = syscall
        self.pid = pid
        where = f" (pid {pid})" if pid is not None else ""
        extra = f": {detail}" if detail else ""
        OSError.__init__(self, errno_, f"{syscall}{where}: {os.strerror(errno_)}{extra}")


class TargetGone(DamonError):
    """The monitored process exited; monitoring of it ends cleanly."""

    def __init__(self, pid):
        self.pid = pid
        super().__init__(f"target process {pid} exited")


class FilterNotSupported(ActionNotSupported):
    """A scheme has an ops filter its ops backend cannot evaluate."""
