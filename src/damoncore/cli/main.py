"""``damoncore``: the damo-compatible command line.  Only this package prints and exits:
a configuration error (also an action the backend cannot do) is one line on stderr and exit
status 2; other errors exit 1."""

from __future__ import annotations

import sys

from ..errors import ActionNotSupported, DamonError, InvalidConfig
from . import args as args_cmd
from . import demo, eval_sampling, numa_migrate, record, report, start, status
from .damo_options import ArgumentParser

SUBCMDS = {"demo": (demo, "run the embedded demo: monitoring + TPP on simulated memory"),
           "start": (start, "start monitoring (and DAMOS)"),
           "record": (record, "monitor and record the results"),
           "args": (args_cmd, "generate the kdamonds JSON for damo options"),
           "report": (report, "report recorded monitoring results"),
           "status": (status, "show the status of a running start"),
           "numa-migrate": (numa_migrate, "holistic NUMA migration (per-accessor TPP)"),
           "eval-sampling": (eval_sampling, "score region adaptations on simulated memory")}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="damoncore", description="User-space DAMON/DAMOS, damo-compatible")
    sub = p.add_subparsers(title="command", dest="command", metavar="<command>")
    sub.required = True
    for name, (mod, msg) in SUBCMDS.items():
        mod.set_argparser(sub.add_parser(name, help=msg))
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        SUBCMDS[args.command][0].main(args)
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
