"""The native sample path on the real interface, in the 4-node guest: /proc/PID/pagemap and
/sys/kernel/mm/page_idle/bitmap (absent on the host).

- A child writes half of its regions all the time (pinned to cpu0, where a 1 ms ticker keeps
  TCG's accessed bits honest, see VM-NOTES): the native path and the generic path, one after
  the other on the same child, must both find exactly the written regions hot and the others
  cold, sample after sample, and the native one must have ended its samples in C.
- edge-split (an adaptation that keeps every sample) on the native path: the rows its C loop
  writes say which pages the child writes.
- Marking and reading back tens of thousands of adjacent frames: kernfs moves one page of the
  bitmap per call, so a span of more than 512 words takes several calls (the C loops go on
  after a short read or write).
"""

import pytest

from harness import run_python

pytestmark = pytest.mark.vm


HOT_COLD = r'''
def hot_cold(native_first):
    import os, subprocess, sys, time
    import numpy as np
    import workloads_vm as w
    from damoncore.core import Attrs, Context, Target
    from damoncore.linux.migrate import move_pages, query_pages
    from damoncore.ops.vaddr import VaddrOps
    os.sched_setaffinity(0, {1})
    n = 256                                     # pages; 16 regions of 16 pages
    child = ("import mmap, ctypes, os, sys\n"
             "os.sched_setaffinity(0, {0})\n"
             f"m = mmap.mmap(-1, {n} * 4096)\n"
             "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
             f"for i in range(0, {n} * 4096, 4096): m[i] = 1\n"
             "print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)\n"
             "hot = [i * 4096 for i in range(" + str(n) + ") if (i // 16) % 2 == 0]\n"
             "while True:\n"
             "    for i in hot: m[i] = 2\n")
    ticker = w.Ticker(0)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    a = int(p.stdout.readline())
    move_pages(p.pid, [a], int(query_pages(p.pid, [a])[0]))      # drain LRU add batches
    out = {}
    try:
        for native in ([True, False] if native_first else [False, True]):
            ranges = [(a + k * 16 * 4096, a + (k + 1) * 16 * 4096) for k in range(n // 16)]
            t = Target(pid=p.pid, ranges=ranges)
            ops = VaddrOps(native=native)
            ctx = Context(ops, [t], Attrs(5_000, 100_000, 60_000_000, 16, 16))
            snaps, keep = [], {}

            def cb(c, snap):
                snaps.append((snap.targets[0].start.tolist(), snap.targets[0].nr_accesses.tolist()))
                keep["s"] = keep.get("s") or c.ops.native_sampler(c)
                return len(snaps) >= 8
            ctx.add_callback(cb)
            ctx.run()
            s = keep.get("s")
            out["native" if native else "generic"] = {
                "check": ops.check, "snaps": [[(st - a) // 4096, nr] for st, nr in
                                              zip(*snaps[-1])] if snaps else [],
                "all_snaps": [[[(st - a) // 4096 for st in x[0]], x[1]] for x in snaps],
                "aggr_samples": ctx.attrs.aggr_samples,
                "passed": ctx.passed_sample_intervals,
                "native_ends": s.sampler.nr_ends if s is not None else 0}
    finally:
        p.kill()
        p.wait()
        ticker.stop()
    return out
'''


@pytest.mark.parametrize("native_first", [True, False])
def test_native_and_generic_find_the_same_hot_regions(guest, native_first):
    out = run_python(HOT_COLD, native_first, timeout=400)
    for path in ("native", "generic"):
        r = out[path]
        assert r["check"] == "idle"
        mx = r["aggr_samples"]
        # every aggregation after the first: the regions the child writes accessed in some
        # samples, in most on the whole (the writer's vCPU is a thread of a shared host:
        # a pass can outlast a sample), the others in none (regions are fixed: 16 pages
        # each, min = max = 16)
        hot_nrs = []
        for starts, nrs in r["all_snaps"][1:]:
            for st, nr in zip(starts, nrs):
                hot = (st // 16) % 2 == 0
                assert (nr >= 1) if hot else (nr == 0), (path, st, nr, r["all_snaps"])
                if hot:
                    hot_nrs.append(nr)
        assert sorted(hot_nrs)[len(hot_nrs) // 2] >= mx // 2, (path, r["all_snaps"])
    assert out["native"]["native_ends"] >= out["native"]["passed"] * 0.9
    assert out["generic"]["native_ends"] == 0


DENSE = r'''
def dense():
    import subprocess, sys
    import numpy as np
    from damoncore.linux.migrate import move_pages, query_pages
    from damoncore.linux.page_idle import PageIdle
    from damoncore.linux.pagemap import Pagemap, pfns, present
    n = 65536                                   # 256 MiB of 4 KiB pages, touched once
    child = ("import mmap, ctypes, sys\n"
             f"m = mmap.mmap(-1, {n} * 4096)\n"
             "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
             f"for i in range(0, {n} * 4096, 4096): m[i] = 1\n"
             "print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)\n"
             "sys.stdin.readline()\n")

    def start():
        # a guest that ran other tests has its free memory in pieces: compact it first,
        # so the buffer's frames come in runs long enough for a call to cross kernfs'
        # one page (512 words, 128 MiB of frames)
        for knob, val in (("drop_caches", "3"), ("compact_memory", "1")):
            with open(f"/proc/sys/vm/{knob}", "w") as fh:
                fh.write(val)
        p = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        a = int(p.stdout.readline())
        move_pages(p.pid, [a], int(query_pages(p.pid, [a])[0]))  # drain LRU add batches
        with Pagemap(p.pid) as pm:
            ent = pm.read(a, a + n * 4096)
        f = np.unique(pfns(ent[present(ent)]))
        words = np.unique(f // 64)
        runs = np.split(words, np.flatnonzero(np.diff(words) != 1) + 1)
        return p, f, int(max(len(r) for r in runs))

    tries = []
    for attempt in range(4):                    # the longest run varies from boot to boot
        p, f, longest = start()
        tries.append(longest)
        if longest > 512 or attempt == 3:
            break
        p.stdin.write("x\n"); p.stdin.flush(); p.wait()
    out = {"frames": int(f.size), "longest_word_run": longest, "tries": tries}
    with PageIdle(max_gap_words=16) as pi:
        pi.mark_idle(f)
        out["mark_calls"] = pi.nr_syscalls
        idle = pi.read_idle(f)
        out["read_calls"] = pi.nr_syscalls - out["mark_calls"]
    out["idle"] = int(idle.sum())
    p.stdin.write("x\n"); p.stdin.flush(); p.wait()
    return out
'''


def test_dense_marks_and_reads_cross_kernfs_pages(guest):
    out = run_python(DENSE, timeout=300)
    assert out["longest_word_run"] > 512, ("frames not dense enough to cross a bitmap page",
                                           out)
    # every frame of the cold buffer marked and read back idle (a few may sit in an LRU
    # batch again, or be touched by the kernel)
    assert out["idle"] >= out["frames"] * 0.99, out


EDGE_ROWS = r'''
def edge_rows():
    import os, subprocess, sys
    import workloads_vm as w
    from damoncore.core import Attrs, Context, Target
    from damoncore.core.edge_split import EdgeSplit
    from damoncore.linux.migrate import move_pages, query_pages
    from damoncore.ops.vaddr import VaddrOps
    os.sched_setaffinity(0, {1})
    n = 1024                                    # pages; hot and cold blocks of 64 pages
    child = ("import mmap, ctypes, os, sys\n"
             "os.sched_setaffinity(0, {0})\n"
             f"m = mmap.mmap(-1, {n} * 4096)\n"
             "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
             f"for i in range(0, {n} * 4096, 4096): m[i] = 1\n"
             "print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)\n"
             "hot = [i * 4096 for i in range(" + str(n) + ") if (i // 64) % 2 == 0]\n"
             "while True:\n"
             "    for i in hot: m[i] = 2\n")

    class Rows(EdgeSplit):          # the rows as the merge gets them
        seen = []

        def merge(self, ctx, threshold):
            Rows.seen.append([(s.k, s.addrs[:s.k].tolist(), s.accessed[:s.k].tolist())
                              for s in self._samples.values()])
            super().merge(ctx, threshold)

    ticker = w.Ticker(0)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    a = int(p.stdout.readline())
    move_pages(p.pid, [a], int(query_pages(p.pid, [a])[0]))      # drain LRU add batches
    try:
        ctx = Context(VaddrOps(), [Target(pid=p.pid, ranges=[(a, a + n * 4096)])],
                      Attrs(5_000, 100_000, 60_000_000, 4, 40), adaptation=Rows())
        keep = {}

        def cb(c, snap):
            keep["s"] = keep.get("s") or c.ops.native_sampler(c)
            return len(Rows.seen) >= 10
        ctx.add_callback(cb)
        ctx.run()
    finally:
        p.kill()
        p.wait()
        ticker.stop()
    rows = [(k, [[(x - a) // 4096 for x in r] for r in ad], acc)
            for agg in Rows.seen for k, ad, acc in agg]
    return {"rows": rows, "aggr_samples": ctx.attrs.aggr_samples,
            "passed": ctx.passed_sample_intervals,
            "native_ends": keep["s"].sampler.nr_ends if keep.get("s") else 0}
'''


def test_edge_split_rows_come_from_the_native_path(guest):
    """edge-split keeps every sample's addresses and flags: on the real bitmap the native
    path runs it (its C loop writes the rows) and the rows say what the child does."""
    out = run_python(EDGE_ROWS, timeout=400)
    assert out["native_ends"] >= out["passed"] * 0.9, out["passed"]
    assert len(out["rows"]) >= 10
    hot_hits = hot_all = 0
    for k, pages, acc in out["rows"]:
        assert k == out["aggr_samples"]
        for pg_row, acc_row in zip(pages, acc):
            for pg, ac in zip(pg_row, acc_row):
                assert 0 <= pg < 1024
                if (pg // 64) % 2:
                    assert ac == 0, ("a cold page read accessed", pg)
                else:
                    hot_all += 1
                    hot_hits += ac
    # the writer's vCPU is a host thread: a pass over the hot pages can outlast a sample
    assert hot_all and hot_hits >= hot_all // 2, (hot_hits, hot_all)
