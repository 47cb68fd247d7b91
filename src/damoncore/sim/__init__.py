"""Simulated memory: the embedded default backend (no root, no NUMA hardware needed).

:class:`SimMachine` (nodes, frames, processes, a virtual clock), :class:`Workload` (access
streams and phases), and presets of the seed talk's topologies.  The ops backend that lets
the core monitor it is :class:`damoncore.ops.sim.SimOps`.
"""

from .machine import MoveResult, SimClock, SimMachine, SimNode, SimOutOfMemory
from .workloads import Accessor, Mapping, Process, Stream, Workload

__all__ = ["Accessor", "Mapping", "MoveResult", "Process", "SimClock", "SimMachine", "SimNode",
           "SimOutOfMemory", "Stream", "Workload"]
