"""Current values of DAMOS quota goal metrics and watermark metrics.

The ops backend answers first (``ops.metric(name, nid, memcg_path)``) so the simulated
machine reports its own memory; otherwise the host's procfs/sysfs/cgroupfs are read, with
their roots as parameters.
"""

from __future__ import annotations

import os

from ..errors import FeatureMissing, InvalidConfig


def _meminfo_kb(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.replace(":", " ").split()
            # node meminfo lines start with "Node N"
            if parts[0] == "Node":
                parts = parts[2:]
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
    return out


class HostMetrics:
    """Reads goal metrics from the running Linux system.

    ``sysfs``/``procfs``/``cgroupfs``: filesystem roots (parameters so tests can point
    them at fixture trees).
    """

    def __init__(self, sysfs="/sys", procfs="/proc", cgroupfs="/sys/fs/cgroup"):
        self.sysfs, self.procfs, self.cgroupfs = sysfs, procfs, cgroupfs
        self._last_psi_us = None

    def node_mem(self, nid):
        path = os.path.join(self.sysfs, "devices/system/node", f"node{nid}", "meminfo")
        if not os.path.exists(path):
            raise InvalidConfig(f"node {nid} does not exist ({path} missing)")
        m = _meminfo_kb(path)
        return m["MemTotal"] * 1024, m["MemFree"] * 1024

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

    def metric(self, name, nid=None, memcg_path=None):
        if name == "node_mem_total_bytes":
            return self.node_mem(nid)[0]
        if name in ("node_mem_used_bp", "node_mem_free_bp"):
            total, free = self.node_mem(nid)
            used = total - free
            return (used if name == "node_mem_used_bp" else free) * 10000 // max(1, total)
        if name in ("node_memcg_used_bp", "node_memcg_free_bp"):
            total, _ = self.node_mem(nid)
            used = self.memcg_node_bytes(memcg_path, nid)
            if name == "node_memcg_free_bp":
                used = max(0, total - used)
            return used * 10000 // max(1, total)
        if name in ("active_mem_bp", "inactive_mem_bp"):
            m = _meminfo_kb(os.path.join(self.procfs, "meminfo"))
            act, inact = m.get("Active", 0), m.get("Inactive", 0)
            v = act if name == "active_mem_bp" else inact
            return v * 10000 // max(1, act + inact)
        if name == "some_mem_psi_us":
            path = os.path.join(self.procfs, "pressure/memory")
            if not os.path.exists(path):
                raise FeatureMissing("CONFIG_PSI", f"{path} missing")
            with open(path) as f:
                some = f.readline().split()
            total = int(dict(kv.split("=") for kv in some[1:])["total"])
            last, self._last_psi_us = self._last_psi_us, total
            return 0 if last is None else total - last
        if name == "free_mem_rate":
            m = _meminfo_kb(os.path.join(self.procfs, "meminfo"))
            return m["MemFree"] * 1000 // max(1, m["MemTotal"])
        raise InvalidConfig(f"unknown metric {name!r}")


def metric_value(ctx, name, nid=None, memcg_path=None):
    """The metric from the ops backend if it has one, else from the host."""
    fn = getattr(ctx.ops, "metric", None)
    if fn is not None:
        return int(fn(name, nid=nid, memcg_path=memcg_path))
    host = getattr(ctx, "_host_metrics", None)
    if host is None:
        host = ctx._host_metrics = HostMetrics()
    return int(host.metric(name, nid=nid, memcg_path=memcg_path))
