"""``tune``: change a running ``start``/``record``/``numa-migrate``'s schemes, quotas,
goals, filters, intervals, pause and targets online, as ``damo tune`` does.

Like damo's, it takes the full spec (damo's start options or ``--kdamonds`` JSON): what is
left out takes its default, not the running value.  The run commits it between two samples
with the kernel's commit semantics (statistics, quota charge state and region history
kept: see :mod:`damoncore.core.commit`).  Bad input is refused with one line (exit 2) and
the run is left unchanged; the options are checked here first, then by the run against
its backend and its running contexts.
"""

from __future__ import annotations

import copy
import json
import re

from ..errors import InvalidConfig
from .control import add_run_args, call, find_run
from .damo_args import NodeResolver, _load_json_arg, kdamonds_from_args, validate
from .damo_options import set_damon_params_argparser
from .live import namespace_from, spec_defaults

#: seconds to wait for the run's answer (it commits at its next sample boundary)
TIMEOUT_S = 90.0


def set_argparser(p):
    set_damon_params_argparser(p)
    p.add_argument("--quota_goals_only", action="store_true",
                   help="commit the schemes' quota goals only")
    p.add_argument("--json", action="store_true",
                   help="print the run's reply as JSON (each context's clock time at the "
                        "commit, in us)")
    add_run_args(p, "tune")
    p.description = ("Change a running damoncore start's DAMON parameters online (the full "
                     "spec, as damo tune: what is left out takes its default)")


class _AnyNode(NodeResolver):
    """Stands in for the run's nodes while the options are checked here (the run checks
    them against its own)."""

    def node_ranges(self, nid):
        return [(nid << 40, (nid + 1) << 40)]

    def default_paddr(self):
        return [(0, 1 << 30)]


def spec_fields(args) -> dict:
    """The damo option values of ``args``, files read in: the run may not see this
    process's working directory."""
    fields = {k: v for k, v in vars(args).items() if k in spec_defaults()}
    if fields.get("kdamonds"):
        fields["kdamonds"] = json.dumps(_load_json_arg(fields["kdamonds"], "--kdamonds"))
    t = fields.get("deducible_target")
    if t and t != "paddr" and not re.fullmatch(r"[0-9]+", t):
        fields["deducible_target"] = json.dumps(_load_json_arg(
            t, "<deducible string>", " (expected 'paddr', a process id or a kdamonds "
                                     "JSON file)"))
    return fields


def main(args):
    fields = spec_fields(args)
    validate(kdamonds_from_args(namespace_from(copy.deepcopy(fields)), _AnyNode()))
    path = find_run(args)
    try:
        reply = call(path, {"cmd": "tune", "options": fields,
                            "quota_goals_only": args.quota_goals_only}, TIMEOUT_S)
    except InvalidConfig as e:
        raise InvalidConfig(f"{e} (the run is unchanged)") from None
    if args.json:
        print(json.dumps(reply))
    else:
        print(f"pid {reply.get('pid')}: committed to {reply.get('contexts')} context(s)")
