"""``stop``: end a running ``start``/``record``/``numa-migrate`` as SIGTERM would (its
teardown runs: a record is closed complete, the socket removed; it exits 0), and wait until
it has ended."""

from __future__ import annotations

import os
import threading
import time

from ..errors import DamonError
from .control import add_run_args, call, find_run
from .status_server import socket_pid

WAIT_S = 120.0


def set_argparser(p):
    p.description = "Stop a running damoncore start, record or numa-migrate"
    add_run_args(p, "stop")
    p.add_argument("--no_wait", action="store_true",
                   help="return once the run took the request, before it has ended")


def ended(pid: int) -> bool:
    """The process is gone, or a zombie (it exited; its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"Z", b"X")


def main(args):
    path = find_run(args)
    reply = call(path, {"cmd": "stop"}, timeout=30.0)
    pid = reply.get("pid") or socket_pid(path)
    if args.no_wait or not pid or pid == os.getpid():
        return
    deadline = time.monotonic() + WAIT_S
    while not ended(pid):
        if time.monotonic() > deadline:
            raise DamonError(f"pid {pid} took the stop request but has not ended within "
                             f"{WAIT_S:g} s")
        threading.Event().wait(0.05)
