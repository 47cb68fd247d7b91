"""NUMA topology: nodes, CPUs, distances, HMAT access classes, memory tiers, per-node memory;
and the system-wide weighted-interleave weights a policy may tune (sysfs, Linux >= 6.9).
"""

from damoncore.linux.mempolicy import read_weights as read_interleave_weights
from damoncore.linux.mempolicy import write_weights as write_interleave_weights
from damoncore.numa.topology import (
    AccessClass,
    MemoryTier,
    Topology,
    parse_cpulist,
    parse_node_meminfo,
)

__all__ = ["AccessClass", "MemoryTier", "Topology", "parse_cpulist", "parse_node_meminfo",
           "read_interleave_weights", "write_interleave_weights"]
