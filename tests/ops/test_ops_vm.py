"""The real backends inside the 4-node test guest (tests/vm/harness.py): migration across
nodes (vaddr and paddr) and access checks through the real idle page bitmap."""

import os

import pytest

harness = pytest.importorskip("harness", reason="tests/vm/harness.py not present")

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def guest():
    try:
        return harness.ensure_guest()
    except harness.GuestUnavailable as e:
        if os.environ.get("DAMONCORE_VM_REQUIRED") == "1":
            pytest.fail(f"test guest unavailable: {e}", pytrace=False)
        pytest.skip(f"test guest unavailable: {e}")


# Runs in the guest: a child on node 0 with 1024 pages; migrate them with both backends.
MIGRATE = r'''
def migrate():
    import subprocess, sys, numpy as np
    from damoncore.core import Context, Target
    from damoncore.linux.migrate import query_pages
    from damoncore.linux.pagemap import Pagemap, pfns
    from damoncore.ops.paddr import PaddrOps
    from damoncore.ops.vaddr import VaddrOps
    from damoncore.schemes.scheme import Scheme
    import os
    if os.path.exists("/proc/sys/kernel/numa_balancing"):
        open("/proc/sys/kernel/numa_balancing", "w").write("0")
    child = ("import mmap, ctypes, os, sys\n"
             "os.sched_setaffinity(0, {0})\n"
             "m = mmap.mmap(-1, 1024 * 4096)\n"
             "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
             "for i in range(0, 1024 * 4096, 4096): m[i] = 1\n"
             "print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)\n"
             "sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    a = int(p.stdout.readline())
    addrs = np.arange(a, a + 1024 * 4096, 4096, dtype=np.uint64)
    out = {"before": np.unique(query_pages(p.pid, addrs)).tolist()}
    s = Scheme(action="migrate_cold", target_nid=1)
    t = Target(pid=p.pid, ranges=[(a, a + 1024 * 4096)])
    ops = VaddrOps()
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[s])
    ctx.start()
    r = ops.apply_scheme(ctx, t, s, np.array([a], np.uint64), np.array([a + 1024 * 4096], np.uint64))
    out["vaddr"] = [r.sz_applied, {f"{k[0]}->{k[1]}": v for k, v in r.migrated.items()},
                    np.unique(query_pages(p.pid, addrs)).tolist()]
    with Pagemap(p.pid) as pm:
        frames = np.sort(pfns(pm.read(a, a + 1024 * 4096)))
    ops.cleanup(ctx)
    hot = Scheme(action="migrate_hot", target_nid=2)
    ops = PaddrOps(pids=[p.pid])
    t = Target(ranges=[(0, 1 << 40)])
    ctx = Context(ops, targets=[t], primitives=("page_fault",), schemes=[hot])
    ctx.start()
    starts = frames * np.uint64(4096)
    r = ops.apply_scheme(ctx, t, hot, starts, starts + np.uint64(4096))
    out["paddr"] = [r.sz_applied, {f"{k[0]}->{k[1]}": v for k, v in r.migrated.items()},
                    np.unique(query_pages(p.pid, addrs)).tolist()]
    p.stdin.write("x\n"); p.stdin.flush(); p.wait()
    return out
'''

# Runs in the guest: real page-table access checks (the idle bitmap, or soft-dirty bits via
# clear_refs) on a child that writes to the even regions only.
IDLE = r'''
def idle(check):
    import subprocess, sys, numpy as np
    from damoncore.core import Attrs, Context, Target
    from damoncore.ops.vaddr import VaddrOps
    child = ("import mmap, ctypes, sys\n"
             "libc = ctypes.CDLL(None)\n"
             "m = mmap.mmap(-1, 64 * 4096)\n"
             "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
             "a = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
             "for i in range(0, 64 * 4096, 4096): m[i] = 1\n"
             "print(a, flush=True)\n"
             "for line in sys.stdin:\n"
             "    libc.mprotect(ctypes.c_void_p(a), 64 * 4096, 1)\n"    # TLB flush (TCG)
             "    libc.mprotect(ctypes.c_void_p(a), 64 * 4096, 3)\n"
             "    for k in range(0, 64, 8):\n"
             "        for i in range(k * 4096, (k + 4) * 4096, 4096): m[i] = 2\n"
             "    print('ok', flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    a = int(p.stdout.readline())
    # frames still in per-CPU LRU add batches cannot be marked idle and read as accessed;
    # a no-op move_pages drains those batches on every CPU (lru_cache_disable)
    from damoncore.linux.migrate import move_pages, query_pages
    move_pages(p.pid, [a], int(query_pages(p.pid, [a])[0]))
    t = Target(pid=p.pid, ranges=[(a + k * 4096, a + (k + 4) * 4096) for k in range(0, 64, 4)])
    ops = VaddrOps(access_check=check)
    ctx = Context(ops, targets=[t], primitives=("page_table",), attrs=Attrs(min_nr_regions=16))
    ctx.start()
    hits = np.zeros(t.regions.nr, int)
    for _ in range(10):
        ctx.sample_begin()
        p.stdin.write("go\n"); p.stdin.flush(); p.stdout.readline()
        hits += ops.check_accesses(ctx)[0]
    ops.cleanup(ctx)
    p.stdin.write("x\n"); p.stdin.close(); p.wait()
    return {"check": ops.check, "starts": ((t.regions.start - a) // 4096).tolist(),
            "hits": hits.tolist()}
'''


def test_migration_across_nodes_in_guest(guest):
    out = harness.run_python(MIGRATE, timeout=300)
    assert out["before"] == [0]
    sz, moved, nodes = out["vaddr"]
    assert sz == 1024 * 4096 and moved == {"0->1": 1024 * 4096} and nodes == [1]
    sz, moved, nodes = out["paddr"]
    assert sz == 1024 * 4096 and moved == {"1->2": 1024 * 4096} and nodes == [2]


@pytest.mark.parametrize("check", ["idle", "soft_dirty"])
def test_page_table_checks_in_guest(guest, check):
    out = harness.run_python(IDLE, check, timeout=300)
    assert out["check"] == check
    hot = [(s // 4) % 2 == 0 for s in out["starts"]]
    for h, n in zip(hot, out["hits"]):
        assert (n == 10) if h else (n == 0), f"hits {out['hits']} starts {out['starts']}"
