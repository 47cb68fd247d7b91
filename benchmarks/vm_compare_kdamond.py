"""Kernel DAMON vs damoncore monitoring the same moving-hot-range workload in the 4-node guest.

Runs on the host; boots the guest once (tests/vm/harness.py) and inside it, one after the
other with identical phases (a fresh workload per monitor):

- the workload: ``workloads_vm moving`` pinned to cpu0 (a 1 ms ticker there keeps accessed
  bits honest under TCG): a ``--total-mib`` buffer (4 KiB pages, node0) whose ``--hot-mib``
  hot range jumps to another offset every ``--period`` seconds;
- kernel DAMON (guest sysfs): one kdamond, one vaddr context, target = the workload pid,
  sample 5 ms / aggr 100 ms / 10-1000 regions, one ``stat`` scheme matching everything.  Its
  regions come from the scheme's ``tried_regions`` (``update_schemes_tried_regions`` written
  to the kdamond's ``state`` in a loop; each snapshot is timed when the write returns), or with
  ``--kernel-regions trace`` from the ``damon:damon_aggregated`` tracepoint (every
  aggregation; enabled before the ticker starts, see VM-NOTES);
- damoncore: ``Context(VaddrOps(), [Target(pid)], Attrs(5000, 100000, min 10, max 1000))``
  in a thread, regions from its Snapshot callback.

Both monitors (and the kernel reader) run on cpu1; the kdamond thread is pinned there.
Per monitor: hot-range coverage (share of the hot range in regions with nr_accesses >= half
of aggr/sample), false-hot share of the buffer's cold bytes, time from each move until
coverage >= 0.9, number of regions, and CPU time (kdamond: utime+stime of its /proc stat;
damoncore: the monitor thread's CPU clock) as % of one vCPU.

    python benchmarks/vm_compare_kdamond.py [--phases 6 --period 4 --json out.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "vm"))
import harness  # noqa: E402

MiB = 1 << 20
COVERED = 0.9            # coverage that counts as "found the hot range"
SLOTS = (0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11)   # far jumps between 12 hot-range slots


def offsets_mib(total_mib: int, hot_mib: int, phases: int) -> list[int]:
    n = max(1, total_mib // hot_mib)
    order = [s for s in SLOTS if s < n] + [s for s in range(len(SLOTS), n)]
    return [order[i % len(order)] * hot_mib for i in range(phases)]


# --------------------------------------------------------------------------- guest side
# These functions run inside the guest: their source is sent by run_python (the last one is
# called), so they import what they use and call only each other.

ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"
TRACE = "/sys/kernel/tracing"


def g_kernel_setup(pid, cfg):
    """One kdamond, one vaddr context on ``pid``, one stat scheme matching every region."""
    import workloads_vm as w
    k, c = ADMIN + "/0", ADMIN + "/0/contexts/0"
    w.write(ADMIN + "/nr_kdamonds", 1)
    w.write(k + "/contexts/nr_contexts", 1)
    w.write(c + "/operations", "vaddr")
    a = c + "/monitoring_attrs"
    w.write(a + "/intervals/sample_us", cfg["sample_us"])
    w.write(a + "/intervals/aggr_us", cfg["aggr_us"])
    w.write(a + "/intervals/update_us", cfg["update_us"])
    w.write(a + "/nr_regions/max", cfg["max_nr_regions"])
    w.write(a + "/nr_regions/min", cfg["min_nr_regions"])
    w.write(c + "/targets/nr_targets", 1)
    w.write(c + "/targets/0/pid_target", pid)
    s = c + "/schemes"
    w.write(s + "/nr_schemes", 1)
    w.write(s + "/0/action", "stat")
    # the sysfs access pattern defaults are all zero: nothing would match
    for what, big in (("sz", 1 << 50), ("nr_accesses", 1 << 31), ("age", 1 << 31)):
        w.write(f"{s}/0/access_pattern/{what}/max", big)
        w.write(f"{s}/0/access_pattern/{what}/min", 0)
    w.write(k + "/state", "on")
    return int(w.read(k + "/pid"))


def g_trace_enable():
    import workloads_vm as w
    w.write(TRACE + "/trace_clock", "mono")        # = time.monotonic() in the guest
    w.write(TRACE + "/buffer_size_kb", 8192)
    w.write(TRACE + "/trace", "")
    w.write(TRACE + "/events/damon/damon_aggregated/enable", 1)


def g_trace_reader(snaps, stop):
    """damon_aggregated lines -> snapshots ``{"t", "regions": [[start, end, nr, age]...]}``;
    one event per region, a snapshot ends when it holds nr_regions of them."""
    import re
    pat = re.compile(r"\s(\d+\.\d+): damon_aggregated: target_id=\d+ nr_regions=(\d+) "
                     r"(\d+)-(\d+): (\d+) (\d+)")
    cur = []
    with open(TRACE + "/trace_pipe") as f:
        for line in f:
            m = pat.search(line)
            if not m:
                continue
            t, n, a, b, nr, age = float(m[1]), *map(int, m.groups()[1:])
            cur.append([a, b, nr, age])
            if len(cur) >= n:
                snaps.append({"t": t, "regions": cur})
                cur = []
            if stop.is_set():
                break


def g_kernel(pid, cfg, end_t):
    """Kernel DAMON on ``pid`` until ``end_t`` (guest monotonic seconds)."""
    import os
    import threading
    import time
    import workloads_vm as w
    k = ADMIN + "/0"
    tried = k + "/contexts/0/schemes/0/tried_regions"
    t_on = time.monotonic()
    kpid = g_kernel_setup(pid, cfg)
    os.sched_setaffinity(kpid, {cfg["monitor_cpu"]})
    c0, t0 = w.cpu_time_s(kpid), time.monotonic()
    snaps, stop, reader = [], threading.Event(), None
    if cfg["kernel_regions"] == "trace":
        reader = threading.Thread(target=g_trace_reader, args=(snaps, stop), daemon=True)
        reader.start()
        time.sleep(max(0.0, end_t - time.monotonic()))
    else:
        while time.monotonic() < end_t:
            tw = time.monotonic()
            w.write(k + "/state", "update_schemes_tried_regions")
            t1 = time.monotonic()
            regs = []
            for name in os.listdir(tried):
                if name.isdigit():
                    d = f"{tried}/{name}/"
                    regs.append([int(w.read(d + f)) for f in ("start", "end", "nr_accesses", "age")])
            snaps.append({"t": t1, "tw": tw, "regions": sorted(regs)})
    c1, t1 = w.cpu_time_s(kpid), time.monotonic()
    stop.set()
    w.write(k + "/state", "off")
    return {"snaps": list(snaps), "cpu_s": c1 - c0, "wall_s": t1 - t0, "kdamond_pid": kpid,
            "start_s": t0 - t_on}


def g_damoncore(pid, cfg, end_t, adaptation="kernel", native=True):
    """damoncore's Context on ``pid`` in a thread until ``end_t``; the thread's CPU clock.
    ``adaptation``: the region adaptation by name (kernel, edge-split, ...), with options
    after slashes (``edge-split/late_rows=1``: numbers or true/false); ``native=False``:
    the generic per-sample path (VaddrOps(native=False))."""
    import threading
    import time
    from damoncore.core import Attrs, Context, Target
    from damoncore.core.adaptations import ADAPTATIONS
    from damoncore.ops.vaddr import VaddrOps
    raw, native_path = [], []

    def cb(ctx, snap):      # keep the callback cheap: it runs on the monitor's CPU time
        if not native_path:     # the native sampler, to count its sample ends at the end
            native_path.append(ctx.ops.native_sampler(ctx))
        t = snap.targets[0]
        raw.append((time.monotonic(), t.start.copy(), t.end.copy(), t.nr_accesses.copy(),
                    t.age.copy()))

    attrs = Attrs(cfg["sample_us"], cfg["aggr_us"], cfg["update_us"],
                  cfg["min_nr_regions"], cfg["max_nr_regions"])
    name, *opts = adaptation.split("/")
    options = {}
    for kv in opts:
        k, _, v = kv.partition("=")
        if v.lower() in ("true", "false"):
            options[k] = v.lower() == "true"
        else:
            options[k] = float(v) if "." in v else int(v)
    ctx = Context(VaddrOps(native=native), [Target(pid=pid)], attrs,
                  adaptation=ADAPTATIONS[name](**options))
    ctx.add_callback(cb)
    res = {}

    def run():
        c0, t0 = time.thread_time(), time.monotonic()
        ctx.run(int((end_t - time.monotonic()) * 1e6))
        res.update(cpu_s=time.thread_time() - c0, wall_s=time.monotonic() - t0)
    th = threading.Thread(target=run)
    th.start()
    th.join()
    snaps = [{"t": t, "regions": [[int(a), int(b), int(n), int(g)]
                                  for a, b, n, g in zip(s, e, nr, age)]}
             for t, s, e, nr, age in raw]
    ns = native_path[0] if native_path else None
    return {"snaps": snaps, "check": ctx.ops.check, "native": native,
            "samples": ctx.passed_sample_intervals,
            "native_ends": ns.sampler.nr_ends if ns is not None else 0, **res}


def g_one(which, cfg):
    """A fresh moving workload on cpu0, monitored by ``which`` ("kernel", "damoncore",
    "damoncore:<adaptation>", "generic" (damoncore without its native sample path) or "both"
    at once) for its whole schedule; {monitor: result}."""
    import json
    import threading
    import time
    import workloads_vm as w
    wl = w.Workload("moving", cpu=cfg["workload_cpu"], total_mib=cfg["total_mib"],
                    hot_mib=cfg["hot_mib"], offsets_mib=cfg["offsets_mib"],
                    period_s=cfg["period_s"], node=cfg["node"])
    t_setup = time.monotonic()
    lines = []
    rd = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in wl.p.stdout),
                          daemon=True)
    rd.start()
    # stop a little before the workload does: a vaddr kdamond ends with its target
    end_t = t_setup + cfg["period_s"] * len(cfg["offsets_mib"]) - 0.3
    if which == "both":         # kernel DAMON in a thread, damoncore here, same workload
        kres = {}
        kt = threading.Thread(target=lambda: kres.update(g_kernel(wl.pid, cfg, end_t)))
        kt.start()
        res = {"damoncore": g_damoncore(wl.pid, cfg, end_t)}
        kt.join()
        res["kernel"] = kres
    elif which == "kernel":
        res = {which: g_kernel(wl.pid, cfg, end_t)}
    else:
        ad = which.partition(":")[2] or "kernel"
        res = {which: g_damoncore(wl.pid, cfg, end_t, ad,
                                  native=not which.startswith("generic"))}
    wl.p.wait(timeout=120)
    rd.join(timeout=10)
    for r in res.values():
        r.update(buf=wl.info["buf"], phases=[x for x in lines if "phase" in x],
                 passes=next((x["passes"] for x in lines if x.get("done")), None))
    return res


def g_compare(cfg):
    import os
    import workloads_vm as w
    os.sched_setaffinity(0, {cfg["monitor_cpu"]})
    import damoncore.core  # noqa: F401  (imports over 9p take seconds: not in the timed part)
    if cfg["kernel_regions"] == "trace":
        g_trace_enable()        # before any ticker runs (VM-NOTES: enabling it later panicked)
    ticker = w.Ticker(cfg["workload_cpu"])
    try:
        out = {}
        for which in cfg["order"]:
            out.update(g_one(which, cfg))
        return out
    finally:
        ticker.stop()


GUEST_FUNCS = (g_kernel_setup, g_trace_enable, g_trace_reader, g_kernel, g_damoncore, g_one,
               g_compare)


def guest_source() -> str:
    consts = f"ADMIN = {ADMIN!r}\nTRACE = {TRACE!r}\n\n"
    return consts + "\n\n".join(inspect.getsource(f) for f in GUEST_FUNCS)


# --------------------------------------------------------------------------- host side

def snapshot_stats(snap, buf, hot, thr):
    """(coverage of the hot range, false-hot share of the buffer's cold bytes, nr regions)."""
    (blo, bsz), (hlo, hhi) = buf, hot
    cov = fh = 0
    for a, b, nr, _ in snap["regions"]:
        if nr < thr:
            continue
        cov += max(0, min(b, hhi) - max(a, hlo))
        fh += max(0, min(b, blo + bsz) - max(a, blo)) - max(0, min(b, hhi) - max(a, hlo))
    return cov / (hhi - hlo), fh / (bsz - (hhi - hlo)), len(snap["regions"])


def analyze(run, cfg, relative=False):
    """Per-phase figures of one monitor's run (times in guest monotonic seconds).

    Hot = nr_accesses >= half of aggr/sample (10 of 20), or with ``relative`` half of the
    snapshot's own max nr_accesses (at least 1): under TCG the workload's pass over its hot
    range takes longer than a 5 ms sample, so hot pages are not seen at every sample.
    """
    thr_abs = (cfg["aggr_us"] // cfg["sample_us"] + 1) // 2
    blo, bsz = run["buf"]
    hot = cfg["hot_mib"] * MiB
    phases = sorted(run["phases"], key=lambda p: p["t"])
    rows, covs_settled, fhs, nregs = [], [], [], []
    for i, p in enumerate(phases):
        t_end = phases[i + 1]["t"] if i + 1 < len(phases) else float("inf")
        hr = (blo + p["offset"], blo + p["offset"] + hot)
        found = None
        for s in run["snaps"]:
            if not p["t"] <= s["t"] < t_end:
                continue
            thr = max(1, (max(r[2] for r in s["regions"]) + 1) // 2) if relative else thr_abs
            cov, fh, n = snapshot_stats(s, run["buf"], hr, thr)
            nregs.append(n)
            fhs.append(fh)
            if found is None and cov >= COVERED:
                found = s["t"] - p["t"]
            if s["t"] >= p["t"] + 1.0:
                covs_settled.append(cov)
        rows.append({"phase": p["phase"], "offset_mib": p["offset"] // MiB, "found_s": found})
    snaps = run["snaps"]
    gaps = [b["t"] - a["t"] for a, b in zip(snaps, snaps[1:])]
    moves = [r["found_s"] for r in rows[1:]]
    return {
        "phases": rows,
        "first_found_s": rows[0]["found_s"] if rows else None,
        "move_found_s": moves,
        "all_moves_found": bool(moves) and all(m is not None for m in moves),
        "coverage_settled_median": statistics.median(covs_settled) if covs_settled else None,
        "coverage_settled_min": min(covs_settled) if covs_settled else None,
        "false_hot_median": statistics.median(fhs) if fhs else None,
        "false_hot_max": max(fhs) if fhs else None,
        "regions": (min(nregs), statistics.median(nregs), max(nregs)) if nregs else None,
        "snapshots": len(snaps),
        "snapshot_gap_s": statistics.median(gaps) if gaps else None,
        "cpu_pct": 100.0 * run["cpu_s"] / run["wall_s"] if run.get("wall_s") else None,
        "cpu_s": run.get("cpu_s"), "wall_s": run.get("wall_s"),
        # damoncore: samples ended in the native C loop out of all samples
        "native_ends": run.get("native_ends"), "samples": run.get("samples"),
        # the workload's passes over its hot range: under TCG a busy monitor vCPU slows the
        # workload's vCPU (both are host threads), so hot pages get touched less often
        "workload_passes_per_s": (run["passes"] / (cfg["period_s"] * len(cfg["offsets_mib"]))
                                  if run.get("passes") else None),
    }


def compare(total_mib=384, hot_mib=32, period_s=4.0, phases=6, kernel_regions="trace",
            order=("kernel", "damoncore"), timeout=None, node=0):
    """Boot the guest, run both monitors, return {"config", "raw", "summary"}."""
    cfg = {"total_mib": total_mib, "hot_mib": hot_mib, "period_s": period_s,
           "offsets_mib": offsets_mib(total_mib, hot_mib, phases), "node": node,
           "sample_us": 5000, "aggr_us": 100000, "update_us": 60_000_000,
           "min_nr_regions": 10, "max_nr_regions": 1000, "workload_cpu": 0, "monitor_cpu": 1,
           "kernel_regions": kernel_regions, "order": list(order)}
    if timeout is None:
        timeout = 120 + len(order) * (40 + period_s * phases)
    if "both" in order and len(order) > 1:
        raise ValueError("'both' runs alone")
    raw = harness.run_python(guest_source(), cfg, timeout=timeout)
    return {"config": cfg, "raw": raw,
            "summary": {k: analyze(v, cfg) for k, v in raw.items()},
            "summary_relative": {k: analyze(v, cfg, relative=True) for k, v in raw.items()}}


def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


def table(summary) -> str:
    rows = ["| monitor | first find (s) | find after a move (s): median / max | coverage after 1 s: "
            "median / min | false-hot of cold bytes: median / max | regions min/median/max | "
            "snapshot every (s) | CPU % of one vCPU | workload passes/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        moves = [m for m in s["move_found_s"] if m is not None]
        missed = len(s["move_found_s"]) - len(moves)
        mv = (f"{statistics.median(moves):.2f} / {max(moves):.2f}" if moves else "-") + \
             (f" ({missed} missed)" if missed else "")
        reg = "/".join(_f(x, ".0f") for x in s["regions"]) if s["regions"] else "-"
        rows.append(f"| {name} | {_f(s['first_found_s'], '.2f')} | {mv} | "
                    f"{_f(s['coverage_settled_median'], '.3f')} / {_f(s['coverage_settled_min'], '.3f')} | "
                    f"{_f(s['false_hot_median'] and 100 * s['false_hot_median'], '.2f')}% / "
                    f"{_f(s['false_hot_max'] and 100 * s['false_hot_max'], '.2f')}% | {reg} | "
                    f"{_f(s['snapshot_gap_s'], '.2f')} | {_f(s['cpu_pct'], '.1f')} "
                    f"({_f(s['cpu_s'], '.2f')} s / {_f(s['wall_s'], '.1f')} s) | "
                    f"{_f(s['workload_passes_per_s'], '.0f')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--total-mib", type=int, default=384)
    ap.add_argument("--hot-mib", type=int, default=32)
    ap.add_argument("--period", type=float, default=4.0, help="seconds per hot-range phase")
    ap.add_argument("--phases", type=int, default=6)
    ap.add_argument("--kernel-regions", choices=("tried", "trace"), default="trace")
    ap.add_argument("--order", default="kernel,damoncore",
                    help="monitors one after the other, each on a fresh workload: kernel, "
                         "damoncore (the kernel's algorithm), damoncore:<adaptation> (e.g. "
                         "damoncore:edge-split, options after slashes: "
                         "damoncore:edge-split/late_rows=1), generic (damoncore's generic per-sample "
                         "path); 'both' runs kernel and damoncore at once on one workload")
    ap.add_argument("--json", help="write config, raw snapshots and summary here")
    ap.add_argument("--report", metavar="JSON", help="no guest run: re-analyze a --json file")
    a = ap.parse_args(argv)
    if a.report:
        out = json.loads(Path(a.report).read_text())
        out["summary"] = {k: analyze(v, out["config"]) for k, v in out["raw"].items()}
        out["summary_relative"] = {k: analyze(v, out["config"], relative=True)
                                   for k, v in out["raw"].items()}
    else:
        out = compare(a.total_mib, a.hot_mib, a.period, a.phases, a.kernel_regions,
                      tuple(a.order.split(",")))
    if a.json:
        Path(a.json).write_text(json.dumps(out))
    for name, s in out["summary"].items():
        print(f"{name}: per move found after {s['move_found_s']} s; "
              f"{json.dumps({k: v for k, v in s.items() if k not in ('phases', 'move_found_s')})}")
    print("hot = nr_accesses >= 10 of 20:")
    print(table(out["summary"]))
    print("hot = nr_accesses >= half of the snapshot's max:")
    print(table(out["summary_relative"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
