"""``numa-migrate``: holistic NUMA migration, one accessor-aware TPP per CPU node or device.

Reads the NUMA topology (this machine's sysfs, or a simulated preset), derives each
accessor's memory hierarchy, prints it, builds one monitoring context per accessor (fed by
that accessor's access reports only) with its promote/demote schemes, and runs.
"""

from __future__ import annotations

import os
import re
import sys

from .. import kdamonds as kd
from ..errors import FeatureMissing, InvalidConfig
from ..policies.hierarchy import AccessorSpec, build_hierarchies, cpu_accessors
from ..policies.holistic import HolisticConfig, HolisticPolicy
from ..schemes.scheme import Filter
from ..units import BP
from . import backends
from .damo_options import NID_MAX
from .live import LiveRun
from .signals import stopping
from .start import MAX_DURATION_US, add_metrics_args, check_metrics_args, open_endpoints

MiB = 1 << 20

# Defaults per backend.  sim: the simulator reports steady accesses every sample, so short
# intervals, a real hotness threshold and the 3-aggregation dwell work.  real: the access
# reports are page faults, and on a running process nearly all of them are NUMA hint faults
# (kernel.numa_balancing=2, memory tiering mode: only pages on lower-tier nodes fault, once
# per scan period, >= 1 s and backing off to 60 s).  A page's faults come as one burst per
# scan, inside one sample: one faulting sample in an aggregation must make it hot (--hot 1%),
# it can never be hot in two consecutive aggregations (--min_age 1), and the aggregation only
# has to be short against the scan period (1 s: a move follows a burst within 1-2 s).
# Samples only bin the fault reports, so they are as long as the aggregation (1 s): each
# costs the monitor a fixed amount of work, and reports that arrive while the monitor works
# between two samples are not counted (the core keeps only reports timed inside the current
# sample).  Top-tier pages never hint-fault, so faults there (first touch, migration) say
# nothing about who uses them: no promotions out of another accessor's best node (else two
# sockets' DRAM nodes trade pages back and forth; measured in the 4-node guest).  With any
# faulting sample hot, one stray fault (of another thread, on a page near the hot data)
# would make a whole region hot: a region needs 16 faults per MiB (1 per 64 pages) in an
# aggregation to count; pages that hint-fault give ~256 per MiB (every page, once).
DEFAULTS = {
    "sim": {"sample": "5ms", "aggr": "100ms", "ops_update": "60s", "hot": "10%",
            "min_age": "3", "promote_from_top": "yes", "min_reports_per_mib": "0"},
    "real": {"sample": "1s", "aggr": "1s", "ops_update": "10s", "hot": "1%",
             "min_age": "1", "promote_from_top": "no", "min_reports_per_mib": "16"},
}


def set_argparser(p):
    p.description = ("Holistic NUMA migration: per-accessor hot/cold monitoring and "
                     "promotion/demotion along each accessor's own node order")
    p.add_argument("--backend", choices=["real", "sim"], default="real",
                   help="real: this machine's topology, perf page-fault reports (every "
                        "fault sampled, perf sample period 1) and move_pages (root); run "
                        "with kernel.numa_balancing=2 and "
                        "numa_balancing_promote_rate_limit_MBps=0 so the kernel's NUMA hint "
                        "faults report accesses to lower-tier memory and the kernel promotes "
                        "nothing itself; sim: a simulated machine in virtual time")
    p.add_argument("--sim_preset", choices=sorted(backends.PRESETS), default="seed",
                   help="simulated machine and workload for --backend sim (seed: the talk's "
                        "2 sockets x (DRAM + CXL))")
    p.add_argument("--device", action="append", default=[], metavar="<name>:<node>:<tids>",
                   help="a non-CPU accessor (GPU, accelerator): its name, initiator node and "
                        "the thread/queue ids its access reports carry, e.g. gpu0:4:901,902")
    p.add_argument("--quota", default="256MiB", metavar="<bytes>",
                   help="per second, the most one accessor moves out of one node by "
                        "promotion, and its owner by demotion (e.g. 200MB; default 256MiB)")
    p.add_argument("--used_goal", default="99.7%", metavar="<ratio>",
                   help="promote into a node until its used memory reaches this share "
                        "(percent, or basis points without %%; default 99.7%%)")
    p.add_argument("--free_goal", default="0.5%", metavar="<ratio>",
                   help="demote out of a node while its free memory is below this share "
                        "(percent, or basis points; default 0.5%%)")
    p.add_argument("--hot", metavar="<percent>",
                   help="memory is hot for an accessor when its access reports per page "
                        "reach this share of the accessor's typical density (the median over "
                        "the pages it touches, by reports): relative, so independent of the "
                        "sampling ratio and of region sizes (default: sim 10%%; real 1%%: "
                        "hint faults come once per page and scan, so any faulting page)")
    p.add_argument("--min_age", metavar="<aggregations>",
                   help="hysteresis: aggregation intervals memory must stay hot (cold) at "
                        "its place before it is promoted (demoted); default: sim 3; real 1, "
                        "because a page hint-faults at most once per scan period (>= 1 s), so "
                        "it is never hot in two consecutive aggregations")
    p.add_argument("--sample", metavar="<time>",
                   help="sampling interval (damo time units: 5ms, 1s, or microseconds); "
                        "default: sim 5ms; real 1s (fault reports are only counted per "
                        "sample: a burst of hint faults is one or two samples however short "
                        "they are; every sample costs the monitor fixed work, and reports "
                        "arriving while it works between samples are not counted)")
    p.add_argument("--aggr", metavar="<time>",
                   help="aggregation interval: hotness, the coordinator's decisions and the "
                        "moves happen once per aggregation (a decision is applied at the end "
                        "of the next one); default: sim 100ms; real 1s (short against the "
                        "NUMA scan period, >= 1 s, so a burst moves within 1-2 s)")
    p.add_argument("--promote_from_top", choices=["yes", "no"],
                   help="may an accessor's promotions take pages out of another accessor's "
                        "best node (e.g. socket 1's DRAM pages to socket 2's DRAM)? default: "
                        "sim yes; real no, because in NUMA balancing's tiering mode top-tier "
                        "pages never hint-fault: faults there are first touches and "
                        "migrations, which do not tell who uses a page")
    p.add_argument("--min_reports_per_mib", metavar="<number>",
                   help="memory with fewer access reports per MiB per aggregation (moving "
                        "average over 256 KiB pieces of the owners' address space) is never "
                        "hot, whatever --hot says (one stray fault must not make a piece hot "
                        "for an accessor that does not use it); 0 turns it off; default: sim "
                        "0; real 16 (one fault per 64 pages; pages that hint-fault give ~256 "
                        "per MiB)")
    p.add_argument("--ops_update", metavar="<time>",
                   help="ops update interval: the real backend rebuilds its PFN -> process "
                        "map then (and, at most once a second, when a migration finds pages "
                        "it has no owner for, e.g. of a process started after the monitor); "
                        "default: sim 60s; real 10s")
    p.add_argument("--min_gain", default="20%", metavar="<ratio>",
                   help="hysteresis: memory hot for several accessors moves only if its "
                        "weighted access cost drops at least this much (default 20%%)")
    p.add_argument("--pids", metavar="<pid,...>",
                   help="only accesses of these processes' threads count (real: their "
                        "/proc/PID/task ids; sim: the pids)")
    p.add_argument("--cgroup", metavar="<path>",
                   help="only migrate memory of this memory cgroup (a DAMOS memcg filter)")
    p.add_argument("--duration", metavar="<time>",
                   help="stop after this long (e.g. 30s): simulated time with --backend "
                        "sim, wall time otherwise; default: until SIGINT, SIGTERM or SIGHUP "
                        "(sim: 10s)")
    p.add_argument("--dry_run", action="store_true",
                   help="print the hierarchies and schemes, do not monitor")
    p.add_argument("--no_status_socket", action="store_true",
                   help="do not open the control socket (status, tune, stop)")
    add_metrics_args(p)
    backends.add_root_args(p)


def _config(args) -> HolisticConfig:
    from ..core import Attrs
    d = DEFAULTS[args.backend]
    for k, v in d.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    sample = kd.parse_time_us(args.sample, "--sample")
    aggr = kd.parse_time_us(args.aggr, "--aggr")
    update = kd.parse_time_us(args.ops_update, "--ops_update")
    if sample <= 0:
        raise InvalidConfig(f"--sample {args.sample!r}: must be > 0")
    if aggr < sample:
        raise InvalidConfig(f"--aggr {args.aggr!r}: must be at least --sample ({args.sample})")
    kd.check_aggr_samples(sample, aggr, "--aggr / --sample")
    if update < sample:
        raise InvalidConfig(f"--ops_update {args.ops_update!r}: must be at least --sample "
                            f"({args.sample})")
    attrs = Attrs(sample_us=sample, aggr_us=aggr, ops_update_us=update, min_nr_regions=200,
                  max_nr_regions=1000)
    quota = kd.parse_bytes(args.quota, "--quota")
    used = kd.parse_ratio(args.used_goal, BP, "--used_goal")
    free = kd.parse_ratio(args.free_goal, BP, "--free_goal")
    hot = kd.parse_percent(args.hot, "--hot")
    min_age = kd.parse_nr(args.min_age, "--min_age")
    gain = kd.parse_ratio(args.min_gain, BP, "--min_gain")
    if quota <= 0 or quota > 1 << 50:
        raise InvalidConfig(f"--quota {args.quota!r}: must be 1 byte/s .. 1 PiB/s")
    if not 0 < used < BP:
        raise InvalidConfig(f"--used_goal {args.used_goal!r}: must be above 0% and below 100%")
    if not 0 < free < BP:
        raise InvalidConfig(f"--free_goal {args.free_goal!r}: must be above 0% and below 100%")
    if not 0 < hot <= 100:
        raise InvalidConfig(f"--hot {args.hot!r}: must be 1%..100%")
    if min_age > 100_000:
        raise InvalidConfig(f"--min_age {args.min_age!r}: at most 100000 aggregations")
    if gain >= BP:
        raise InvalidConfig(f"--min_gain {args.min_gain!r}: must be below 100%")
    try:
        min_reports = float(args.min_reports_per_mib)
    except ValueError:
        min_reports = -1.0
    if not 0 <= min_reports < 1e9:
        raise InvalidConfig(f"--min_reports_per_mib {args.min_reports_per_mib!r}: expected a "
                            f"number >= 0")
    return HolisticConfig(quota_bytes_per_s=quota, used_goal_bp=used, free_goal_bp=free,
                          hot_percent=hot, min_age_aggrs=min_age, min_gain_bp=gain,
                          attrs=attrs, promote_from_top=args.promote_from_top == "yes",
                          min_reports_per_mib=min_reports)


def _devices(specs) -> list:
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) != 3 or not parts[0] or not re.fullmatch(r"[0-9]{1,4}", parts[1]) \
                or int(parts[1]) > NID_MAX:
            raise InvalidConfig(f"--device {kd.show(spec)}: expected <name>:<node>:<tid,...>")
        out.append(AccessorSpec(parts[0], int(parts[1]),
                                tids=kd.parse_idlist(parts[2], f"--device {kd.show(spec)} ids")))
    return out


def _thread_ids(pids, procfs_root) -> frozenset:
    tids = set()
    for pid in pids:
        task = os.path.join(procfs_root, str(pid), "task")
        if not os.path.isdir(task):
            raise InvalidConfig(f"--pids: no process {pid} ({task} missing)")
        tids.update(int(t) for t in os.listdir(task) if t.isdigit())
    return frozenset(tids)


def build(args):
    """(policy, machine or None) for the parsed arguments; prints nothing."""
    from ..core import SampleFilter
    cfg = _config(args)
    pids = sorted(kd.parse_idlist(args.pids, "--pids")) if args.pids else None
    ops_filters = [Filter("memcg", allow=True, memcg_path=args.cgroup)] if args.cgroup else []
    if args.backend == "sim":
        from ..ops.sim import SimOps
        m, _ = backends.sim_machine(args.sim_preset)
        source, accessors = m.latency, cpu_accessors(m)
        node_ranges = {x.nid: [m.node_range(x.nid)] for x in m.nodes}
        # one report per 32 accesses for every accessor (a common perf sample period), so
        # the accessors' report densities compare
        ops = SimOps(m, space="paddr", max_reports_per_accessor=4096, report_period=32)
        tids = frozenset(pids) if pids else None
        if args.cgroup:
            raise InvalidConfig("--cgroup: the simulated presets put every process in /")
    else:
        from ..numa import Topology
        m = None
        topo = Topology.read(args.sysfs_root, args.procfs_root)
        source, accessors = topo, cpu_accessors(topo)
        node_ranges = {n: r for n, r in topo.phys_ranges.items() if r}
        tids = _thread_ids(pids, args.procfs_root) if pids else None

        def ops(accessor):
            from ..ops.paddr import PaddrOps
            from ..ops.perf import PerfOps
            base = PaddrOps(args.sysfs_root, args.procfs_root, pids=pids, cgroup=args.cgroup)
            # every fault: on a running process they are NUMA hint faults, one per page per
            # scan period, far fewer than first-touch faults (perf's default is every 3rd);
            # the monitor's own faults are dropped (PerfOps' default with this scope)
            return PerfOps(base, cgroup=args.cgroup, cpus=sorted(accessor.cpus) or None,
                           procfs_root=args.procfs_root, sysfs_root=args.sysfs_root,
                           sample_period=1)
    accessors = accessors + _devices(args.device)
    if not accessors:
        raise InvalidConfig("no accessors: no CPU node found and no --device given")
    hs = build_hierarchies(source, accessors, memory_nodes=sorted(node_ranges))
    extra = [SampleFilter("threads", allow=True, tids=tids)] if tids else []
    return HolisticPolicy(ops, hs, node_ranges, cfg, ops_filters=ops_filters,
                          extra_sample_filters=extra), m


def _summary(policy, machine, out) -> None:
    for name, st in policy.stats().items():
        sz = lambda v: kd.fmt_sz(v, exact=False)
        moves = ", ".join(f"{a}->{b} {sz(v)}" for (a, b), v in sorted(st["migrated"].items()))
        print(f"{name}: promoted {sz(st['sz_promoted'])}, demoted {sz(st['sz_demoted'])}"
              + (f" ({moves})" if moves else ""), file=out)
    if machine is not None:
        s = machine.stats()
        acc = sum(v["accesses"] for v in s["accessors"].values()) or 1
        cost = sum(v["cost"] for v in s["accessors"].values()) / acc
        local = sum(v["accesses"] * v["local_dram_share"] for v in s["accessors"].values()) / acc
        print(f"sim: mean access cost {cost:.2f}, local-node share {local:.1%}, "
              f"{s['time_us'] / 1e6:g} s virtual", file=out)


def _duration(args):
    if not args.duration:
        return None
    d = kd.parse_time_us(args.duration, "--duration")
    if not 0 < d <= MAX_DURATION_US:
        raise InvalidConfig(f"--duration {kd.show(args.duration)}: must be above 0 and at "
                            f"most 2^63 us (leave it out to run until a signal)")
    return d


def main(args, out=None):
    out = out or sys.stdout
    duration = _duration(args)
    check_metrics_args(args)
    policy, machine = build(args)
    print("accessor hierarchies (node (cost), best first):", file=out)
    for line in policy.describe():
        print(f"  {line}", file=out)
    if args.dry_run:
        for ctx in policy.contexts:
            for s in ctx.schemes:
                print(f"  scheme {s.name}", file=out)
        return
    if len(policy.nodes) < 2:
        raise FeatureMissing("a second NUMA node", f"memory node(s) {sorted(policy.nodes)} only: "
                             f"nothing to migrate between")
    if duration is None and machine is not None:
        duration = 10_000_000
    kdamond = policy.kdamond()
    with stopping(kdamond.stop) as stop:
        server = metrics = None
        try:
            if not args.no_status_socket or args.metrics_port is not None:
                resolver = backends.SimResolver(machine) if machine else \
                    backends.RealResolver(args.sysfs_root, args.procfs_root)
                live = LiveRun([policy.contexts], [kdamond], kdamond.stop, resolver)
                server, metrics = open_endpoints(live, args, sys.stderr)
            kdamond.run(duration)
        finally:
            if metrics:
                metrics.close()
            if server:
                server.close()
    if stop.signum is not None:
        print(f"stopped by {stop.name}", file=out)
    _summary(policy, machine, out)
