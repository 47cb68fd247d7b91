"""DAMOS quota goal and watermark metrics as the running Linux system gives them.

:class:`HostMetrics` is what ``Operations.metric`` answers by default, reading under the
backend's ``sysfs_root``/``procfs_root``/``cgroupfs_root`` (fixture trees in tests); a
simulated backend answers from its own machine instead.
"""

from __future__ import annotations

import os

from ..errors import FeatureMissing, InvalidConfig
from ..linux.formats import parse_meminfo
from ..linux.system import PAGE_SIZE
from ..units import BP

#: free_mem_rate is in permil of system memory (damo's and the kernel's watermark unit)
PERMIL = 1000


def _meminfo(path) -> dict:
    with open(path) as f:
        return parse_meminfo(f.read())


class HostMetrics:
    """Reads goal metrics from the running Linux system.

    ``sysfs``/``procfs``/``cgroupfs``: filesystem roots (parameters so tests can point
    them at fixture trees).  Stateless: ``some_mem_psi_total_us`` is the running total;
    each goal takes its own delta of it.
    """

    def __init__(self, sysfs="/sys", procfs="/proc", cgroupfs="/sys/fs/cgroup"):
        self.sysfs, self.procfs, self.cgroupfs = sysfs, procfs, cgroupfs

    def node_mem(self, nid):
        """(total, free) bytes of node ``nid``."""
        path = os.path.join(self.sysfs, "devices/system/node", f"node{nid}", "meminfo")
        if not os.path.exists(path):
            raise InvalidConfig(f"node {nid} does not exist ({path} missing)")
        m = _meminfo(path)
        return m["MemTotal"], m["MemFree"]

    #: memory.numa_stat keys of the LRU lists the kernel sums (damos_get_node_memcg_used_bp():
    #: the memcg's lruvec ACTIVE/INACTIVE ANON/FILE pages on the node, children included):
    #: cgroup v2 (bytes), cgroup v1 (pages; the hierarchical_ lines include the children)
    LRU_KEYS_V2 = ("active_anon", "inactive_anon", "active_file", "inactive_file")
    LRU_KEYS_V1 = ("hierarchical_anon", "hierarchical_file")

    def memcg_dir(self, memcg_path):
        """(directory of the memcg, cgroup version); FeatureMissing without a memory
        controller.  The path is relative to the memory controller's mount, as the
        kernel's ``memcg_path`` is."""
        rel = memcg_path.strip("/")
        if os.path.exists(os.path.join(self.cgroupfs, "cgroup.controllers")):
            with open(os.path.join(self.cgroupfs, "cgroup.controllers")) as f:
                if "memory" in f.read().split():
                    return os.path.join(self.cgroupfs, rel), 2
        v1 = os.path.join(self.cgroupfs, "memory")
        if os.path.exists(os.path.join(v1, "memory.numa_stat")):
            return os.path.join(v1, rel), 1
        raise FeatureMissing("memory cgroup controller (CONFIG_MEMCG)",
                             f"no memory controller under {self.cgroupfs}")

    def memcg_node_bytes(self, memcg_path, nid):
        """LRU bytes of memcg ``memcg_path`` (with its children) on node ``nid``; None if
        the memcg does not exist (the kernel reads a removed memcg as using nothing)."""
        d, version = self.memcg_dir(memcg_path)
        path = os.path.join(d, "memory.numa_stat")
        if not os.path.exists(path):
            return None
        keys, scale = ((self.LRU_KEYS_V2, 1) if version == 2 else (self.LRU_KEYS_V1, PAGE_SIZE))
        total = 0
        with open(path) as f:
            for line in f:
                key, *vals = line.replace("=", " ", 1).split() if version == 1 \
                    else line.split()
                if key not in keys:
                    continue
                for v in vals:
                    n, _, b = v.partition("=")
                    if n == f"N{nid}":
                        total += int(b) * scale
        return total

    def psi_some_total_us(self):
        path = os.path.join(self.procfs, "pressure/memory")
        if not os.path.exists(path):
            raise FeatureMissing("CONFIG_PSI", f"{path} missing")
        with open(path) as f:
            some = f.readline().split()
        return int(dict(kv.split("=") for kv in some[1:])["total"])

    def metric(self, name, nid=None, memcg_path=None):
        if name == "node_mem_total_bytes":
            return self.node_mem(nid)[0]
        if name in ("node_mem_used_bp", "node_mem_free_bp"):
            total, free = self.node_mem(nid)
            used = total - free
            return (used if name == "node_mem_used_bp" else free) * BP // max(1, total)
        if name in ("node_memcg_used_bp", "node_memcg_free_bp"):
            # damos_get_node_memcg_used_bp(): the memcg's LRU pages on the node over the
            # node's total (si_meminfo_node()'s totalram: the node's MemTotal); "free" is
            # the rest of the node; a memcg that is gone uses nothing
            total, _ = self.node_mem(nid)
            used = self.memcg_node_bytes(memcg_path, nid)
            if used is None:
                return 0 if name == "node_memcg_used_bp" else BP
            if name == "node_memcg_free_bp":
                used = max(0, total - used)
            return used * BP // max(1, total)
        if name in ("active_mem_bp", "inactive_mem_bp"):
            m = _meminfo(os.path.join(self.procfs, "meminfo"))
            act, inact = m.get("Active", 0), m.get("Inactive", 0)
            v = act if name == "active_mem_bp" else inact
            return v * BP // max(1, act + inact)
        if name == "some_mem_psi_total_us":
            return self.psi_some_total_us()
        if name == "free_mem_rate":
            m = _meminfo(os.path.join(self.procfs, "meminfo"))
            return m["MemFree"] * PERMIL // max(1, m["MemTotal"])
        raise InvalidConfig(f"unknown metric {name!r}")
