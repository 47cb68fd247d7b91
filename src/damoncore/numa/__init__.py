"""NUMA topology: nodes, CPUs, distances, HMAT access classes, memory tiers, per-node memory."""

from damoncore.numa.topology import (
    AccessClass,
    MemoryTier,
    Topology,
    parse_cpulist,
    parse_node_meminfo,
)

__all__ = ["AccessClass", "MemoryTier", "Topology", "parse_cpulist", "parse_node_meminfo"]
