"""DAMOS quota goal and watermark metrics as the running Linux system gives them.

:class:`HostMetrics` is what ``Operations.metric`` answers by default, reading under the
backend's ``sysfs_root``/``procfs_root``/``cgroupfs_root`` (fixture trees in tests); a
simulated backend answers from its own machine instead.
"""

from __future__ import annotations

import os

from ..errors import FeatureMissing, InvalidConfig
from ..linux.formats import parse_meminfo
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

    def memcg_node_bytes(self, memcg_path, nid):
        path = os.path.join(self.cgroupfs, memcg_path.lstrip("/"), "memory.numa_stat")
        if not os.path.exists(path):
            raise FeatureMissing("cgroup v2 memory controller",
                                 f"{path} missing for memcg {memcg_path!r}")
        total = 0
        with open(path) as f:
            for line in f:
                key, *vals = line.split()
                if key in ("anon", "file"):
                    for v in vals:
                        n, b = v.split("=")
                        if n == f"N{nid}":
                            total += int(b)
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
            total, _ = self.node_mem(nid)
            used = self.memcg_node_bytes(memcg_path, nid)
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
