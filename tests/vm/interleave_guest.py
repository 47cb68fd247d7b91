"""Guest side of the dynamic-interleave VM test (runs INSIDE the 4-node guest).

``python -m interleave_guest workload <json>``: a workload process pinned to cpu0 whose
``mib`` MiB buffer (4 KiB pages) is first-touched under MPOL_WEIGHTED_INTERLEAVE over
``nodes`` (so the sysfs weights at that moment decide the split), then read one byte per
page continuously (C-speed strided copy) until stdin closes.  Plain Python + ctypes: no
numpy import (seconds over 9p under TCG).

:func:`dynamic_retune` (imported by tests/vm/test_interleave_vm.py's guest function): that
workload under 1:1 over nodes {0, 2}, then DynamicInterleave on VaddrOps over its buffer;
after ``load_at_s`` a configured background load on node2 makes the residual bandwidths
3:1, so the policy re-tunes the weights and migrates the buffer toward 3:1 within its
quota.  Returns the placement series, the policy's decisions and every apply call's moved
bytes keyed by quota window.

Never run the workload on the host: it mbinds memory to nodes 0 and 2.
"""
from __future__ import annotations

import json
import mmap
import os
import sys
import threading
import time

PAGE = 4096
MiB = 1 << 20
MPOL_WEIGHTED_INTERLEAVE = 6
MADV_NOHUGEPAGE = 15


def _workload(args) -> None:
    import ctypes

    import workloads_vm as w

    os.sched_setaffinity(0, {args.get("cpu", 0)})
    size = args["mib"] * MiB
    m = mmap.mmap(-1, size)
    m.madvise(MADV_NOHUGEPAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    w.mbind(addr, size, MPOL_WEIGHTED_INTERLEAVE, args["nodes"])
    chunk = b"\x5a" * MiB
    for off in range(0, size, MiB):
        m[off:off + MiB] = chunk
    mv = memoryview(m)
    stop = threading.Event()
    passes = [0]

    def loop():
        while not stop.is_set():
            bytes(mv[::PAGE])           # one byte of every page
            passes[0] += 1
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    print(json.dumps({"buf": [addr, size]}), flush=True)
    sys.stdin.read()
    stop.set()
    th.join()
    print(json.dumps({"passes": passes[0]}), flush=True)


def dynamic_retune(mib=64, nodes=(0, 2), peak_gbs=30, load_gbs=20, max_mib_s=16,
                   load_at_s=3.0, duration_s=16.0):
    """... ``duration_s``: at most that long; stops earlier once the placement settled
    after the re-tuning (the policy's own stop rule: within ``settle_loss_bp``)."""
    import subprocess

    import numpy as np

    import workloads_vm as w
    from damoncore.core.attrs import Attrs
    from damoncore.core.target import Target
    from damoncore.linux import mempolicy as mp
    from damoncore.linux.migrate import page_addrs, query_pages
    from damoncore.ops.vaddr import VaddrOps
    from damoncore.policies.interleave import DynamicInterleave, InterleaveConfig, \
        sysfs_weights_setter

    nodes = [int(n) for n in nodes]
    os.sched_setaffinity(0, {1})        # the policy on cpu1, the workload on cpu0
    out = {}
    with mp.preserved_weights():
        mp.write_weights({n: 1 for n in nodes})
        out["weights_start"] = mp.read_weights()
        p = subprocess.Popen([sys.executable, "-m", "interleave_guest", "workload",
                              json.dumps({"mib": mib, "nodes": nodes, "cpu": 0})],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ticker = w.Ticker(0)
        try:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"workload died during setup (exit {p.wait()})")
            addr, size = json.loads(line)["buf"]
            addrs = page_addrs(addr, addr + size)

            def shares():
                st = query_pages(p.pid, addrs)
                return {str(n): round(float((st == n).mean()), 4) for n in range(4)} | {
                    "other": int((st < 0).sum() + (st > 3).sum())}

            out["start"] = shares()
            bg = np.zeros(4)

            def node_bytes(starts, ends):
                # every page of the hot ranges (at most 16 Ki pages: one move_pages query).
                # Before it counted every page up to 64 Ki pages, sample_node_bytes took 16
                # evenly spaced pages a region, which all fell on one node of a 1:1
                # interleave: hot shares 0.40-0.47 for a true 0.50 and a spurious migration
                return mp.sample_node_bytes(p.pid, starts, ends, nr_nodes=4)
            cfg = InterleaveConfig(nodes, peak_bytes_s={n: peak_gbs * 1e9 for n in nodes},
                                   max_bytes_per_s=max_mib_s * MiB,
                                   # residual 30:10 GB/s -> weights 12:4 -> 3:1 exactly
                                   max_weight=12,
                                   # TCG: a 5 ms sample costs far more than 5 ms here
                                   # (page_idle + pagemap in Python on a busy vCPU), and
                                   # aggregations/applies are counted in samples, so 100 ms
                                   # aggregations took 0.4-3 s and the 1 s apply interval
                                   # ~10 s; 50 ms samples keep the schedule near real time
                                   # (a page is read every ~90 ms: hot in most samples)
                                   attrs=Attrs(sample_us=50_000, aggr_us=500_000,
                                               ops_update_us=1_000_000, min_nr_regions=10,
                                               max_nr_regions=200))
            ops = VaddrOps()
            pol = DynamicInterleave(cfg, ops, Target(p.pid, ranges=[(addr, addr + size)]),
                                    node_bytes,
                                    background=lambda: bg, set_weights=sysfs_weights_setter(),
                                    weights={n: 1 for n in nodes})
            # every apply call: (scheme, its quota window start, quota size, esz, moved bytes)
            applies = []
            orig_apply = ops.apply_scheme

            def apply_logged(ctx, target, scheme, starts, ends):
                # bytes really moved: the pages of the ranges whose node changed (the
                # reported figure comes from move_pages' status array, which the kernel
                # fills with the target node before trying, so pages it failed to move
                # without an errno count as moved there)
                pa = np.concatenate([page_addrs(int(a), int(b)) for a, b in zip(starts, ends)])
                before = query_pages(p.pid, pa)
                res = orig_apply(ctx, target, scheme, starts, ends)
                after = query_pages(p.pid, pa)
                st = scheme.quota_state
                moved = int(((before != after) & (after >= 0) & (before >= 0)).sum()) * PAGE
                reported = int(sum(v for (a, b), v in res.migrated.items() if a != b))
                applies.append([scheme.target_nid, st.charged_from_us, scheme.quota.sz_bytes,
                                int(st.esz), moved, reported, int((ends - starts).sum()),
                                round(time.monotonic() - t0, 2)])
                return res
            ops.apply_scheme = apply_logged
            series = []
            t0 = time.monotonic()
            last = [-1.0]

            def on_snap(ctx, snap):
                now = time.monotonic() - t0
                if now >= load_at_s and not bg[nodes[1]]:
                    bg[nodes[1]] = load_gbs * 1e9
                    out["load_on_at_s"] = round(now, 2)
                h = pol.history
                if (h and not h[-1].migrating and pol.sz_migrated
                        and any(d.retuned for d in h)):
                    ctx.stop()          # settled after the re-tuning: no need to wait longer
                    out["settled_at_s"] = round(now, 2)
                if now - last[0] >= 1.0 or ctx.stopped.is_set():
                    last[0] = now
                    series.append({"t": round(now, 2), "shares": shares(),
                                   "sz_migrated": pol.sz_migrated,
                                   "weights": {str(k): v for k, v in pol.weights.items()}})
            pol.ctx.add_callback(on_snap)
            pol.ctx.run(int(duration_s * 1e6))
            out["wall_s"] = round(time.monotonic() - t0, 2)
            out["end"] = shares()
            out["series"] = series
            out["applies"] = applies
            out["weights_log"] = [[t, {str(k): v for k, v in wt.items()}]
                                  for t, wt in pol.weights_log]
            out["weights_sysfs"] = mp.read_weights()
            out["decisions"] = [[d.time_us, [round(float(x), 4) for x in d.hot_shares],
                                 d.weights_loss_bp, d.placement_loss_bp, d.migrating, d.retuned]
                                for d in pol.history]
            out["quota_bytes"] = {str(sc.target_nid): sc.quota.sz_bytes for sc in pol.schemes}
            out["plan"] = {"plans": pol.nr_plans, "planned_bytes": pol.sz_planned}
            out["sz_migrated"] = pol.sz_migrated
            out["max_bytes_per_s"] = cfg.max_bytes_per_s
        finally:
            ticker.stop()
            try:
                p.stdin.close()
            except OSError:
                pass
            out["workload"] = p.stdout.read()
            p.wait(timeout=60)
    return out


if __name__ == "__main__":
    if sys.argv[1] == "workload":
        _workload(json.loads(sys.argv[2]))
