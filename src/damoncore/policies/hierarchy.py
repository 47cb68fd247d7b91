"""Per-accessor memory hierarchies: every accessor's memory nodes, cheapest first.

The talk's holistic NUMA migration runs one TPP per accessor, each along its own
promotion/demotion path: with the seed matrix CPU1 (node 0) sees DRAM1 10, CXL1 20, DRAM2 50,
CXL2 60, so its path is 0 -> 1 -> 2 -> 3, and CPU2's is 2 -> 3 -> 0 -> 1.

An *accessor* is a CPU node's CPUs or a named device (GPU, accelerator) with an initiator
node; its access reports are told apart by CPU ids (``cpus``) or thread/queue ids (``tids``).

Costs come from either

- a :class:`damoncore.numa.Topology`: HMAT read latency where the firmware gives one for the
  (initiator, memory node) pair, else the SLIT distance.  The two are put on one scale, SLIT
  distance units (10 = local), by the median ratio distance/latency over the pairs that have
  both; a topology without HMAT is ordered by distance alone;
- a plain square matrix or ``{initiator: {memory node: cost}}`` dict (the simulated machine's
  ``latency``), used as is.

Ties are broken by node id, so paths are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidConfig


@dataclass(frozen=True)
class AccessorSpec:
    """Something whose accesses are monitored and placed for separately.

    ``name``: label (``cpu0``, ``gpu0``).  ``node``: its initiator node, whose row of the
    cost matrix it uses.  ``cpus``: CPU ids its reports carry (a cpumask sample filter);
    ``tids``: thread (or device queue) ids, used when ``cpus`` is empty.  ``weight``:
    multiplies its hotness when a page several accessors use is placed (unitless, 1 = equal).
    """

    name: str
    node: int
    cpus: frozenset = field(default_factory=frozenset)
    tids: frozenset = field(default_factory=frozenset)
    weight: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "cpus", frozenset(int(c) for c in self.cpus))
        object.__setattr__(self, "tids", frozenset(int(t) for t in self.tids))
        if self.node < 0:
            raise InvalidConfig(f"accessor {self.name}: node must be >= 0, got {self.node}")
        if self.weight <= 0:
            raise InvalidConfig(f"accessor {self.name}: weight must be > 0, got {self.weight}")


@dataclass(frozen=True)
class Hierarchy:
    """One accessor's path: ``path`` memory node ids, cheapest first; ``cost``: node ->
    access cost in the source's unit (SLIT distance units for a topology)."""

    accessor: AccessorSpec
    path: tuple
    cost: dict

    def rank(self, nid: int) -> int:
        """Position of ``nid`` on the path (0 = best)."""
        return self.path.index(nid)

    def describe(self) -> str:
        steps = " -> ".join(f"{n} ({self.cost[n]:g})" for n in self.path)
        return f"{self.accessor.name} (node {self.accessor.node}): {steps}"


def _topology_costs(topo):
    """{initiator: {node: cost}} in distance units, HMAT read latency where present."""
    nodes = list(topo.nodes)
    lat = {}
    for m, classes in topo.access.items():
        # access1 (CPU initiators) is what CPUs see; access0 also covers devices
        for cls_id in (1, 0):
            ac = classes.get(cls_id)
            if ac is None or ac.read_latency is None:
                continue
            for i in ac.initiators:
                lat.setdefault((i, m), ac.read_latency)
    ratios = [topo.distance(i, m) / v for (i, m), v in lat.items()
              if v > 0 and m in topo.distances.get(i, {})]
    scale = float(np.median(ratios)) if ratios else None
    out = {}
    for i in nodes:
        row = {}
        for m in nodes:
            if scale is not None and (i, m) in lat:
                row[m] = lat[(i, m)] * scale
            elif m in topo.distances.get(i, {}):
                row[m] = float(topo.distance(i, m))
        out[i] = row
    return out


def cost_table(source, memory_nodes=None) -> dict:
    """``{initiator node: {memory node: cost}}`` from a Topology, a matrix or a dict.

    ``memory_nodes``: restrict the columns (default: every node; a Topology drops nodes it
    knows to have no memory, i.e. without physical ranges when ranges were read).
    """
    if hasattr(source, "distances") and hasattr(source, "nodes"):
        table = _topology_costs(source)
        if memory_nodes is None and any(source.phys_ranges.values()):
            memory_nodes = [n for n in source.nodes if source.phys_ranges.get(n)]
    elif isinstance(source, dict):
        table = {int(i): {int(m): float(c) for m, c in row.items()} for i, row in source.items()}
    else:
        a = np.asarray(source, dtype=float)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise InvalidConfig(f"cost matrix must be square, got shape {a.shape}")
        table = {i: {m: float(a[i, m]) for m in range(a.shape[1])} for i in range(a.shape[0])}
    if memory_nodes is not None:
        keep = set(int(n) for n in memory_nodes)
        table = {i: {m: c for m, c in row.items() if m in keep} for i, row in table.items()}
    for i, row in table.items():
        bad = [m for m, c in row.items() if not c > 0]
        if bad:
            raise InvalidConfig(f"costs from node {i} to nodes {bad} must be > 0")
    return table


def cpu_accessors(source) -> list:
    """One accessor per CPU node: a Topology's nodes with CPUs, or a simulated machine's
    ``has_cpu`` nodes (CPU ids are then the node ids)."""
    if hasattr(source, "cpu_nodes"):
        return [AccessorSpec(f"cpu{n}", n, cpus=source.cpus[n]) for n in source.cpu_nodes()]
    if hasattr(source, "nodes") and source.nodes and hasattr(source.nodes[0], "has_cpu"):
        return [AccessorSpec(f"cpu{x.nid}", x.nid, cpus={x.nid}) for x in source.nodes
                if x.has_cpu]
    raise InvalidConfig("cpu_accessors needs a Topology or a simulated machine; "
                        "declare accessors explicitly for a plain matrix")


def build_hierarchies(source, accessors, memory_nodes=None) -> list:
    """A :class:`Hierarchy` per accessor, in the order given.

    ``source``: Topology, square matrix (rows: initiator nodes) or dict; a simulated
    machine may be passed as its ``latency`` matrix.
    """
    table = cost_table(source, memory_nodes)
    out = []
    names = set()
    for a in accessors:
        if a.name in names:
            raise InvalidConfig(f"accessor name {a.name!r} used twice")
        names.add(a.name)
        row = table.get(a.node)
        if not row:
            raise InvalidConfig(f"accessor {a.name}: no costs from node {a.node} "
                                f"(known initiators: {sorted(table)})")
        path = tuple(sorted(row, key=lambda m: (row[m], m)))
        out.append(Hierarchy(a, path, {m: row[m] for m in path}))
    return out


def node_owners(hierarchies) -> dict:
    """Memory node -> index of the hierarchy that ranks it highest (ties: lower cost, then
    the first accessor).  The owner's path decides where the node's cold pages go."""
    owners = {}
    nodes = {n for h in hierarchies for n in h.path}
    for n in sorted(nodes):
        owners[n] = min(range(len(hierarchies)),
                        key=lambda i: (hierarchies[i].rank(n), hierarchies[i].cost[n], i))
    return owners
