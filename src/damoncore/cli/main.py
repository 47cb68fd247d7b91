"""``damoncore``: the damo-compatible command line.  Only this package prints and exits.

Every failure of every subcommand ends here as one line on stderr:

- exit status 2: bad input: an option value, a file named on the command line (missing,
  a directory, not JSON, not a record), an action the backend cannot do;
- exit status 1: a run-time failure: the kernel refused, a feature or package is missing,
  the disk is full, the target is gone; and, as a last resort, anything unexpected (the
  line names the exception type);
- exit status 0 when a stop signal (SIGINT, SIGTERM, SIGHUP) ends a long-running command.

``--debug`` or ``DAMONCORE_DEBUG=1`` shows the Python traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import warnings

from ..errors import ActionNotSupported, DamonError, InvalidConfig
from .damo_options import ArgsError, ArgumentParser
from .signals import Interrupted, raising

# subcommand -> (module under damoncore.cli, help); a module is imported only when its
# subcommand runs (or for --help): start's first sample need not wait for report's imports
SUBCMDS = {"demo": ("demo", "run the embedded demo: monitoring + TPP on simulated memory"),
           "start": ("start", "start monitoring (and DAMOS)"),
           "record": ("record", "monitor and record the results"),
           "args": ("args", "generate the kdamonds JSON for damo options"),
           "report": ("report", "report recorded monitoring results"),
           "replay": ("replay", "replay DAMOS schemes over a record, on simulated placement"),
           "status": ("status", "show the status of a running start"),
           "tune": ("tune", "change a running start's parameters online (damo tune)"),
           "stop": ("stop", "stop a running start, record or numa-migrate"),
           "numa-migrate": ("numa_migrate", "holistic NUMA migration (per-accessor TPP)"),
           "eval-sampling": ("eval_sampling", "score region adaptations on simulated memory")}
# ended by a stop signal, these exit 0: stopping is how a user ends them
LONG_RUNNING = ("demo", "start", "record", "numa-migrate")
# an OSError with one of these, about a file the user named, is bad input (exit 2)
PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
               errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.EROFS, errno.EINVAL}
MAX_LINE = 400


def version() -> str:
    from .. import __version__
    return __version__


def _module(name):
    mod = SUBCMDS[name][0]                    # a module object is taken as it is
    return importlib.import_module(f"{__package__}.{mod}") if isinstance(mod, str) else mod


def build_parser(only=None) -> ArgumentParser:
    """The parser; with ``only``, that subcommand's options alone are set up (the others
    are listed, with no options)."""
    p = ArgumentParser(prog="damoncore", description="User-space DAMON/DAMOS, damo-compatible")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error (also: DAMONCORE_DEBUG=1)")
    sub = p.add_subparsers(title="command", dest="command", metavar="<command>")
    sub.required = True
    for name, (_, msg) in SUBCMDS.items():
        sp = sub.add_parser(name, help=msg)
        if only is None or name == only:
            _module(name).set_argparser(sp)
    return p


def _chosen(argv):
    """The subcommand argv names before any option but --debug, if any."""
    for a in argv:
        if a == "--debug":
            continue
        if a.startswith("-"):
            return None
        return a if a in SUBCMDS else None
    return None


def _debug_requested(argv) -> bool:
    if os.environ.get("DAMONCORE_DEBUG", "") not in ("", "0"):
        return True
    for a in argv:                      # the global option comes before the command
        if a in SUBCMDS:
            return False
        if a == "--debug":
            return True
    return False


def _line(msg: str) -> str:
    """One line, of a readable length, whatever the message held."""
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= MAX_LINE else msg[:MAX_LINE - 3] + "..."


class OutputError(OSError):
    """Writing the standard output failed (disk full, a closed pipe's neighbour)."""


class _Stdout:
    """sys.stdout whose write errors say they are about the standard output."""

    def __init__(self, f):
        self._f = f

    def _call(self, name, *a):
        try:
            return getattr(self._f, name)(*a)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e.errno, f"writing the standard output: {e.strerror}") from e

    def write(self, text):
        return self._call("write", text)

    def flush(self):
        return self._call("flush")

    def __getattr__(self, name):
        return getattr(self._f, name)


def _os_error(e: OSError, command: str | None) -> tuple[int, str]:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    what = e.strerror or str(e) or type(e).__name__
    if where and e.errno in PATH_ERRNOS:
        return 2, f"error: {where}: {what}"
    if where:
        return 1, f"{where}: {what}"
    return 1, what if isinstance(e, OutputError) else f"{command or 'damoncore'}: {what}"


def classify(e: BaseException, command: str | None) -> tuple[int, str]:
    """(exit status, message) for an exception that ended a command."""
    if isinstance(e, Interrupted):
        if command in LONG_RUNNING:
            return 0, ""
        return 128 + e.signum, f"interrupted by {signal.Signals(e.signum).name}"
    if isinstance(e, KeyboardInterrupt):
        return (0, "") if command in LONG_RUNNING else (130, "interrupted")
    if isinstance(e, (InvalidConfig, ActionNotSupported)):
        # an action the chosen backend cannot do is a bad option value like any other
        return 2, f"error: {e or type(e).__name__}"
    if isinstance(e, DamonError):
        return 1, str(e) or type(e).__name__
    if isinstance(e, OSError):
        return _os_error(e, command)
    if isinstance(e, ValueError):       # malformed input that reached a parser (bytes, JSON)
        return 2, f"error: {e or type(e).__name__}"
    if isinstance(e, MemoryError):
        return 1, "out of memory"
    return 1, (f"internal error: {type(e).__name__}: {e} (--debug or DAMONCORE_DEBUG=1 "
               f"shows the traceback)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_requested(argv)
    command = None
    real_stdout = sys.stdout
    if real_stdout is not None:
        sys.stdout = _Stdout(real_stdout)
    try:
        with raising(), warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            args = build_parser(_chosen(argv)).parse_args(argv)
            command = args.command
            _module(command).main(args)
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (| head): not an error; keep Python from complaining at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except (Exception, Interrupted, KeyboardInterrupt) as e:
        if debug and command is not None:   # a usage error needs no traceback
            raise
        if command is None and isinstance(e, ArgsError):
            # a parse error: name the command it is about
            command = next((a for a in argv if a in SUBCMDS), None)
        code, msg = classify(e, command)
        if msg:
            print(f"damoncore: {_line(msg)}", file=sys.stderr)
        return code
    finally:
        sys.stdout = real_stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
