"""Reaching a running ``start``/``record``/``numa-migrate`` through its control socket:
which run (``--pid``, ``--socket``, or the only live one), one request, and its reply
(an error reply becomes the exception the CLI turns into one line and an exit status)."""

from __future__ import annotations

import glob
import os

from ..errors import DamonError, InvalidConfig
from ..kdamonds import show
from .damo_options import PID_MAX, ArgsError, int_arg
from .status_server import remove_stale, request, socket_dir, socket_pid


def add_run_args(p, what: str) -> None:
    p.add_argument("--pid", type=int_arg(1, PID_MAX), metavar="<pid>",
                   help=f"the damoncore start/record/numa-migrate process to {what} "
                        f"(default: the only one running)")
    p.add_argument("--socket", metavar="<path>", help="its control socket path")


def live_sockets() -> list:
    """The sockets of live runs in the socket directory (dead runs' ones are removed)."""
    paths = sorted(glob.glob(os.path.join(socket_dir(), "*.sock")))
    return [p for p in paths if not remove_stale(p)]


def find_run(args) -> str:
    """The control socket of the run ``args`` (--pid, --socket) names, or of the only
    live run."""
    if args.socket:
        if not os.path.exists(args.socket):
            raise ArgsError(f"--socket {show(args.socket)}: no such file")
        return args.socket
    if args.pid:
        path = os.path.join(socket_dir(), f"{args.pid}.sock")
        if not os.path.exists(path) or remove_stale(path):
            raise DamonError(f"no damoncore run answers at {path} (is pid {args.pid} a "
                             f"damoncore start, record or numa-migrate?)")
        return path
    live = live_sockets()
    if not live:
        raise DamonError(f"no running damoncore start found (no live socket in "
                         f"{socket_dir()})")
    if len(live) > 1:
        pids = ", ".join(str(socket_pid(p)) for p in live)
        raise ArgsError(f"{len(live)} damoncore runs are live (pids {pids}): choose one "
                        f"with --pid")
    return live[0]


def call(path: str, req: dict, timeout: float) -> dict:
    """``req``'s reply from the run at ``path``; an error reply raises (status 2:
    :class:`InvalidConfig`, else :class:`DamonError`)."""
    try:
        reply = request(path, req, timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        raise DamonError(f"the run at {path} is gone") from None
    except TimeoutError:
        raise DamonError(f"the run at {path} did not answer within {timeout:g} s") from None
    except (OSError, ValueError) as e:
        raise DamonError(f"cannot reach {path}: {getattr(e, 'strerror', None) or e}") \
            from None
    if isinstance(reply, dict) and "error" in reply:
        if reply.get("status") == 2:
            raise InvalidConfig(reply["error"])
        raise DamonError(reply["error"])
    return reply
