"""``damoncore demo``: the embedded default job, on simulated memory (no root, no NUMA).

A 4 GiB process runs on a 2-tier machine (2 GiB DRAM node 0, 8 GiB CXL node 1); its 256 MiB
hot range starts on CXL and moves halfway through the run.  One context monitors the
process' virtual address space (the regions it reports hot are checked against the truth),
and the TPP policy (the talk's knobs: 200 MiB/s per direction, 99.7% used goal, young
filters; but 2% free instead of 0.5%, since on a 2 GiB DRAM node the talk's 0.2% band
would exchange only 4 MiB per second) promotes and demotes between the nodes.  Time is simulated: a 60 s run takes a few
seconds.
"""

from __future__ import annotations

from ..core.attrs import Attrs
from ..core.context import Context, Kdamond
from ..core.target import Target
from ..errors import InvalidConfig
from ..ops.sim import SimOps
from ..policies.tpp import TppConfig, tpp_contexts
from ..sim.extents import key_of
from ..sim.presets import demo
from ..kdamonds import parse_time_us, show
from .damo_options import int_arg
from .signals import stopping
from .start import MAX_DURATION_US

MiB = 1 << 20
AGGR_US = 100_000


def set_argparser(p) -> None:
    p.description = __doc__
    p.add_argument("--duration", default="60s", metavar="<time>",
                   help="simulated time to run (default 60s; a minute takes seconds); "
                        "SIGINT, SIGTERM or SIGHUP end it early")
    p.add_argument("--seed", type=int_arg(0, (1 << 32) - 1), default=1,
                   help="random seed (default 1)")
    p.add_argument("--every", default="2s", metavar="<time>",
                   help="print a status line this often (default 2s)")


def _overlap(ranges, lo, hi) -> int:
    return sum(max(0, min(b, hi) - max(a, lo)) for a, b in ranges)


def main(args) -> None:
    duration = parse_time_us(args.duration, "--duration")
    every = parse_time_us(args.every, "--every")
    if not 0 < duration <= MAX_DURATION_US:
        raise InvalidConfig(f"--duration {show(args.duration)}: must be above 0 and at most "
                            f"2^63 us")
    if not AGGR_US <= every <= MAX_DURATION_US:
        raise InvalidConfig(f"--every {show(args.every)}: must be at least 100 ms (one "
                            f"aggregation) and at most 2^63 us")
    m, info = demo(seed=args.seed, move_at_us=duration // 2)
    pid = info["pid"]
    mon = Context(SimOps(m, space="vaddr", pid=pid), [Target(pid=pid)],
                  Attrs(sample_us=5000, aggr_us=AGGR_US, min_nr_regions=10,
                        max_nr_regions=1000), seed=args.seed, name="monitor")
    last = {}
    mon.add_callback(lambda c, s: last.__setitem__("snap", s))
    tpp = tpp_contexts(TppConfig(tiers=[info["promote_nid"], info["demote_nid"]], free_bp=200),
                       lambda nid: SimOps(m, space="paddr"), lambda nid: [m.node_range(nid)],
                       seed=args.seed)
    k = Kdamond([mon] + tpp)
    demote, promote = tpp[0].schemes[0], tpp[1].schemes[0]
    print(f"machine: node0 DRAM {m.nodes[0].capacity_bytes >> 20} MiB, node1 CXL "
          f"{m.nodes[1].capacity_bytes >> 20} MiB; process {pid}: "
          f"{(info['ranges'][0][1] - info['ranges'][0][0]) >> 20} MiB, hot range 256 MiB "
          f"moving at {duration // 2_000_000} s")
    print(f"{'time':>6} {'regions':>7} {'hot found':>9} {'false hot':>9} {'node0 used':>10} "
          f"{'hot on DRAM':>11} {'promoted':>9} {'demoted':>8}")
    t = 0
    with stopping(k.stop) as stop:
        while t < duration and stop.signum is None:
            step = min(every, duration - t)
            t0 = m.clock.now_us()
            k.run(step, cleanup=False)
            t += m.clock.now_us() - t0 if stop.signum is not None else step
            _status_line(t, m, mon, info, last, pid, promote, demote)
    if stop.signum is not None:
        print(f"stopped by {stop.name} at {t / 1e6:.1f} s")


def _status_line(t, m, mon, info, last, pid, promote, demote) -> None:
    phase = [h for h in info["hot"] if h[0] <= t][-1]
    lo, hi = phase[1], phase[2]
    snap = last.get("snap")
    found = false_hot = 0.0
    if snap is not None:
        s = snap.targets[0]
        hot = s.nr_accesses >= snap.max_nr_accesses // 2
        ranges = list(zip(s.start[hot].tolist(), s.end[hot].tolist()))
        found = _overlap(ranges, lo, hi) / (hi - lo)
        total = sum(b - a for a, b in info["ranges"])
        false_hot = (sum(b - a for a, b in ranges) - _overlap(ranges, lo, hi)) / (total - (hi - lo))
    k_ = m.pidx(pid)
    ss, se, _, node = m.segments(key_of(k_, [lo]), key_of(k_, [hi]))
    on_dram = float(((se - ss)[node == 0]).sum()) / (hi - lo)
    used = m.node_used(0) * 100 / m.nodes[0].capacity_bytes
    print(f"{t / 1e6:5.0f}s {mon.targets[0].regions.nr:7d} {found:9.1%} {false_hot:9.2%} "
          f"{used:9.2f}% {on_dram:11.1%} {promote.stats.sz_promoted >> 20:5d} MiB "
          f"{demote.stats.sz_demoted >> 20:4d} MiB")
