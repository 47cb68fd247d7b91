"""How every subcommand ends on SIGINT, SIGTERM and SIGHUP.

:func:`main` installs :func:`raising` for the whole command: a stop signal raises
:class:`Interrupted` (so set-up and reports unwind through their ``finally`` blocks and
print one line).  A long-running loop (start, record, demo, numa-migrate) wraps itself and
its teardown in :func:`stopping`: there a stop signal only calls ``stop()``, the loop ends
at its next sample, the teardown (closing a record, the status socket) runs to the end,
and further signals are ignored, so nothing the user asked to keep is cut short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A stop signal outside a monitoring loop (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _install(handler) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    pid = os.getpid()

    def in_this_process(signum, frame):
        if os.getpid() != pid:
            # a forked child (a pool worker) inherited the handler: die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        handler(signum, frame)
    return {s: signal.signal(s, in_this_process) for s in SIGNALS}


def _restore(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)


@contextlib.contextmanager
def raising():
    """Stop signals raise :class:`Interrupted` inside the block."""
    def handler(signum, frame):
        raise Interrupted(signum)
    old = _install(handler)
    try:
        yield
    finally:
        _restore(old)


class Stop:
    """What :func:`stopping` yields: ``signum`` of the signal that ended the loop, if any."""

    signum: int | None = None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None


@contextlib.contextmanager
def stopping(stop):
    """Stop signals call ``stop()`` (once) inside the block; later ones are ignored."""
    state = Stop()

    def handler(signum, frame):
        if state.signum is None:
            state.signum = signum
            stop()
    old = _install(handler)
    try:
        yield state
    finally:
        _restore(old)
