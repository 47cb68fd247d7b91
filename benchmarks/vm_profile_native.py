"""Where damoncore's monitoring CPU goes in the 4-node guest (issue 13's comparison workload).

Boots the guest once; inside it, the moving-hot-range workload of vm_compare_kdamond.py on cpu0
(1 ms ticker there), and one damoncore monitor (vaddr, 5 ms / 100 ms, 10-1000 regions) on cpu1
for ``--seconds``, native or generic path.  Reports the monitor thread's CPU split by phase of
the core loop (Context.begin_samples: native runs or generic begins; sample_end: generic
sample ends incl. aggregation; the rest), the native sampler's syscall counts per sample, and
``perf record -e cpu-clock`` of the monitor thread: the top symbols (kernel and user).

    python benchmarks/vm_profile_native.py [--generic] [--seconds 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "vm"))
import harness  # noqa: E402

GUEST = r'''
def profile(cfg):
    import os, subprocess, threading, time
    import workloads_vm as w
    from damoncore.core import Attrs, Context, Target
    from damoncore.ops.vaddr import VaddrOps
    os.sched_setaffinity(0, {1})
    ticker = w.Ticker(0)
    wl = w.Workload("moving", cpu=0, total_mib=384, hot_mib=32, node=0,
                    offsets_mib=[0, 192, 96, 288, 32, 224][:cfg["phases"]],
                    period_s=cfg["seconds"] / cfg["phases"])
    out = {"phase_cpu_s": {}, "calls": {}}
    ctx = Context(VaddrOps(native=cfg["native"]), [Target(pid=wl.pid)],
                  Attrs(5000, 100000, 60_000_000, 10, 1000))
    acc = out["phase_cpu_s"]

    def timed(name, fn):
        def wrap(*a, **k):
            c0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                acc[name] = acc.get(name, 0.0) + time.thread_time() - c0
                out["calls"][name] = out["calls"].get(name, 0) + 1
        return wrap
    ctx.begin_samples = timed("begin_samples", ctx.begin_samples)
    ctx.sample_end = timed("sample_end", ctx.sample_end)
    ctx._aggregation_end = timed("aggregation_end", ctx._aggregation_end)
    regions, keep = [], {}

    def cb(c, snap):
        regions.append(sum(len(t.start) for t in snap.targets))
        keep["native"] = keep.get("native") or c.ops.native_sampler(c)
    ctx.add_callback(cb)
    tid = []
    perf = {}

    def run():
        tid.append(threading.get_native_id())
        time.sleep(0.2)
        c0, t0 = time.thread_time(), time.monotonic()
        ctx.run(int((cfg["seconds"] - 1.0) * 1e6))
        out["cpu_s"], out["wall_s"] = time.thread_time() - c0, time.monotonic() - t0
    th = threading.Thread(target=run)
    th.start()
    while not tid:
        time.sleep(0.01)
    if cfg["perf"]:
        perf["p"] = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1000",
                                      "-t", str(tid[0]), "-o", "/tmp/perf.data"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    th.join()
    if perf:
        perf["p"].send_signal(2)
        perf["p"].wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", "/tmp/perf.data", "--stdio",
                              "--no-children", "--sort", "sym", "--percent-limit", "0.7"],
                             capture_output=True, text=True)
        out["perf"] = [ln for ln in rep.stdout.splitlines() if ln.strip() and
                       not ln.startswith("#")][:45]
        out["perf_err"] = perf["p"].stderr.read().decode(errors="replace")[-500:] \
            + rep.stderr[-500:]
    if keep.get("native") is not None:
        sm = keep["native"].sampler
        out["native"] = {k: getattr(sm, k) for k in (
            "nr_runs", "nr_ends", "nr_begins", "nr_pagemap_reads", "nr_bitmap_writes",
            "nr_bitmap_reads", "nr_waits")}
    out["passed_samples"] = ctx.passed_sample_intervals
    out["aggregations"] = ctx.nr_aggregations
    out["regions_median"] = sorted(regions)[len(regions) // 2] if regions else None
    wl.p.wait(timeout=120)
    ticker.stop()
    return out
'''


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generic", action="store_true", help="the generic per-sample path")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--phases", type=int, default=3)
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cfg = {"native": not a.generic, "seconds": a.seconds, "phases": a.phases,
           "perf": not a.no_perf}
    out = harness.run_python(GUEST, cfg, timeout=300 + 2 * a.seconds)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    n = out["passed_samples"] or 1
    print(f"path: {'generic' if a.generic else 'native'}; samples {n}, aggregations "
          f"{out['aggregations']}, median regions {out['regions_median']}; monitor CPU "
          f"{out['cpu_s']:.2f} s / {out['wall_s']:.1f} s = {100 * out['cpu_s'] / out['wall_s']:.1f}%"
          f" = {1e6 * out['cpu_s'] / n:.0f} us per sample")
    for k, v in out["phase_cpu_s"].items():
        print(f"  {k}: {v:.2f} s in {out['calls'][k]} calls = {1e6 * v / n:.0f} us per sample")
    if out.get("native"):
        nat = out["native"]
        print(f"  native: {nat['nr_ends']} of {n} sample ends in {nat['nr_runs']} runs; per "
              f"begin: pagemap {nat['nr_pagemap_reads'] / nat['nr_begins']:.1f}, bitmap writes "
              f"{nat['nr_bitmap_writes'] / nat['nr_begins']:.1f}, per end: bitmap reads "
              f"{nat['nr_bitmap_reads'] / max(1, nat['nr_ends']):.1f}")
    for ln in out.get("perf", []):
        print("  " + ln)
    if out.get("perf_err"):
        print(out["perf_err"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
