"""``start``: monitor (and apply schemes) as the damo options say, until --duration or a
signal; optionally record; serve status on a private Unix socket."""

from __future__ import annotations

import ipaddress
import re
import sys
import threading
import time

from .. import kdamonds as kd
from ..core.context import Kdamond
from ..errors import FeatureMissing, InvalidConfig
from ..records import RecordWriter
from . import backends
from .checks import output_file
from .damo_args import kdamonds_from_args, parse_pid
from .damo_options import int_arg, set_damon_params_argparser
from .live import LiveRun
from .metrics import MetricsServer, require_client
from .signals import stopping
from .status_server import StatusServer


def set_argparser(p, record_default=None):
    set_damon_params_argparser(p)
    p.add_argument("--backend", choices=backends.BACKENDS,
                   help="ops backend (default: the real one if usable, else sim)")
    p.add_argument("--sim_preset", choices=sorted(backends.PRESETS), default="seed",
                   help="simulated machine and workload (sim backend)")
    p.add_argument("--duration", metavar="<time>",
                   help="stop after this long (e.g. 10s): simulated time on the sim "
                        "backend (a minute of it takes seconds), wall time otherwise; "
                        "default: until SIGINT, SIGTERM or SIGHUP")
    p.add_argument("--record", metavar="<file>", default=record_default,
                   help="also record the monitoring results to this file")
    p.add_argument("--output_type", choices=["json_compressed", "json"],
                   default="json_compressed", help="record file format")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--progress_interval", metavar="<time>", default="3s",
                   help="wall time between progress lines (each starts with the elapsed time)")
    p.add_argument("--no_status_socket", action="store_true",
                   help="do not open the control socket (status, tune, stop)")
    add_metrics_args(p)
    backends.add_root_args(p)
    p.description = "Start DAMON-style monitoring and DAMOS in user space"


def add_metrics_args(p) -> None:
    p.add_argument("--metrics_port", type=int_arg(0, 65535), metavar="<port>",
                   help="serve Prometheus metrics on this TCP port (0: any free port); "
                        "needs prometheus_client (pip install 'damoncore[metrics]')")
    p.add_argument("--metrics_addr", default="127.0.0.1", metavar="<ip address>",
                   help="address the metrics endpoint listens on (default 127.0.0.1; "
                        "0.0.0.0 or :: for every interface)")


def check_metrics_args(args) -> None:
    """The metrics options, before anything starts: an IP address, the package there."""
    if args.metrics_port is None:
        return
    try:
        ipaddress.ip_address(args.metrics_addr)
    except ValueError:
        raise InvalidConfig(f"--metrics_addr {kd.show(args.metrics_addr)}: not an IP "
                            f"address (e.g. 127.0.0.1, 0.0.0.0, ::1)") from None
    require_client()


def open_endpoints(live, args, out):
    """(control socket server or None, metrics server or None) for a run; both print
    where they are unless --quiet."""
    server = metrics = None
    try:
        if not args.no_status_socket:
            server = StatusServer(live.status, handlers=live.handlers())
            if not getattr(args, "quiet", False):
                print(f"status socket: {server.path}", file=out, flush=True)
        if args.metrics_port is not None:
            metrics = MetricsServer(live.board, args.metrics_port, args.metrics_addr)
            if not getattr(args, "quiet", False):
                print(f"metrics: {metrics.url}", file=out, flush=True)
    except BaseException:
        if server:
            server.close()
        raise
    return server, metrics


def _elapsed(clock_us: int, wall_s: float, simulated: bool) -> str:
    t = kd.fmt_time_us(clock_us, exact=False)
    return f"[{t} simulated, {wall_s:.1f} s wall]" if simulated else f"[{t}]"


def _progress_line(kdamonds, elapsed: str = "") -> str:
    parts = []
    for i, ctxs in enumerate(kdamonds):
        for j, c in enumerate(ctxs):
            s = (f"kd{i}/ctx{j}: {c.nr_regions()} regions, sample "
                 f"{kd.fmt_time_us(c.attrs.sample_us, exact=False)}")
            for k, sc in enumerate(c.schemes):
                s += (f"; s{k} {sc.action} applied "
                      f"{kd.fmt_sz(sc.stats.sz_applied, exact=False)} "
                      f"(esz {kd.fmt_sz(sc.quota_state.esz, exact=False)})")
            parts.append(s)
    return (f"{elapsed} " if elapsed else "") + " | ".join(parts)


def slow_goal_hint(kdamonds) -> str | None:
    """One line when a scheme's quota goal is tuned by ``consist`` from 1 byte (the
    kernel's default): it needs ~30 quota intervals to reach a 200 MiB quota, so a short
    run seems to do nothing."""
    slow = [f"kd{i}/ctx{j}/s{k} {s.action}" for i, ctxs in enumerate(kdamonds)
            for j, c in enumerate(ctxs) for k, s in enumerate(c.schemes)
            if s.quota.goals and s.quota.goal_tuner == "consist" and s.quota.esz_start == "min"]
    if not slow:
        return None
    return (f"hint: {', '.join(slow)}: the consist goal tuner starts the quota at 1 byte "
            f"and at most doubles it per quota interval; --damos_quota_goal_tuner temporal "
            f"(kernel 7.1) or distance (damoncore) act at the full quota from the start")


MAX_DURATION_US = 1 << 63   # ~292,000 years: longer means never, which is no --duration


def check_args(args) -> None:
    """The options that are not part of the kdamonds JSON; raises before anything starts."""
    if args.duration is not None:
        d = kd.parse_time_us(args.duration, "--duration")
        if not 0 < d <= MAX_DURATION_US:
            raise InvalidConfig(f"--duration {kd.show(args.duration)}: must be above 0 and at "
                                f"most 2^63 us (leave it out to run until a signal)")
    kd.parse_time_us(args.progress_interval, "--progress_interval")
    check_metrics_args(args)
    if args.record:
        output_file(args.record, "--out" if getattr(args, "out", None) else "--record")
    target = args.deducible_target
    if target and target != "paddr" and re.fullmatch(r"[0-9]+", target):
        args.target_pid = [parse_pid(target, "<deducible string>")]
        args.deducible_target = None


def _start_all(contexts) -> None:
    """Start every context (regions, backends) before anything is printed or served, so a
    setting only the backend can refuse fails as one line, with nothing to undo."""
    started = []
    try:
        for c in contexts:
            c.start()
            started.append(c)
    except BaseException:
        for c in started:
            c.ops.cleanup(c)
        raise


class Plan:
    """What :func:`prepare` decided: the backend (and why, if it fell back to the
    simulator), the simulated machine if any, the kdamonds (built, not started)."""

    def __init__(self, backend, why, machine, kdamonds):
        self.backend, self.why, self.machine, self.kdamonds = backend, why, machine, kdamonds


def prepare(args) -> Plan:
    """Check every option and build the contexts; starts nothing and touches no file, so
    a caller (record) can check a command line before it does anything itself."""
    check_args(args)
    space = (args.ops or ["vaddr" if args.target_pid else "paddr"])[0]
    page_fault = any("page_fault" in ps for ps in (args.sample_primitives or [])) or \
        any(backends.yes(v) for v in (args.exp_ops_use_reports or []))
    backend, why = backends.pick_backend(args.backend, space, args.sysfs_root, page_fault)
    if backend == "sim" and why and args.target_pid:
        # a real process cannot be monitored on simulated memory: say what is missing
        raise FeatureMissing(why, f"needed to monitor pid {args.target_pid[0]}; "
                             f"--sample_primitives page_fault samples it with perf instead")
    d = None
    if backend != "sim":
        try:
            d = kdamonds_from_args(args, backends.RealResolver(args.sysfs_root,
                                                                args.procfs_root))
        except InvalidConfig as e:
            if args.backend or "--numa_node" not in str(e):
                raise
            backend, why = "sim", f"this machine lacks a node ({e})"
    machine, pid = backends.sim_machine(args.sim_preset) if backend == "sim" else (None, None)
    if d is None:
        d = kdamonds_from_args(args, backends.SimResolver(machine) if machine else
                               backends.RealResolver(args.sysfs_root, args.procfs_root))
    kdamonds = kd.build_contexts(d, backends.ops_factory(backend, machine, pid, args.sysfs_root,
                                                             args.procfs_root))
    if not any(kdamonds):
        raise InvalidConfig("nothing to monitor: no kdamond has a context")
    check_not_obsolete(kdamonds)
    return Plan(backend, why, machine, kdamonds)


def check_not_obsolete(kdamonds) -> None:
    """A start monitors every target: ``obsolete`` (kernel 6.19) marks the running target a
    tune removes, and means nothing to a new run (the kernel ignores it there, monitoring
    the target; here it is refused rather than silently ignored)."""
    for i, ctxs in enumerate(kdamonds):
        for j, c in enumerate(ctxs):
            for k, t in enumerate(c.targets):
                if t.obsolete:
                    raise InvalidConfig(f"kdamond {i} context {j} target {k} is marked "
                                        f"obsolete: that removes a running target (tune); "
                                        f"a new run monitors every target it is given")


def run(args, out=None, plan=None, ready=None) -> list:
    """Build (unless ``plan`` is given), run and tear down; returns the kdamonds (lists of
    contexts).  ``ready``: called with the kdamonds once everything is built and started,
    just before the monitoring loop."""
    out = out or sys.stderr
    plan = plan or prepare(args)
    backend, why, kdamonds = plan.backend, plan.why, plan.kdamonds
    duration = kd.parse_time_us(args.duration) if args.duration else None
    _start_all([c for ctxs in kdamonds for c in ctxs])
    if why and not args.quiet:
        print(f"using simulated memory (--sim_preset {args.sim_preset}): {why}",
              file=out, flush=True)
    hint = slow_goal_hint(kdamonds)
    if hint and not args.quiet:
        print(hint, file=out, flush=True)
    every = kd.parse_time_us(args.progress_interval) / 1e6
    clock = kdamonds[0][0].clock if kdamonds and kdamonds[0] else None
    t0 = [clock.now_us() if clock else 0, time.monotonic()]
    last = [time.monotonic()]
    writer = RecordWriter(args.record, args.output_type,
                          **getattr(args, "record_options", {})) if args.record else None

    def elapsed() -> str:
        if clock is None:
            return ""
        return _elapsed(clock.now_us() - t0[0], time.monotonic() - t0[1], backend == "sim")

    def progress(ctx, snap):
        if not args.quiet and time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            print(_progress_line(kdamonds, elapsed()), file=out, flush=True)

    for i, ctxs in enumerate(kdamonds):
        for j, c in enumerate(ctxs):
            if writer:
                c.add_callback(writer.callback(i, j))
            c.add_callback(progress)
    runners = [Kdamond([c for ctxs in kdamonds for c in ctxs])] if backend == "sim" \
        else [Kdamond(ctxs) for ctxs in kdamonds if ctxs]

    def stop():
        for r in runners:
            r.stop()
    server = metrics = None
    ran = False
    switch = sys.getswitchinterval()
    with stopping(stop):
        try:
            if not args.no_status_socket or args.metrics_port is not None:
                resolver = backends.SimResolver(plan.machine) if plan.machine else \
                    backends.RealResolver(args.sysfs_root, args.procfs_root)
                live = LiveRun(kdamonds, runners, stop, resolver)
                server, metrics = open_endpoints(live, args, out)
            if ready:
                ready(kdamonds)
            t0[:] = [clock.now_us() if clock else 0, time.monotonic()]
            ran = True                  # from here on, Kdamond.run cleans up the backends
            if len(runners) == 1:
                runners[0].run(duration)
            else:
                errors = []

                def run_one(r):
                    try:
                        r.run(duration)
                    except BaseException as e:  # re-raised below, in the main thread
                        errors.append(e)
                        stop()
                # kdamond threads share the GIL: one back from a syscall waits out the
                # other's switch interval (5 ms by default), a convoy that multiplied the
                # cost of the syscall-heavy steps (access checks, owner lookups) in the guest
                sys.setswitchinterval(0.0005)
                threads = [threading.Thread(target=run_one, args=(r,), daemon=True)
                           for r in runners]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(0.2)
                if errors:
                    raise errors[0]
        finally:
            sys.setswitchinterval(switch)
            if not ran:
                for c in (c for ctxs in kdamonds for c in ctxs):
                    c.ops.cleanup(c)
            if metrics:
                metrics.close()
            if server:
                server.close()
            if writer:
                writer.close()
    if not args.quiet:
        print(_progress_line(kdamonds, elapsed()), file=out, flush=True)
    return kdamonds


def main(args):
    run(args)
