"""Functions that run INSIDE the test guest (via harness.run_python("guest_checks:NAME")).

Raw ctypes/os only, so they test the guest itself independent of damoncore's own
wrappers.  Each returns a JSON-serialisable dict; the pytest side asserts on it.
Never import this on the host for anything but its source: it writes to sysfs.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import re
import struct
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
NODE_DIR = "/sys/devices/system/node"
from workloads_vm import platform_syscalls  # noqa: E402  (no numpy, no damoncore import)

SYS_move_pages = platform_syscalls()["move_pages"]
MPOL_MF_MOVE = 1 << 1
MADV_NOHUGEPAGE = 15
PROT_READ, PROT_WRITE = 1, 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _read(path: str, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _parse_list(s: str | None) -> list[int]:
    out: list[int] = []
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


# ----------------------------------------------------------------------------- survey

def survey() -> dict:
    """Everything about the guest's topology and features that the smoke tests assert."""
    nodes = _parse_list(_read(f"{NODE_DIR}/online"))
    info: dict = {
        "kernel": os.uname().release,
        "online_nodes": nodes,
        "has_cpu": _parse_list(_read(f"{NODE_DIR}/has_cpu")),
        "has_memory": _parse_list(_read(f"{NODE_DIR}/has_memory")),
        "online_cpus": _parse_list(_read("/sys/devices/system/cpu/online")),
        "possible_cpus": _parse_list(_read("/sys/devices/system/cpu/possible")),
        "nodes": {},
        "tiers": {},
        "numa_balancing": _read("/proc/sys/kernel/numa_balancing"),
        "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "page_idle": os.path.exists("/sys/kernel/mm/page_idle/bitmap"),
        "damon_sysfs": os.path.isdir("/sys/kernel/mm/damon/admin"),
        "cgroup2": os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
        "cgroup_controllers": (_read("/sys/fs/cgroup/cgroup.controllers") or "").split(),
        "userfaultfd": os.path.exists("/proc/sys/vm/unprivileged_userfaultfd"),
        "python": sys.version.split()[0],
        "sched_getcpu_per_cpu": {},
    }
    for n in nodes:
        d = f"{NODE_DIR}/node{n}"
        node = {
            "cpus": _parse_list(_read(f"{d}/cpulist")),
            "distance": [int(x) for x in (_read(f"{d}/distance") or "").split()],
            "mem_total_kb": None,
        }
        m = re.search(r"MemTotal:\s+(\d+) kB", _read(f"{d}/meminfo") or "")
        node["mem_total_kb"] = int(m.group(1)) if m else None
        for acc in ("access0", "access1"):
            a = f"{d}/{acc}/initiators"
            if os.path.isdir(a):
                node[acc] = {
                    "initiators": sorted(int(x[4:]) for x in os.listdir(a) if re.fullmatch(r"node\d+", x)),
                    **{k: int(_read(f"{a}/{k}", "-1")) for k in
                       ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth")},
                }
        info["nodes"][str(n)] = node
    tdir = "/sys/devices/virtual/memory_tiering"
    if os.path.isdir(tdir):
        for t in sorted(os.listdir(tdir)):
            if t.startswith("memory_tier"):
                info["tiers"][t[len("memory_tier"):]] = _parse_list(_read(f"{tdir}/{t}/nodelist"))
    info["demotion_enabled"] = _read("/sys/kernel/mm/numa/demotion_enabled")
    # soft-dirty: clear, write, look at pagemap bit 55
    info["soft_dirty"] = _soft_dirty_works()
    return info


def _soft_dirty_works() -> bool:
    buf = mmap.mmap(-1, 4 * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    buf[0:1] = b"x"
    with open("/proc/self/clear_refs", "w") as f:
        f.write("4")
    before = _pagemap_entries(addr, 1)[0]
    buf[0:1] = b"y"
    after = _pagemap_entries(addr, 1)[0]
    return not (before >> 55) & 1 and bool((after >> 55) & 1)


# ----------------------------------------------------------------------------- helpers

class Buffer:
    """An anonymous mapping with 4 KiB pages (MADV_NOHUGEPAGE), touched on creation."""

    def __init__(self, npages: int, fill: int = 0):
        self.npages = npages
        self.size = npages * PAGE
        self.map = mmap.mmap(-1, self.size, prot=PROT_READ | PROT_WRITE)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        if _libc.madvise(self.addr, self.size, MADV_NOHUGEPAGE) != 0:
            raise OSError(ctypes.get_errno(), "madvise(MADV_NOHUGEPAGE)")
        for i in range(npages):  # distinct content per page, to verify after moves
            self.map[i * PAGE:i * PAGE + 8] = struct.pack("<Q", (fill << 32) | i)

    def page_addrs(self) -> list[int]:
        return [self.addr + i * PAGE for i in range(self.npages)]

    def touch(self) -> int:
        s = 0
        for i in range(self.npages):
            s += self.map[i * PAGE]
            self.map[i * PAGE + 16] = (self.map[i * PAGE + 16] + 1) & 0xFF
        return s

    def content_ok(self, fill: int = 0) -> bool:
        return all(struct.unpack_from("<Q", self.map, i * PAGE)[0] == ((fill << 32) | i)
                   for i in range(self.npages))

    def flush_tlb(self) -> None:
        """mprotect round trip: the kernel flushes this range's TLB entries."""
        for prot in (PROT_READ, PROT_READ | PROT_WRITE):
            if _libc.mprotect(self.addr, self.size, prot) != 0:
                raise OSError(ctypes.get_errno(), "mprotect")


def raw_move_pages(addrs: list[int], node: int | None, pid: int = 0) -> list[int]:
    """move_pages(2); node=None queries. Returns per-page status (node or -errno)."""
    n = len(addrs)
    pages = (ctypes.c_void_p * n)(*addrs)
    status = (ctypes.c_int * n)()
    nodes = (ctypes.c_int * n)(*([node] * n)) if node is not None else None
    rc = _libc.syscall(ctypes.c_long(SYS_move_pages), ctypes.c_long(pid), ctypes.c_ulong(n), pages,
                       nodes, status, ctypes.c_int(MPOL_MF_MOVE if node is not None else 0))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"move_pages: {os.strerror(e)}")
    return list(status)


def _pagemap_entries(addr: int, npages: int) -> list[int]:
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        data = f.read(npages * 8)
    return list(struct.unpack(f"<{npages}Q", data))


def pfns(buf: Buffer) -> list[int]:
    ents = _pagemap_entries(buf.addr, buf.npages)
    out = []
    for e in ents:
        if not (e >> 63) & 1:
            raise RuntimeError("page not present")
        out.append(e & ((1 << 55) - 1))
    return out


def _idle_rw(pfn_list: list[int], mark: bool) -> dict[int, bool]:
    """Mark the PFNs idle (mark=True) or read their idle bits."""
    words: dict[int, int] = {}
    for p in pfn_list:
        words.setdefault(p // 64, 0)
        words[p // 64] |= 1 << (p % 64)
    res: dict[int, bool] = {}
    fd = os.open("/sys/kernel/mm/page_idle/bitmap", os.O_RDWR)
    try:
        for w, mask in sorted(words.items()):
            if mark:
                os.pwrite(fd, struct.pack("<Q", mask), w * 8)
            else:
                val = struct.unpack("<Q", os.pread(fd, 8, w * 8))[0]
                for b in range(64):
                    if mask >> b & 1:
                        res[w * 64 + b] = bool(val >> b & 1)
    finally:
        os.close(fd)
    return res


# ----------------------------------------------------------------------------- checks

def check_move_pages(npages: int = 4096, path=(0, 1, 2, 3)) -> dict:
    """Move a live buffer's pages through `path` with raw move_pages; query after each."""
    os.sched_setaffinity(0, {0})
    buf = Buffer(npages, fill=7)
    addrs = buf.page_addrs()
    steps = []
    start = raw_move_pages(addrs, None)
    for node in path:
        t = time.perf_counter()
        st = raw_move_pages(addrs, node)
        dt = time.perf_counter() - t
        q = raw_move_pages(addrs, None)
        steps.append({
            "target": node,
            "move_status_counts": _counts(st),
            "query_counts": _counts(q),
            "seconds": dt,
            "pages_per_s": npages / dt if dt > 0 else None,
            "content_ok": buf.content_ok(fill=7),
        })
    return {"npages": npages, "start_counts": _counts(start), "steps": steps}


def _counts(vals: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in vals:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def check_page_idle(npages: int = 512, rounds: int = 3) -> dict:
    """Mark a hot and a cold buffer idle, touch only the hot one, read the bits back."""
    os.sched_setaffinity(0, {0})
    hot, cold = Buffer(npages, 1), Buffer(npages, 2)
    out = {"npages": npages, "rounds": []}
    for _ in range(rounds):
        # trap 1: pages still in per-CPU LRU add batches are not on the LRU, and
        # page_idle ignores non-LRU pages; a no-op move_pages drains the batches.
        here = raw_move_pages(hot.page_addrs()[:1], None)[0]
        raw_move_pages(hot.page_addrs() + cold.page_addrs(), here)
        hp, cp = pfns(hot), pfns(cold)
        _idle_rw(hp + cp, mark=True)
        # trap 2: marking clears the PTE accessed bits without a TLB flush; a
        # cached translation would let the next access skip setting the bit.
        hot.flush_tlb()
        cold.flush_tlb()
        marked = _idle_rw(hp + cp, mark=False)
        hot.touch()
        bits = _idle_rw(hp + cp, mark=False)
        out["rounds"].append({
            "marked_idle_hot": sum(marked[p] for p in hp),
            "marked_idle_cold": sum(marked[p] for p in cp),
            "hot_idle": sum(bits[p] for p in hp),
            "cold_idle": sum(bits[p] for p in cp),
            "pfns_stable": hp == pfns(hot) and cp == pfns(cold),
        })
    return out


def check_cpu_pinning() -> dict:
    """Pin one thread per CPU node; report the CPU and the node each really ran on."""
    import threading
    res = {}

    def worker(cpu):
        os.sched_setaffinity(0, {cpu})
        x = 0
        for i in range(20000):
            x += i
        c = _libc.sched_getcpu()
        node = next((int(n[4:]) for n in os.listdir(NODE_DIR)
                     if re.fullmatch(r"node\d+", n) and os.path.exists(f"{NODE_DIR}/{n}/cpu{c}")), None)
        res[str(cpu)] = {"cpu": c, "node": node}

    ths = [threading.Thread(target=worker, args=(c,)) for c in
           _parse_list(_read("/sys/devices/system/cpu/online"))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return res


# ----------------------------------------------------------------------------- project API

def api_topology() -> dict:
    """damoncore.numa.topology.Topology.read() in the guest, flattened to JSON."""
    from damoncore.numa.topology import Topology
    t = Topology.read()
    return {
        "nodes": t.nodes,
        "cpu_nodes": t.cpu_nodes(),
        "memory_only_nodes": t.memory_only_nodes(),
        "node_of_cpu": {str(c): n for c, n in t.node_of_cpu().items()},
        "distances": {str(s): [t.distance(s, d) for d in t.nodes] for s in t.nodes},
        **{f"access{k}": {str(n): {"initiators": list(a[k].initiators),
                                   "read_latency": a[k].read_latency,
                                   "read_bandwidth": a[k].read_bandwidth}
                          for n, a in t.access.items() if k in a}
           for k in (0, 1)},
        "tier_of": {str(n): t.tier_of(n) for n in t.nodes},
        "phys_ranges": {str(n): r for n, r in t.phys_ranges.items()},
        "mem_total": {str(n): t.node_meminfo(n).get("MemTotal") for n in t.nodes},
    }


def api_migration(npages: int = 4096, path=(0, 1, 2, 3)) -> dict:
    """damoncore.linux.migrate: move a CHILD process's live buffer through `path`.

    The child holds a patterned buffer and reports its address; the parent moves and
    queries its pages by pid (as damoncore does for a monitored target), cross-checks each
    page's node through pagemap PFN -> Topology.node_of_phys, and finally lets the child
    verify its content.
    """
    from damoncore.linux.errors import NodeUnavailable
    from damoncore.linux.migrate import move_pages, page_addrs, query_pages
    from damoncore.linux.pagemap import Pagemap, pfns as pm_pfns
    from damoncore.numa.topology import Topology

    topo = Topology.read()
    r_addr, w_addr = os.pipe()
    r_go, w_go = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: buffer owner
        os.close(r_addr)
        os.close(w_go)
        try:
            os.sched_setaffinity(0, {0})
            buf = Buffer(npages, fill=9)
            os.write(w_addr, struct.pack("<Q", buf.addr))
            os.read(r_go, 1)
            os.write(w_addr, b"1" if buf.content_ok(fill=9) else b"0")
        finally:
            os._exit(0)
    os.close(w_addr)
    os.close(r_go)
    addr = struct.unpack("<Q", os.read(r_addr, 8))[0]
    addrs = page_addrs(addr, addr + npages * PAGE, PAGE)
    out = {"npages": npages, "steps": []}
    try:
        src = query_pages(pid, addrs)
        out["start_counts"] = _counts(src.tolist())
        for node in path:
            t = time.perf_counter()
            res = move_pages(pid, addrs, node, src_nodes=src, page_size=PAGE)
            dt = time.perf_counter() - t
            q = query_pages(pid, addrs)
            with Pagemap(pid, page_size=PAGE) as pm:
                frames = pm_pfns(pm.read(addr, addr + npages * PAGE))
            phys_nodes = [topo.node_of_phys(int(f) * PAGE) for f in frames]
            out["steps"].append({
                "target": node,
                "nr_moved": res.nr_moved,
                "errors": res.errors,
                "bytes_moved": {f"{s}->{d}": b for (s, d), b in res.bytes_moved.items()},
                "query_counts": _counts(q.tolist()),
                "phys_node_counts": _counts(phys_nodes),
                "seconds": dt,
                "pages_per_s": npages / dt if dt > 0 else None,
            })
            src = q
        try:
            move_pages(pid, addrs[:1], max(topo.nodes) + 1)
            out["offline_node_error"] = None
        except NodeUnavailable as e:
            out["offline_node_error"] = type(e).__name__
        os.write(w_go, b"g")
        out["child_content_ok"] = os.read(r_addr, 1) == b"1"
    finally:
        os.waitpid(pid, 0)
    return out


def api_page_idle(npages: int = 512, rounds: int = 3) -> dict:
    """damoncore.linux.{pagemap,page_idle}: hot/cold idle check with the two traps' fixes."""
    from damoncore.linux.migrate import move_pages, page_addrs, query_pages
    from damoncore.linux.page_idle import PageIdle
    from damoncore.linux.pagemap import Pagemap, pfns as pm_pfns

    os.sched_setaffinity(0, {0})
    me = os.getpid()
    hot, cold = Buffer(npages, 1), Buffer(npages, 2)
    both = [page_addrs(b.addr, b.addr + b.size, PAGE) for b in (hot, cold)]
    out = {"npages": npages, "rounds": []}
    with Pagemap(me, page_size=PAGE) as pm, PageIdle() as pi:
        for _ in range(rounds):
            for a in both:  # drain per-CPU LRU batches: no-op move to the current node
                here = int(query_pages(me, a[:1])[0])
                move_pages(me, a, here)
            hp = pm_pfns(pm.read(hot.addr, hot.addr + hot.size))
            cp = pm_pfns(pm.read(cold.addr, cold.addr + cold.size))
            pi.mark_idle(hp)
            pi.mark_idle(cp)
            hot.flush_tlb()
            cold.flush_tlb()
            hot.touch()
            out["rounds"].append({
                "hot_idle": int(pi.read_idle(hp).sum()),
                "cold_idle": int(pi.read_idle(cp).sum()),
                "zero_pfns": int((hp == 0).sum() + (cp == 0).sum()),
            })
    return out


def check_page_idle_no_flush(npages: int = 512, rounds: int = 3, settle_s: float = 0.05) -> dict:
    """Like check_page_idle but WITHOUT the mprotect TLB flush: only a wait after marking.

    With a 1 ms ticker on the workload's CPU (DC_TICKER_CPUS) TCG's TLB is flushed by the
    ticker's wakeups, so the hot buffer must still read fully non-idle.
    """
    os.sched_setaffinity(0, {0})
    hot, cold = Buffer(npages, 1), Buffer(npages, 2)
    out = {"npages": npages, "rounds": []}
    for _ in range(rounds):
        here = raw_move_pages(hot.page_addrs()[:1], None)[0]
        raw_move_pages(hot.page_addrs() + cold.page_addrs(), here)
        hp, cp = pfns(hot), pfns(cold)
        _idle_rw(hp + cp, mark=True)
        time.sleep(settle_s)
        hot.touch()
        bits = _idle_rw(hp + cp, mark=False)
        out["rounds"].append({"hot_idle": sum(bits[p] for p in hp),
                              "cold_idle": sum(bits[p] for p in cp)})
    return out
