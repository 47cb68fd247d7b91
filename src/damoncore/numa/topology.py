"""NUMA topology as the kernel exports it under sysfs.

Everything is read from a ``sysfs_root`` (default ``/sys``) and, for the physical-range fallback,
a ``procfs_root`` (default ``/proc``), so tests point both at fixture trees.

Units: latencies in nanoseconds and bandwidths in MB/s (as HMAT exports them), memory sizes in
bytes, physical addresses in bytes, half-open ``[start, end)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from damoncore.linux.formats import parse_cpulist
from damoncore.linux.formats import parse_meminfo as parse_node_meminfo
from damoncore.linux.system import PAGE_SIZE

_NODE_DIR = "devices/system/node"
_MEMORY_DIR = "devices/system/memory"
_TIERS_DIR = "devices/virtual/memory_tiering"
_HMAT_FIELDS = ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass(frozen=True)
class AccessClass:
    """HMAT performance of one node seen from its best initiators (``nodeN/accessK``).

    ``access0`` counts any initiator (CPU or device), ``access1`` only CPUs.  Latencies are in
    nanoseconds, bandwidths in MB/s; a field the firmware did not report is ``None``.
    """

    initiators: tuple[int, ...]
    read_latency: int | None = None
    write_latency: int | None = None
    read_bandwidth: int | None = None
    write_bandwidth: int | None = None


@dataclass(frozen=True)
class MemoryTier:
    """One memory tier: its id (``memory_tierN``, lower is faster) and its nodes."""

    tier_id: int
    nodes: tuple[int, ...]


@dataclass
class Topology:
    """A snapshot of the machine's NUMA layout.

    Attributes:
        nodes: online node ids, sorted.
        cpus: node id -> sorted CPU ids (empty for memory-only nodes such as CXL).
        distances: node id -> {node id -> SLIT distance (10 = local)}.
        access: node id -> {access class 0|1 -> AccessClass}; empty without HMAT.
        tiers: memory tiers sorted by tier id (fastest first); empty without memory tiering.
        phys_ranges: node id -> list of ``(start, end)`` physical byte ranges, merged and sorted.
        sysfs_root: where this was read from; ``node_meminfo`` reads again from here.
    """

    nodes: list[int]
    cpus: dict[int, list[int]]
    distances: dict[int, dict[int, int]]
    access: dict[int, dict[int, AccessClass]] = field(default_factory=dict)
    tiers: list[MemoryTier] = field(default_factory=list)
    phys_ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    sysfs_root: str = "/sys"

    @classmethod
    def read(cls, sysfs_root: str = "/sys", procfs_root: str = "/proc") -> "Topology":
        """Read the topology from ``sysfs_root`` (and ``procfs_root`` for the zoneinfo fallback)."""
        base = os.path.join(sysfs_root, _NODE_DIR)
        online = _read(os.path.join(base, "online"))
        if online is None:
            # A kernel without CONFIG_NUMA still has one node holding everything.
            nodes = [0]
        else:
            nodes = parse_cpulist(online)
        cpus = {}
        distances = {}
        access = {}
        for nid in nodes:
            ndir = os.path.join(base, f"node{nid}")
            cpus[nid] = parse_cpulist(_read(os.path.join(ndir, "cpulist")) or "")
            dist = (_read(os.path.join(ndir, "distance")) or "").split()
            # The kernel prints one column per online node, in node order.
            distances[nid] = {nodes[i]: int(d) for i, d in enumerate(dist) if i < len(nodes)}
            access[nid] = _read_access(ndir)
        topo = cls(
            nodes=nodes,
            cpus=cpus,
            distances=distances,
            access={n: a for n, a in access.items() if a},
            tiers=_read_tiers(sysfs_root),
            sysfs_root=sysfs_root,
        )
        topo.phys_ranges = _read_phys_ranges(sysfs_root, procfs_root, nodes)
        return topo

    # -- derived views -------------------------------------------------------------------------

    def cpu_nodes(self) -> list[int]:
        """Nodes that have at least one CPU."""
        return [n for n in self.nodes if self.cpus.get(n)]

    def memory_only_nodes(self) -> list[int]:
        """Nodes without CPUs (CXL expanders, PMEM)."""
        return [n for n in self.nodes if not self.cpus.get(n)]

    def node_of_cpu(self) -> dict[int, int]:
        """CPU id -> node id."""
        return {c: n for n, cs in self.cpus.items() for c in cs}

    def distance(self, src: int, dst: int) -> int:
        """SLIT distance from ``src`` to ``dst`` (unitless, 10 = local)."""
        return self.distances[src][dst]

    def tier_of(self, nid: int) -> int | None:
        """Tier id holding node ``nid``, or None without memory tiering."""
        for tier in self.tiers:
            if nid in tier.nodes:
                return tier.tier_id
        return None

    def node_meminfo(self, nid: int) -> dict[str, int]:
        """Fresh ``nodeN/meminfo`` read: field name -> bytes (e.g. ``MemTotal``, ``MemFree``).

        Page counters without a unit (``HugePages_Total``) are returned as plain counts.
        """
        path = os.path.join(self.sysfs_root, _NODE_DIR, f"node{nid}", "meminfo")
        text = _read(path)
        if text is None:
            raise FileNotFoundError(path)
        return parse_node_meminfo(text)

    def node_of_phys(self, paddr: int) -> int | None:
        """Node owning physical byte address ``paddr``, or None if no node spans it."""
        for nid, ranges in self.phys_ranges.items():
            for start, end in ranges:
                if start <= paddr < end:
                    return nid
        return None


def _read_access(ndir: str) -> dict[int, AccessClass]:
    out = {}
    for cls_id in (0, 1):
        idir = os.path.join(ndir, f"access{cls_id}", "initiators")
        if not os.path.isdir(idir):
            continue
        inits = sorted(
            int(m.group(1)) for m in (re.fullmatch(r"node(\d+)", e) for e in os.listdir(idir)) if m
        )
        vals = {}
        for name in _HMAT_FIELDS:
            text = _read(os.path.join(idir, name))
            vals[name] = int(text) if text and text.strip() else None
        out[cls_id] = AccessClass(initiators=tuple(inits), **vals)
    return out


def _read_tiers(sysfs_root: str) -> list[MemoryTier]:
    tdir = os.path.join(sysfs_root, _TIERS_DIR)
    if not os.path.isdir(tdir):
        return []
    tiers = []
    for entry in os.listdir(tdir):
        m = re.fullmatch(r"memory_tier(\d+)", entry)
        if not m:
            continue
        nodelist = _read(os.path.join(tdir, entry, "nodelist")) or ""
        tiers.append(MemoryTier(int(m.group(1)), tuple(parse_cpulist(nodelist))))
    return sorted(tiers, key=lambda t: t.tier_id)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _read_phys_ranges(sysfs_root, procfs_root, nodes) -> dict[int, list[tuple[int, int]]]:
    """Online memory blocks per node; falls back to zoneinfo spans (damo issue #83 on QEMU)."""
    mdir = os.path.join(sysfs_root, _MEMORY_DIR)
    bsz_text = _read(os.path.join(mdir, "block_size_bytes"))
    if bsz_text is None:
        return _zoneinfo_ranges(procfs_root, nodes)
    block_size = int(bsz_text.strip(), 16)
    out = {}
    for nid in nodes:
        ndir = os.path.join(sysfs_root, _NODE_DIR, f"node{nid}")
        ranges = []
        for entry in os.listdir(ndir) if os.path.isdir(ndir) else ():
            if not re.fullmatch(r"memory\d+", entry):
                continue
            bdir = os.path.join(mdir, entry)
            if (_read(os.path.join(bdir, "online")) or "1").strip() != "1":
                continue
            # phys_index is the block number in hex; the zone does not change the span.
            idx = int((_read(os.path.join(bdir, "phys_index")) or "0").strip(), 16)
            ranges.append((idx * block_size, (idx + 1) * block_size))
        out[nid] = _merge(ranges)
    return out


def _zoneinfo_ranges(procfs_root, nodes) -> dict[int, list[tuple[int, int]]]:
    text = _read(os.path.join(procfs_root, "zoneinfo")) or ""
    out: dict[int, list[tuple[int, int]]] = {n: [] for n in nodes}
    nid = spanned = None
    for line in text.splitlines():
        m = re.match(r"Node\s+(\d+),\s+zone", line)
        if m:
            nid, spanned = int(m.group(1)), None
            continue
        words = line.split()
        if len(words) == 2 and words[0] == "spanned":
            spanned = int(words[1])
        elif len(words) == 2 and words[0] == "start_pfn:" and nid is not None and spanned:
            start = int(words[1]) * PAGE_SIZE
            out.setdefault(nid, []).append((start, start + spanned * PAGE_SIZE))
    return {n: _merge(r) for n, r in out.items()}
