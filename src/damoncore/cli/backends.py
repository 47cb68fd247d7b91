"""Choosing an ops backend for ``start`` and resolving ``--numa_node`` for it.

The simulated machine shares one virtual clock, so all its contexts run in one
:class:`Kdamond`; real backends get one thread per kdamond.
"""

from __future__ import annotations

import importlib
import os

from ..errors import FeatureMissing, InvalidConfig
from .damo_args import NodeResolver

BACKENDS = ("sim", "paddr", "vaddr", "perf")
PRESETS = {"seed": "seed_machine", "tiering": "tiering_machine", "demo": "demo"}


GiB = 1 << 30


def sim_machine(preset: str):
    """(machine, default pid) of a ``--sim_preset``.

    ``demo`` is the README's scenario; ``tiering`` is TPP's (DRAM full of cold data, hot
    data on CXL: ``damoncore.sim.presets.tiering``); ``seed`` (the talk's 4-node topology)
    runs one 3 GiB process on node 0 whose 256 MiB hot range moves every 10 s, so that
    there is something to monitor.
    """
    try:
        presets = importlib.import_module("damoncore.sim.presets")
        from ..sim.workloads import Workload
    except ImportError as e:
        raise FeatureMissing("damoncore.sim.presets", "the simulator is not installed") from e
    if preset == "demo":
        m, info = presets.demo()
        return m, info["pid"]
    if preset == "tiering":
        m, info = presets.tiering()
        return m, info["pid"]
    m = presets.seed_machine(2 * GiB, 4 * GiB)
    pid = 4242
    moves = [(i * 10_000_000, off) for i, off in enumerate((2 * GiB, 1 * GiB, 0) * 20)]
    m.add_workload(Workload.moving_hot(3 * GiB, GiB // 4, moves, pid=pid, node=0))
    return m, pid


def add_root_args(p):
    p.add_argument("--sysfs_root", default="/sys", metavar="<dir>",
                   help="where to read NUMA nodes and memory blocks from")
    p.add_argument("--procfs_root", default="/proc", metavar="<dir>",
                   help="procfs root (zoneinfo fallback)")


class SimResolver(NodeResolver):
    def __init__(self, machine):
        self.machine = machine

    def node_ranges(self, nid):
        if not 0 <= nid < len(self.machine.nodes):
            raise InvalidConfig(f"--numa_node {nid}: the simulated machine has nodes "
                                f"0-{len(self.machine.nodes) - 1}")
        return [self.machine.node_range(nid)]

    def default_paddr(self):
        return [(0, self.machine.total_bytes)]


class RealResolver(NodeResolver):
    def __init__(self, sysfs_root="/sys", procfs_root="/proc"):
        from ..numa import Topology
        self.topo = Topology.read(sysfs_root, procfs_root)

    def node_ranges(self, nid):
        ranges = self.topo.phys_ranges.get(nid)
        if nid not in self.topo.nodes or not ranges:
            raise InvalidConfig(f"--numa_node {nid}: no such memory node (online: "
                                f"{','.join(map(str, self.topo.nodes))})")
        return list(ranges)

    def default_paddr(self):
        all_ranges = [r for n in self.topo.nodes for r in self.topo.phys_ranges.get(n, [])]
        if not all_ranges:
            return []
        return [max(all_ranges, key=lambda r: r[1] - r[0])]


IDLE_BITMAP = "kernel/mm/page_idle/bitmap"


def yes(v) -> bool:
    return str(v).lower() in ("y", "yes", "true", "1")


def real_unusable_reason(name: str, sysfs_root: str = "/sys") -> str | None:
    """Why the real ``name`` backend cannot run here (None when it can).

    It needs its module, root (pagemap PFNs, other processes' memory) and, for accessed-bit
    sampling, the idle page bitmap (CONFIG_IDLE_PAGE_TRACKING).
    """
    try:
        importlib.import_module(f"damoncore.ops.{name}")
    except ImportError:
        return f"the {name} backend is not installed"
    if os.geteuid() != 0:
        return "the real backends need root"
    if not os.path.exists(os.path.join(sysfs_root, IDLE_BITMAP)):
        from ..ops.vaddr import soft_dirty_supported
        if name == "vaddr" and soft_dirty_supported():
            return None
        return "the kernel has no idle page tracking (CONFIG_IDLE_PAGE_TRACKING)"
    return None


def pick_backend(requested: str | None, kdamonds_space: str, sysfs_root: str = "/sys",
                 page_fault: bool = False):
    """(backend, reason): the requested one, else the real one if usable, else sim with
    the reason the real one was passed over.  Page-fault sampling selects perf, which
    needs no idle page tracking."""
    if requested:
        return requested, None
    if page_fault:
        try:
            importlib.import_module("damoncore.ops.perf")
        except ImportError:
            return "sim", "the perf backend is not installed"
        return ("perf", None) if os.geteuid() == 0 else ("sim", "perf sampling needs root")
    why = real_unusable_reason(kdamonds_space, sysfs_root)
    return (kdamonds_space, None) if why is None else ("sim", why)


def ops_factory(backend: str, machine=None, default_pid=None, sysfs_root="/sys",
                procfs_root="/proc"):
    """``ctx_dict -> Operations`` for the chosen backend."""
    if backend == "sim":
        try:
            from ..ops.sim import SimOps
        except ImportError as e:
            raise FeatureMissing("damoncore.ops.sim", "the simulated backend is missing") \
                from e

        def make(c):
            space = "vaddr" if c.get("ops") in ("vaddr", "fvaddr") else "paddr"
            pids = [t.get("pid") for t in c.get("targets", []) if t.get("pid") is not None]
            if space == "vaddr":
                for pid in pids or [default_pid]:
                    try:
                        machine.pidx(pid)
                    except (InvalidConfig, TypeError):
                        raise InvalidConfig(
                            f"--target_pid {pid}: no such process on the simulated machine "
                            f"(its process: {default_pid})") from None
            return SimOps(machine, space=space, pid=pids[0] if pids else default_pid)
        return make
    from ..ops.paddr import PaddrOps
    from ..ops.vaddr import VaddrOps

    def base(c):
        if c.get("ops") in ("vaddr", "fvaddr"):
            return VaddrOps(procfs_root=procfs_root, sysfs_root=sysfs_root)
        return PaddrOps(sysfs_root=sysfs_root, procfs_root=procfs_root)

    if backend in ("paddr", "vaddr"):
        return base
    if backend == "perf":
        from ..ops.perf import PerfOps

        def make_perf(c):
            pe = (c.get("sample_control") or {}).get("primitives_enabled") or {}
            if not pe.get("page_fault") or pe.get("page_table"):
                raise InvalidConfig("--backend perf: give --sample_primitives page_fault "
                                    "(perf samples page faults, not accessed bits)")
            return PerfOps(base(c), procfs_root=procfs_root, sysfs_root=sysfs_root)
        return make_perf
    raise InvalidConfig(f"--backend {backend}: unknown (known: {', '.join(BACKENDS)})")
