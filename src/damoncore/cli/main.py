"""``damoncore``: the damo-compatible command line.  Only this package prints and exits:
a configuration error (also an action the backend cannot do) is one line on stderr and exit
status 2; other errors exit 1."""

from __future__ import annotations

import importlib
import sys

from ..errors import ActionNotSupported, DamonError, InvalidConfig
from .damo_options import ArgumentParser

# subcommand -> (module under damoncore.cli, help); a module is imported only when its
# subcommand runs (or for --help): start's first sample need not wait for report's imports
SUBCMDS = {"demo": ("demo", "run the embedded demo: monitoring + TPP on simulated memory"),
           "start": ("start", "start monitoring (and DAMOS)"),
           "record": ("record", "monitor and record the results"),
           "args": ("args", "generate the kdamonds JSON for damo options"),
           "report": ("report", "report recorded monitoring results"),
           "status": ("status", "show the status of a running start"),
           "numa-migrate": ("numa_migrate", "holistic NUMA migration (per-accessor TPP)"),
           "eval-sampling": ("eval_sampling", "score region adaptations on simulated memory")}


def _module(name):
    mod = SUBCMDS[name][0]                    # a module object is taken as it is
    return importlib.import_module(f"{__package__}.{mod}") if isinstance(mod, str) else mod


def build_parser(only=None) -> ArgumentParser:
    """The parser; with ``only``, that subcommand's options alone are set up (the others
    are listed, with no options)."""
    p = ArgumentParser(prog="damoncore", description="User-space DAMON/DAMOS, damo-compatible")
    sub = p.add_subparsers(title="command", dest="command", metavar="<command>")
    sub.required = True
    for name, (_, msg) in SUBCMDS.items():
        sp = sub.add_parser(name, help=msg)
        if only is None or name == only:
            _module(name).set_argparser(sp)
    return p


def _chosen(argv):
    """The subcommand argv names before any option, if any."""
    for a in argv:
        if a.startswith("-"):
            return None
        return a if a in SUBCMDS else None
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(_chosen(argv)).parse_args(argv)
        _module(args.command).main(args)
    except (InvalidConfig, ActionNotSupported) as e:
        # an action the chosen backend cannot do is a bad option value like any other
        print(f"damoncore: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except DamonError as e:
        print(f"damoncore: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
