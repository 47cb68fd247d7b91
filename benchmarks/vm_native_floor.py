"""The native sample path against the syscall floor on the real interface, in the guest.

Boots the 4-node guest once; inside it, the moving-hot-range workload of
vm_compare_kdamond.py (384 MiB, 32 MiB hot, cpu0, 1 ms ticker) and, on cpu1, for each region
count and bitmap write gap: K samples of the native sample path (IdleSampler, deadline at
the begin: no sleep) against benchmarks/syscall_floor.c replaying exactly their syscalls on
the real /proc/PID/pagemap and /sys/kernel/mm/page_idle/bitmap (with a by-kind timing run).
The sleep between samples (a context switch per sample) is not in either figure.

    python benchmarks/vm_native_floor.py [--regions 20,1000] [--gaps 16,2,0] [--json f]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "vm"))
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from bench_native_sample import build_floor  # noqa: E402

GUEST = r'''
def floor(cfg):
    import os, sys, time
    sys.path.insert(0, cfg["bench_dir"])
    import workloads_vm as w
    import bench_native_sample as B
    os.sched_setaffinity(0, {1})
    ticker = w.Ticker(0)
    wl = w.Workload("moving", cpu=0, total_mib=384, hot_mib=32, node=0,
                    offsets_mib=[0, 192, 96, 288, 32, 224, 128, 320, 64, 256][:cfg["phases"]],
                    period_s=cfg["period_s"])
    a, size = wl.info["buf"]
    bitmap = "/sys/kernel/mm/page_idle/bitmap"
    rows = []
    time.sleep(1.0)
    effect = {}
    try:
        # the bitmap read's cost against the idle frames around the sampled one: a read
        # covers 64 frames and walks the rmap of each one still idle (mm/page_idle.c)
        import numpy as np
        from damoncore.linux.page_idle import PageIdle
        from damoncore.linux.pagemap import Pagemap, pfns, present
        for when in ("fresh", "all_marked"):
            if when == "all_marked":
                with Pagemap(wl.pid) as pm:
                    ent = pm.read(a, a + size)
                with PageIdle() as pi:
                    pi.mark_idle(np.unique(pfns(ent[present(ent)])))
            wall, cpu, counts, tr = B.native_run(wl.pid, [(a, a + size)], 20, bitmap, 200)
            tr.write("/tmp/trace_effect")
            d = B.floor_run(cfg["exe"], wl.pid, bitmap, "/tmp/trace_effect", 1, by_kind=True)
            k = d["by_kind_ns_per_sample"]
            c = d["calls_per_sample"]
            effect[when] = {"us_per_pagemap_read": k["pagemap_read"] / 1e3 / c[0],
                            "us_per_bitmap_write": k["bitmap_write"] / 1e3 / c[1],
                            "us_per_bitmap_read": k["bitmap_read"] / 1e3 / c[2],
                            "native_us": 1e6 * wall / 200}
        for nr in cfg["regions"]:
            for gap in cfg["gaps"]:
                k = max(40, cfg["samples"] // max(1, nr // 20))
                best = None
                for _ in range(cfg["rounds"]):
                    wall, cpu, counts, tr = B.native_run(wl.pid, [(a, a + size)], nr, bitmap,
                                                         k, mark_gap=gap)
                    trace = f"/tmp/trace{nr}_{gap}"
                    tr.write(trace)
                    fl = B.floor_run(cfg["exe"], wl.pid, bitmap, trace, 1)
                    detail = B.floor_run(cfg["exe"], wl.pid, bitmap, trace, 1, by_kind=True)
                    row = {"regions": nr, "mark_gap": gap, "samples": k,
                           "syscalls_per_sample": [c / k for c in counts],
                           "native_us": 1e6 * wall / k, "native_cpu_us": 1e6 * cpu / k,
                           "floor_us": 1e6 * fl[0], "floor_cpu_us": 1e6 * fl[1],
                           "floor_by_kind_us": {x: v / 1e3 for x, v in
                                                detail["by_kind_ns_per_sample"].items()}}
                    if best is None or row["native_us"] + row["floor_us"] < \
                            best["native_us"] + best["floor_us"]:
                        best = row
                rows.append(best)
    finally:
        wl.p.kill()
        wl.p.wait()
        ticker.stop()
    return {"rows": rows, "idle_effect": effect}
'''


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regions", default="20,1000")
    ap.add_argument("--gaps", default="16,0", help="bitmap write gaps (words) to compare")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    out_dir = HERE.parent / "build"
    out_dir.mkdir(exist_ok=True)
    exe = build_floor(str(out_dir))
    cfg = {"bench_dir": str(HERE), "exe": exe, "regions": [int(x) for x in a.regions.split(",")],
           "gaps": [int(x) for x in a.gaps.split(",")], "samples": a.samples,
           "rounds": a.rounds, "phases": 10, "period_s": 30.0}
    out = harness.run_python(GUEST, cfg, timeout=1800)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    rows = out["rows"]
    print("| regions | write gap (words) | syscalls/sample (pagemap, write, read, wait) | "
          "floor (us) | by kind: pagemap / write / read / wait (us) | native (us) | "
          "native / floor |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        k = r["floor_by_kind_us"]
        print(f"| {r['regions']} | {r['mark_gap']} | "
              f"{' / '.join(f'{c:.1f}' for c in r['syscalls_per_sample'])} | "
              f"{r['floor_us']:.0f} | {k['pagemap_read']:.0f} / {k['bitmap_write']:.0f} / "
              f"{k['bitmap_read']:.0f} / {k['wait']:.0f} | {r['native_us']:.0f} | "
              f"{r['native_us'] / r['floor_us']:.2f} |")
    print("\nus per syscall at 20 regions, on a fresh workload and after marking all its "
          "frames idle once:")
    for when, e in out["idle_effect"].items():
        print(f"  {when}: pagemap read {e['us_per_pagemap_read']:.1f}, bitmap write "
              f"{e['us_per_bitmap_write']:.1f}, bitmap read {e['us_per_bitmap_read']:.1f}; "
              f"native sample {e['native_us']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
