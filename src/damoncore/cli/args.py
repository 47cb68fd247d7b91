"""``args damon``: print the kdamonds JSON for the damo options (``damo args damon``)."""

from __future__ import annotations

import json

from .. import kdamonds as kd
from ..errors import DamonError
from . import backends
from .checks import output_file
from .damo_args import kdamonds_from_args, validate
from .damo_options import set_damon_params_argparser


def set_argparser(p):
    sub = p.add_subparsers(title="argument type", dest="args_type", metavar="<type>")
    sub.required = True
    d = sub.add_parser("damon", help="DAMON parameters")
    set_damon_params_argparser(d)
    d.add_argument("--format", choices=["json"], default="json", help="output format")
    d.add_argument("--raw", action="store_true", help="print numbers in raw form")
    d.add_argument("--out", metavar="<file>", help="save the output to the given file")
    d.add_argument("--backend", choices=backends.BACKENDS,
                   help="where --numa_node ranges come from (default: this machine, "
                        "or the simulator if asked)")
    d.add_argument("--sim_preset", choices=sorted(backends.PRESETS), default="seed")
    backends.add_root_args(d)
    p.description = "Generate complex command arguments for other commands"


def render(args) -> str:
    if args.backend == "sim":
        resolver = backends.SimResolver(backends.sim_machine(args.sim_preset)[0])
    else:
        resolver = backends.RealResolver(args.sysfs_root, args.procfs_root)
    d = kdamonds_from_args(args, resolver)
    return json.dumps(kd.kdamonds_to_dict(validate(d), raw=args.raw), indent=4)


def main(args):
    if args.out:
        output_file(args.out, "--out")
    text = render(args)
    if args.out:
        try:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        except OSError as e:
            raise DamonError(f"--out {args.out}: writing failed ({e.strerror})") from None
    else:
        print(text)
