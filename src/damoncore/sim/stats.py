"""Expected-cost accounting of the simulated machine, for evaluating policies.

For every accessor, accesses per second at the current placement are the overlay of the
rate map's pieces with the extent table (range arithmetic, no pages): each overlap of
``pages`` pages at rate ``r`` on node ``n`` serves ``pages * r`` accesses/s at cost
``latency[accessor node][n]`` each.  The result is cached until the phase or the
placement changes, so advancing the clock is O(1) between migrations.
"""

from __future__ import annotations

import numpy as np

from .extents import SWAPPED, overlap_pairs
from .moves import MoveCounts


class Accounting:
    """Cumulative access counts and cost of one :class:`SimMachine`."""

    def __init__(self, machine):
        self._m = machine
        n = len(machine.nodes)
        self.node_acc = np.zeros((0, n + 1))     # [accessor, node (last: swap)] accesses
        self.cost = np.zeros(0)
        self.migrated = {}
        self.moves = MoveCounts()         # per-key move counts (sim/moves.py)
        self.nr_failed = 0
        self.swapped_out = 0
        self.swapped_in = 0
        self._cache_key = None
        self._cache = None

    def resize(self, nr_accessors: int) -> None:
        k = nr_accessors - len(self.cost)
        if k > 0:
            self.node_acc = np.vstack([self.node_acc, np.zeros((k, self.node_acc.shape[1]))])
            self.cost = np.append(self.cost, np.zeros(k))
        self._cache_key = None

    def rates(self):
        """(accesses/s per [accessor, node], cost/s per accessor) at the current state."""
        m = self._m
        rm = m.ratemap()
        key = (id(rm), len(m._workloads), m.extents.version, len(self.cost))
        if key == self._cache_key:
            return self._cache
        x = m.extents
        qi, ej, lo, hi = overlap_pairs(rm.starts, rm.ends, x.kstart, x.kend)
        pages = ((hi - lo) // np.uint64(m.page_size)).astype(float)
        p = x.pstart[ej]
        node = m.node_of(np.where(p == SWAPPED, SWAPPED, p))
        n = len(m.nodes)
        per = np.zeros((n + 1, rm.rates.shape[1]))
        np.add.at(per, node, pages[:, None] * rm.rates[qi])
        acc_nodes = np.array([a.node for a in m.accessors], dtype=np.int64)
        lat = np.hstack([m.latency[acc_nodes], np.full((len(acc_nodes), 1), m.swap_cost)])
        na = per.T[:len(acc_nodes)]
        self._cache = (na, (na * lat).sum(axis=1))
        self._cache_key = key
        return self._cache

    def active_share(self, window_us: int) -> float:
        """Expected share of present pages accessed within the last ``window_us``."""
        m = self._m
        rm = m.ratemap()
        x = m.extents
        present = x.pstart != SWAPPED
        qi, _, lo, hi = overlap_pairs(rm.starts, rm.ends, x.kstart[present], x.kend[present])
        pages = ((hi - lo) // np.uint64(m.page_size)).astype(float)
        total = float(((x.kend - x.kstart)[present] // np.uint64(m.page_size)).sum())
        act = float((pages * -np.expm1(-rm.total[qi] * window_us / 1e6)).sum())
        return act / total if total else 0.0

    def account(self, dt_us: int, commit: bool = True) -> dict:
        na, cost = self.rates()
        dt = dt_us / 1e6
        if commit:
            self.commit(dt_us)
        return {a.name: (float(na[i].sum() * dt), float(cost[i] * dt))
                for i, a in enumerate(self._m.accessors)}

    def commit(self, dt_us: int) -> None:
        """Add ``dt_us`` of the current access rates to the cumulative counters."""
        na, cost = self.rates()
        if len(cost):
            self.node_acc += na * (dt_us / 1e6)
            self.cost += cost * (dt_us / 1e6)

    def record_move(self, res) -> None:
        for k, v in res.moved.items():
            self.migrated[k] = self.migrated.get(k, 0) + v
        if res.ranges:
            self.moves.add(*res.ranges)
        self.nr_failed += res.nr_failed

    def stats(self) -> dict:
        m = self._m
        out = {}
        for i, a in enumerate(m.accessors):
            tot = float(self.node_acc[i].sum())
            share = self.node_acc[i] / tot if tot else np.zeros(len(self.node_acc[i]))
            out[a.name] = {
                "accesses": tot,
                "cost": float(self.cost[i]),
                # share served by the accessor's own node (its DRAM, or a GPU's own memory)
                "local_dram_share": float(share[a.node]),
                "node_share": {nid: float(share[nid]) for nid in range(len(m.nodes))},
            }
        return {"time_us": m.now_us, "accessors": out, "migrated": dict(self.migrated),
                "nr_failed": self.nr_failed, "swapped_out": self.swapped_out,
                "swapped_in": self.swapped_in,
                "node_used": {x.nid: m.node_used(x.nid) for x in m.nodes}}
