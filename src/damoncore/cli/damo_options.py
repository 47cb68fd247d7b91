"""damo's DAMON parameter options (``damo start`` / ``damo args damon``), same names,
metavars and nargs, so a damo command line works unchanged.

Values stay strings here; :mod:`damoncore.cli.damo_args` turns them into the kdamonds dict.
"""

from __future__ import annotations

import argparse

from ..errors import InvalidConfig
from ..kdamonds import show
from ..schemes.scheme import ACTIONS, GOAL_METRICS, U64_MAX


class ArgsError(InvalidConfig):
    """A malformed command line; the message is one line naming the offending value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`ArgsError` instead of printing usage and exiting."""

    def error(self, message):
        raise ArgsError(message.replace("\n", " "))


def int_arg(lo: int = 0, hi: int = U64_MAX):
    """argparse ``type``: a decimal integer in ``lo..hi``."""
    def integer(text: str) -> int:
        s = text.strip()
        try:
            if len(s) > 24:
                raise ValueError
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{show(text)} is not an integer in "
                                             f"{lo}..{hi}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is out of the range {lo}..{hi}")
        return v
    return integer


PID_MAX = 1 << 22       # the kernel's PID_MAX_LIMIT
NID_MAX = (1 << 10) - 1  # MAX_NUMNODES with the largest CONFIG_NODES_SHIFT
COUNT_MAX = 1 << 16      # contexts, targets, schemes, filters, goals


def _monitoring(p):
    p.add_argument("--ops", choices=["vaddr", "paddr", "fvaddr"], action="append",
                   help="monitoring operations set (address space)")
    p.add_argument("--target_pid", type=int_arg(1, PID_MAX), metavar="<pid>", action="append",
                   help="pid of monitoring target process")
    p.add_argument("-r", "--regions", metavar='"<start>-<end> ..."', type=str,
                   action="append", help="monitoring target address regions")
    p.add_argument("--numa_node", metavar="<node id>", type=int_arg(0, NID_MAX), nargs="+",
                   action="append",
                   help="if target is 'paddr', limit it to the numa node")
    p.add_argument("--monitoring_intervals_autotune", action="store_true",
                   help="use default monitoring intervals goal (4%% 3 5ms 10s)")
    p.add_argument("--monitoring_intervals", nargs=3, action="append",
                   metavar=("<sample>", "<aggr>", "<update>"), help="monitoring intervals (us)")
    p.add_argument("--monitoring_intervals_goal", nargs=4, action="append",
                   metavar=("<access_bp>", "<aggrs>", "<min_sample_us>", "<max_sample_us>"),
                   help="monitoring intervals auto-tuning goal")
    p.add_argument("--monitoring_nr_regions_range", nargs=2, action="append",
                   metavar=("<min>", "<max>"), help="min/max number of monitoring regions")
    p.add_argument("--sample_primitives", action="append", choices=["page_table", "page_fault"],
                   nargs="+", help="access sampling primitives to use")
    p.add_argument("--sample_filter", nargs="+", action="append", default=[],
                   metavar="<<allow|reject> [none] <cpu|threads|write> [option]>",
                   help="access sample filter, e.g. 'allow cpu 0-4', 'reject write'")
    p.add_argument("--nr_sample_filters", type=int_arg(0, COUNT_MAX), nargs="+",
                   metavar="<integer>",
                   help="number of sample filters for each context (in order)")
    for name, mv, what in (("--exp_ops_use_reports", "<Y|N>", "use access reports"),
                           ("--exp_ops_write_only", "<Y|N>", "monitor writes only"),
                           ("--exp_ops_cpus", "<cpulist>", "monitor for given cpus only"),
                           ("--exp_ops_tids", "<thread ids list>", "given threads only")):
        p.add_argument(name, action="append", metavar=mv, help=f"{what} (experimental)")
    from ..core.adaptations import ADAPTATIONS      # damoncore extension (issue 14)
    p.add_argument("--adaptation", choices=list(ADAPTATIONS), action="append",
                   help="region adaptation algorithm, per context in order (one: every "
                        "context); default: kernel (damoncore extension)")
    p.add_argument("--damon_addr_unit", metavar="<bytes>", action="append",
                   help="DAMON address unit (only 1 is supported)")
    p.add_argument("--refresh_stat", metavar="<milliseconds>", action="append",
                   help="automatic kdamond internal stat refresh interval")
    p.add_argument("--nr_targets", metavar="<number>", nargs="+", type=int_arg(0, COUNT_MAX),
                   help="number of monitoring targets for each context (in order)")
    p.add_argument("--obsolete_targets", metavar="<target index>", nargs="+",
                   type=int_arg(0, COUNT_MAX),
                   help="obsolete targets")
    p.add_argument("--nr_ctxs", metavar="<number>", nargs="+", type=int_arg(0, COUNT_MAX),
                   help="number of contexts for each kdamond (in order)")
    p.add_argument("--pause_ctx", type=int_arg(0, COUNT_MAX), nargs="+",
                   metavar="<context index>", help="contexts to pause")
    for short, long_, mv, what in (("-s", "--sample", "<microseconds>", "sampling interval"),
                                   ("-a", "--aggr", "<microseconds>", "aggregate interval"),
                                   ("-u", "--updr", "<microseconds>", "regions update interval"),
                                   ("-n", "--minr", "<# regions>", "minimal number of regions"),
                                   ("-m", "--maxr", "<# regions>", "maximum number of regions")):
        p.add_argument(short, long_, metavar=mv, action="append", help=what)


def _damos(p):
    p.add_argument("--damos_action", metavar="<action>", nargs="+", action="append", default=[],
                   help=f"damos action ({','.join(ACTIONS)}); migrate_{{hot,cold}} take a "
                        "target node id or <nid> <weight> pairs")
    p.add_argument("--damos_sz_region", metavar=("<min>", "<max>"), nargs=2, default=[],
                   action="append", help="min/max size of damos target regions (bytes)")
    p.add_argument("--damos_access_rate", metavar=("<min>", "<max>"), nargs=2, default=[],
                   action="append", help="min/max access rate of damos target regions (percent)")
    p.add_argument("--damos_age", metavar=("<min>", "<max>"), nargs=2, default=[],
                   action="append", help="min/max age of damos target regions (microseconds)")
    p.add_argument("--damos_apply_interval", metavar="<microseconds>", action="append",
                   default=[], help="the apply interval for the scheme")
    p.add_argument("--damos_quotas", default=[], metavar="<quota parameter>", nargs="+",
                   action="append", help="damos quotas (<time (ms)> [<size (bytes)> [<reset "
                   "interval (ms)> [<sz weight> [<access rate weight> [<age weight>]]]]])")
    p.add_argument("--damos_quota_interval", default=[], metavar="<milliseconds>",
                   action="append", help="quota reset interval")
    p.add_argument("--damos_quota_time", default=[], metavar="<milliseconds>",
                   action="append", help="time quota")
    p.add_argument("--damos_quota_space", default=[], metavar="<bytes>", action="append",
                   help="space quota")
    p.add_argument("--damos_quota_weights", default=[], metavar="<permil>", nargs=3,
                   action="append", help="quota's prioritization weights")
    p.add_argument("--damos_quota_fail_charge_ratio", default=[], nargs=2, action="append",
                   metavar=("<numerator>", "<denominator>"),
                   help="quota failed regions charge ratio (not supported)")
    p.add_argument("--damos_quota_goal", nargs="+", action="append", default=[],
                   metavar="<metric or value>",
                   help=f"damos quota goal (<metric> <target value> [optional value]); "
                        f"<metric> should be {{{','.join(GOAL_METRICS)}}}")
    p.add_argument("--damos_quota_goal_tuner", action="append", default=[],
                   help="quota's goal-based tuner: consist, temporal (the kernel's), "
                        "or distance (damoncore: act on at most the bytes missing to a "
                        "node used/free goal)")
    p.add_argument("--damos_nr_quota_goals", type=int_arg(0, COUNT_MAX), nargs="+",
                   default=[],
                   metavar="<integer>", help="number of quota goals for each scheme (in order)")
    p.add_argument("--damos_filter", nargs="+", action="append", default=[],
                   metavar="<<allow|reject> [none] <type> [option]...>", help="damos filter")
    p.add_argument("--damos_nr_filters", type=int_arg(0, COUNT_MAX), nargs="+", default=[],
                   metavar="<integer>",
                   help="number of filters for each scheme (in order)")
    p.add_argument("--damos_wmarks", nargs=5, action="append", default=[],
                   metavar=("<metric (none|free_mem_rate)>", "<interval (us)>",
                            "<high mark (permil)>", "<mid mark (permil)>",
                            "<low mark (permil)>"), help="damos watermarks")
    p.add_argument("--damos_max_nr_snapshots", action="append", default=[],
                   metavar="<number>",
                   help="damos max_nr_snapshots: deactivate the scheme after this many "
                        "snapshots (0: never)")
    p.add_argument("--nr_schemes", metavar="<number>", nargs="+", type=int_arg(0, COUNT_MAX),
                   help="number of schemes for each context (in order)")


def set_damon_params_argparser(parser) -> None:
    """Every DAMON parameter option of damo's ``start``."""
    _monitoring(parser)
    _damos(parser)
    parser.add_argument("-c", "--schemes", metavar="<json string or file>",
                        help="DAMOS schemes as a JSON list (damo's schemes objects)")
    parser.add_argument("--kdamonds", metavar="<json string or file>",
                        help="kdamonds JSON ('damoncore args damon' generates it)")
    parser.add_argument("deducible_target", type=str, metavar="<deducible string>", nargs="?",
                        help="'paddr', a process id, or a kdamonds JSON file")
