"""Guest-side workloads and probes for the VM tiering/holistic/monitoring runs.

Runs INSIDE the 4-node guest (tests/vm is on the guest's PYTHONPATH).  The workload
processes are plain Python + ctypes (no numpy: importing it over 9p under TCG costs
seconds), started as ``python -m workloads_vm <kind> <json args>``; they print one JSON line
with their buffers' addresses when set up, then touch their hot data until stdin closes
(or, for ``moving``, follow a schedule).  The orchestrating functions (``query_nodes``,
``node_mem``, ``Ticker``...) are imported by the test modules' guest functions.

Never run the workloads on the host: they mbind memory to nodes 0-3.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import subprocess
import sys
import threading
import time

PAGE = mmap.PAGESIZE
MiB = 1 << 20
MPOL_DEFAULT, MPOL_BIND = 0, 2
MADV_NOHUGEPAGE = 15
MADV_POPULATE_WRITE = 23

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def platform_syscalls() -> dict:
    """{name: number} of this platform's syscalls (from <sys/syscall.h>), as damoncore's one
    syscall module has them: loaded from its compiled file alone, because importing the
    package imports numpy (seconds under TCG) and these workloads stay numpy-free."""
    import glob
    import importlib.util

    pkg = importlib.util.find_spec("damoncore").submodule_search_locations[0]
    path = glob.glob(os.path.join(pkg, "linux", "_syscalls*.so"))[0]
    spec = importlib.util.spec_from_file_location("damoncore.linux._syscalls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(mod.SYSCALLS)


_SYSCALLS = platform_syscalls()
SYS_mbind = _SYSCALLS["mbind"]
SYS_move_pages = _SYSCALLS["move_pages"]


# ----------------------------------------------------------------------------- memory

def mbind(addr: int, length: int, mode: int, nodes=()) -> None:
    mask = 0
    for n in nodes:
        mask |= 1 << n
    m = ctypes.c_ulong(mask)
    rc = _libc.syscall(ctypes.c_long(SYS_mbind), ctypes.c_void_p(addr), ctypes.c_ulong(length),
                       ctypes.c_int(mode), ctypes.byref(m) if nodes else None,
                       ctypes.c_ulong(64 if nodes else 0), ctypes.c_uint(0))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mbind: {os.strerror(e)}")


class Buf:
    """Anonymous 4 KiB-page mapping, first-touched on ``node`` (mbind, then policy reset);
    ``fill=False`` leaves it empty (see :func:`side_by_side`)."""

    def __init__(self, size: int, node: int, fill: bool = True):
        self.size = size - size % PAGE
        self.map = mmap.mmap(-1, self.size)
        self.map.madvise(MADV_NOHUGEPAGE)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.mv = memoryview(self.map)
        if fill:
            mbind(self.addr, self.size, MPOL_BIND, [node])
            self.fill()
            mbind(self.addr, self.size, MPOL_DEFAULT)     # later moves are not re-bound

    def fill(self, lo: int = 0, hi: int | None = None, populate: bool = False) -> None:
        """First-touch [lo, hi): by writing it (user page faults), or with ``populate`` by
        MADV_POPULATE_WRITE (the kernel faults the pages in itself: no user page fault, so
        perf's page-fault event does not see them)."""
        hi = self.size if hi is None else hi
        if populate:
            self.map.madvise(MADV_POPULATE_WRITE, lo, hi - lo)
            return
        step = MiB                  # fill in chunks (a big bytes object would take node memory)
        chunk = b"\x5a" * step
        for off in range(lo, hi, step):
            n = min(step, hi - off)
            self.map[off:off + n] = chunk[:n]

    def touch(self, lo: int = 0, hi: int | None = None) -> int:
        """Read one byte of every page in [lo, hi) (C speed: a strided memoryview copy)."""
        return len(bytes(self.mv[lo:self.size if hi is None else hi:PAGE]))


def side_by_side(hot_size: int, cold_size: int, node: int, chunk: int = MiB):
    """A hot and a cold :class:`Buf` on ``node``, first-touched in alternating ``chunk``s
    so that their frames lie side by side: the cold one's pages are the hot pages'
    neighbours in physical memory.  The cold one is populated without user page faults
    (it is never touched afterwards, so nothing reports it)."""
    hot, cold = Buf(hot_size, node, fill=False), Buf(cold_size, node, fill=False)
    for b in (hot, cold):
        mbind(b.addr, b.size, MPOL_BIND, [node])
    for off in range(0, max(hot.size, cold.size), chunk):
        if off < hot.size:
            hot.fill(off, min(off + chunk, hot.size))
        if off < cold.size:
            cold.fill(off, min(off + chunk, cold.size), populate=True)
    for b in (hot, cold):
        mbind(b.addr, b.size, MPOL_DEFAULT)
    return hot, cold


def move_pages_raw(pid: int, addrs, node=None) -> list:
    """move_pages(2) of ``addrs`` of ``pid`` to ``node``; node None queries. Status list."""
    n = len(addrs)
    out = []
    for i in range(0, n, 16384):
        part = addrs[i:i + 16384]
        k = len(part)
        pages = (ctypes.c_void_p * k)(*part)
        status = (ctypes.c_int * k)()
        nodes = (ctypes.c_int * k)(*([node] * k)) if node is not None else None
        rc = _libc.syscall(ctypes.c_long(SYS_move_pages), ctypes.c_long(pid), ctypes.c_ulong(k),
                           pages, nodes, status, ctypes.c_int(2 if node is not None else 0))
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"move_pages: {os.strerror(e)}")
        out.extend(status)
    return out


def query_nodes(pid: int, addr: int, size: int) -> dict:
    """{node: pages} of [addr, addr+size) of ``pid`` (negative keys: -errno, e.g. -14 absent).

    For the orchestrators only (they import damoncore, hence numpy, anyway): the pages and
    statuses stay numpy arrays, because the list-and-ctypes version cost ~0.1 s of TCG CPU
    per 16 Ki pages, twice a second on the vCPU damoncore runs on (the TPP poller used
    ~20-30% of it)."""
    import numpy as np
    pages = np.arange(addr, addr + size, PAGE, dtype=np.uint64)
    status = np.empty(len(pages), np.int32)
    for i in range(0, len(pages), 16384):
        k = min(16384, len(pages) - i)
        rc = _libc.syscall(ctypes.c_long(SYS_move_pages), ctypes.c_long(pid), ctypes.c_ulong(k),
                           ctypes.c_void_p(pages.ctypes.data + 8 * i), None,
                           ctypes.c_void_p(status.ctypes.data + 4 * i), ctypes.c_int(0))
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"move_pages: {os.strerror(e)}")
    vals, counts = np.unique(status, return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts)}


def _node_pfn_spans():
    """(starts, ends, nodes) numpy arrays of the zones' PFN spans (/proc/zoneinfo: the guest
    kernel has no memory-block sysfs), sorted by start."""
    import numpy as np
    spans, nid, spanned = [], None, None
    with open("/proc/zoneinfo") as f:
        for line in f:
            w = line.split()
            if line.startswith("Node "):
                nid, spanned = int(w[1].rstrip(",")), None
            elif len(w) == 2 and w[0] == "spanned":
                spanned = int(w[1])
            elif len(w) == 2 and w[0] == "start_pfn:" and spanned:
                spans.append((int(w[1]), int(w[1]) + spanned, nid))
    spans.sort()
    return tuple(np.array([x[i] for x in spans], np.int64) for i in range(3))


def pagemap_nodes(pid: int, addr: int, size: int) -> dict:
    """:func:`query_nodes` from /proc/PID/pagemap's PFNs and the zones' PFN spans (root;
    orchestrators only: numpy): one read, ~10x cheaper than move_pages' per-page query on
    the host, for a poller that shares damoncore's vCPU.  Absent pages count as -2
    (ENOENT, as move_pages reports them)."""
    import numpy as np
    global _SPANS
    if _SPANS is None:
        _SPANS = _node_pfn_spans()
    starts, ends, nids = _SPANS
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        raw = os.pread(fd, size // PAGE * 8, addr // PAGE * 8)
    finally:
        os.close(fd)
    ent = np.frombuffer(raw, np.uint64)
    present = (ent >> np.uint64(63)) == 1
    pfn = (ent[present] & np.uint64((1 << 55) - 1)).astype(np.int64)
    i = np.maximum(np.searchsorted(starts, pfn, side="right") - 1, 0)
    nodes = np.full(len(ent), -2, np.int64)
    nodes[present] = np.where((pfn >= starts[i]) & (pfn < ends[i]), nids[i], -1)
    vals, counts = np.unique(nodes, return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts)}


_SPANS = None


def pfn_runs(pid: int, addr: int, size: int) -> list:
    """[[first PFN, pages], ...] of the present pages of [addr, addr+size) of ``pid`` in
    vaddr order, physically contiguous runs merged (/proc/PID/pagemap; root)."""
    import struct
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        raw = f.read(size // PAGE * 8)
    runs: list = []
    for (e,) in struct.iter_unpack("<Q", raw):
        if not e >> 63:
            continue
        pfn = e & ((1 << 55) - 1)
        if runs and runs[-1][0] + runs[-1][1] == pfn:
            runs[-1][1] += 1
        else:
            runs.append([pfn, 1])
    return runs


def node_mem(nid: int) -> dict:
    """MemTotal/MemFree of a node in bytes, ``swapbacked`` = AnonPages + Shmem (what
    reclaim without swap cannot free; the workloads' buffers are shared anonymous mmaps,
    i.e. Shmem), and used_bp as DAMON's node_mem_used_bp."""
    m = {}
    with open(f"/sys/devices/system/node/node{nid}/meminfo") as f:
        for line in f:
            parts = line.split()
            if parts[2] in ("MemTotal:", "MemFree:", "AnonPages:", "Shmem:"):
                m[parts[2][:-1]] = int(parts[3]) * 1024
    used = m["MemTotal"] - m["MemFree"]
    return {"total": m["MemTotal"], "free": m["MemFree"],
            "swapbacked": m.get("AnonPages", 0) + m.get("Shmem", 0),
            "used_bp": used * 10000 // m["MemTotal"]}


def cpu_time_s(pid: int, tid: int | None = None) -> float:
    """utime+stime of a process (or one of its threads) in seconds."""
    p = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(p) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def read(path: str, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


class Ticker:
    """A 1 ms sleeper pinned to ``cpu`` (VM-NOTES: forces TCG TLB flushes so accessed bits
    stay honest), as a child process; the tests start it themselves when they must first do
    something a running ticker makes risky (enabling a tracepoint)."""

    def __init__(self, cpu: int):
        self.p = subprocess.Popen([sys.executable, "-c",
                                   f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
                                   "while True: time.sleep(0.001)\n"])

    def stop(self):
        self.p.kill()
        self.p.wait()


# ----------------------------------------------------------------------------- workloads

class Workload:
    """A workload child process: ``kind`` and its JSON args; ``info`` is its setup line."""

    def __init__(self, kind: str, cpu: int | None = None, **kw):
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.p = subprocess.Popen([sys.executable, "-m", "workloads_vm", kind, json.dumps(kw)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  preexec_fn=pre)
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise RuntimeError(f"workload {kind} died during setup (exit {self.p.returncode})")
        self.info = json.loads(line)
        self.pid = self.p.pid

    def stop(self) -> dict:
        """Close stdin; the child prints its final JSON (counters) and exits."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        out = self.p.stdout.read()
        self.p.wait(timeout=60)
        return json.loads(out) if out.strip() else {}


def _tiered(args) -> None:
    """Cold data first-touched on ``cold_node`` (so much that the node has about
    ``leave_free_mib`` free afterwards, or ``cold_mib``), hot data on ``hot_node``; touch the
    hot data continuously until stdin closes."""
    cold_node, hot_node = args.get("cold_node", 0), args.get("hot_node", 1)
    if args.get("leave_free_mib") is not None:
        free = node_mem(cold_node)["free"]
        cold = max(0, free - args["leave_free_mib"] * MiB)
    else:
        cold = args["cold_mib"] * MiB
    hot = Buf(args["hot_mib"] * MiB, hot_node)
    coldb = Buf(cold, cold_node) if cold else None
    stop = threading.Event()
    passes = [0]

    def loop():
        while not stop.is_set():
            hot.touch()
            passes[0] += 1
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    print(json.dumps({"hot": [hot.addr, hot.size],
                      "cold": [coldb.addr, coldb.size] if coldb else [0, 0]}), flush=True)
    sys.stdin.read()
    stop.set()
    th.join()
    print(json.dumps({"passes": passes[0]}), flush=True)


def _two_threads(args) -> None:
    """Thread A pinned to cpu0 with hot data on ``a_node``, thread B pinned to cpu1 with hot
    data on ``b_node``; each first-touches (after pinning, so even the first-touch faults
    carry its own CPU) and then touches its own buffer (memchr over it: a ctypes call that
    releases the GIL) until stdin closes.  Reports the threads' tids.  With ``cold_mib``,
    each thread also has that much cold data side by side with its hot data in physical
    memory (:func:`side_by_side`), never touched again (``a_cold``, ``b_cold``)."""
    size = args["hot_mib"] * MiB
    cold_size = args.get("cold_mib", 0) * MiB
    bufs, tids, passes, colds = {}, {}, {"a": 0, "b": 0}, {}
    cpus, nodes = {"a": 0, "b": 1}, {"a": args["a_node"], "b": args["b_node"]}
    stop = threading.Event()
    ready = threading.Barrier(3)
    memchr = _libc.memchr
    memchr.restype = ctypes.c_void_p
    memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

    def worker(k):
        os.sched_setaffinity(0, {cpus[k]})
        tids[k] = threading.get_native_id()
        if cold_size:
            b, colds[k] = side_by_side(size, cold_size, nodes[k])
            bufs[k] = b
        else:
            b = bufs[k] = Buf(size, nodes[k])
        ready.wait()
        while not stop.is_set():
            memchr(b.addr, 1, b.size)        # reads every byte; never finds 0x01
            passes[k] += 1
    ths = [threading.Thread(target=worker, args=(k,), daemon=True) for k in "ab"]
    for t in ths:
        t.start()
    ready.wait()
    print(json.dumps({"tids": tids, **{k: [b.addr, b.size] for k, b in bufs.items()},
                      **{f"{k}_cold": [b.addr, b.size] for k, b in colds.items()}}),
          flush=True)
    sys.stdin.read()
    stop.set()
    for t in ths:
        t.join()
    print(json.dumps({"passes": passes}), flush=True)


def _moving(args) -> None:
    """A ``total_mib`` buffer (first touch on ``node``) whose ``hot_mib`` hot range moves
    to the next offset of ``offsets_mib`` every ``period_s``; prints one JSON line per
    phase change (offset, monotonic time) and the counters at the end."""
    total = args["total_mib"] * MiB
    hot = args["hot_mib"] * MiB
    b = Buf(total, args.get("node", 0))
    offs = [o * MiB for o in args["offsets_mib"]]
    print(json.dumps({"buf": [b.addr, b.size]}), flush=True)
    t0 = time.monotonic()
    passes = 0
    phase = -1
    end = t0 + args["period_s"] * len(offs)
    while time.monotonic() < end:
        k = int((time.monotonic() - t0) // args["period_s"])
        if k != phase:
            phase = k
            print(json.dumps({"phase": k, "offset": offs[k], "t": time.monotonic()}), flush=True)
        b.touch(offs[k], offs[k] + hot)
        passes += 1
    print(json.dumps({"done": True, "passes": passes, "t": time.monotonic()}), flush=True)


KINDS = {"tiered": _tiered, "two_threads": _two_threads, "moving": _moving}

if __name__ == "__main__":
    KINDS[sys.argv[1]](json.loads(sys.argv[2]))
