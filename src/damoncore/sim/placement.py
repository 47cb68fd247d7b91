"""Which node holds each byte of some address spaces: the simulated placement a scheme
replay acts on (:mod:`damoncore.replay`), with nothing else simulated.

Each address space (a process's virtual memory, or physical memory: key ``None``) is a
sorted array of break points ``pts`` and one node per piece ``[pts[k], pts[k + 1])``;
:data:`UNPLACED` marks bytes not met yet, :data:`SWAP` paged-out ones.  Bytes met for the
first time (:meth:`Placement.cover`) go where the layout says (``(start, end, nid)``
ranges), else to the default node.  Moves honour node capacities where given: the bytes
that do not fit stay where they are and are counted as failed.  Everything is whole
arrays; nothing is per page.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidConfig
from .extents import coalesce, overlap_pairs, u64
from .machine import SIM_PAGE_SIZE

U64 = np.uint64
ADDR_END = U64((1 << 64) - 1)
SWAP = -1
UNPLACED = -2


class _Space:
    """One address space: break points and the node of each piece."""

    def __init__(self):
        self.pts = np.array([0, ADDR_END], U64)
        self.node = np.array([UNPLACED], np.int64)

    def pieces(self, starts, ends):
        """(query index, start, end, node) of every piece inside the query ranges."""
        qi, j, lo, hi = overlap_pairs(starts, ends, self.pts[:-1], self.pts[1:])
        return qi, lo, hi, self.node[j]

    def assign(self, starts, ends, nodes) -> None:
        """Set the node of ranges ``[starts, ends)`` (sorted, disjoint) to ``nodes``."""
        starts, ends = u64(starts), u64(ends)
        if len(starts) == 0:
            return
        pts = np.union1d(self.pts, np.concatenate([starts, ends]))
        left = pts[:-1]
        k = np.searchsorted(self.pts, left, side="right") - 1
        val = self.node[np.clip(k, 0, len(self.node) - 1)]
        q = np.searchsorted(starts, left, side="right") - 1
        inq = q >= 0
        inq[inq] = left[inq] < ends[q[inq]]
        val = np.where(inq, np.asarray(nodes, np.int64)[np.clip(q, 0, None)], val)
        keep = np.ones(len(val), bool)
        keep[1:] = val[1:] != val[:-1]
        self.pts = np.append(pts[:-1][keep], ADDR_END)
        self.node = val[keep]

    def bytes_per_node(self) -> dict:
        sz = self.pts[1:] - self.pts[:-1]
        return {int(n): int(sz[self.node == n].sum()) for n in np.unique(self.node)
                if n != UNPLACED}


class Placement:
    """Node placement of the bytes a replay meets.

    ``default_node``: where bytes go that no ``layout`` range ``(start, end, nid)`` covers.
    ``capacities``: {nid: bytes}; a move to a node never puts more than its capacity there
    (nodes without a capacity take anything).  ``SWAP`` is the pseudo-node of paged-out
    bytes.
    """

    def __init__(self, default_node: int = 0, layout=(), capacities=None):
        if default_node < 0:
            raise InvalidConfig(f"placement: node {default_node} is not a node id")
        self.default_node = int(default_node)
        lay = sorted((int(a), int(b), int(n)) for a, b, n in layout)
        for (a, b, n), nxt in zip(lay, lay[1:] + [None]):
            if not a < b:
                raise InvalidConfig(f"placement: range {a:#x}-{b:#x} is empty")
            if n < 0:
                raise InvalidConfig(f"placement: node {n} is not a node id")
            if nxt is not None and nxt[0] < b:
                raise InvalidConfig(f"placement: ranges {a:#x}-{b:#x} and "
                                    f"{nxt[0]:#x}-{nxt[1]:#x} overlap")
        self.layout = lay
        self.capacities = {int(k): int(v) for k, v in (capacities or {}).items()}
        self._spaces = {}

    @property
    def nodes(self) -> list:
        """Every node the layout, the default or a capacity names."""
        return sorted({self.default_node} | {n for _, _, n in self.layout}
                      | set(self.capacities))

    def _space(self, key) -> _Space:
        sp = self._spaces.get(key)
        if sp is None:
            sp = self._spaces[key] = _Space()
        return sp

    def cover(self, key, starts, ends) -> None:
        """Place the bytes of ``[starts, ends)`` not placed yet, as the layout says."""
        sp = self._space(key)
        qi, lo, hi, node = sp.pieces(*coalesce(starts, ends))
        new = node == UNPLACED
        if not new.any():
            return
        lo, hi = lo[new], hi[new]
        nodes = np.full(len(lo), self.default_node, np.int64)
        if self.layout:
            ls = np.array([a for a, _, _ in self.layout], U64)
            le = np.array([b for _, b, _ in self.layout], U64)
            ln = np.array([n for _, _, n in self.layout], np.int64)
            # cut the new pieces at the layout's edges; each cut piece takes its node
            cut = np.unique(np.concatenate([ls, le]))
            pts = np.union1d(np.concatenate([lo, hi]), cut)
            pl, ph = pts[:-1], pts[1:]
            k = np.searchsorted(lo, pl, side="right") - 1
            inside = k >= 0
            inside[inside] = pl[inside] < hi[k[inside]]
            pl, ph = pl[inside], ph[inside]
            j = np.searchsorted(ls, pl, side="right") - 1
            inl = j >= 0
            inl[inl] = pl[inl] < le[j[inl]]
            lo, hi = pl, ph
            nodes = np.where(inl, ln[np.clip(j, 0, None)], self.default_node)
        sp.assign(lo, hi, nodes)

    def pieces(self, key, starts, ends):
        """``(query index, start, end, node)`` of the placed bytes in the ranges."""
        return self._space(key).pieces(u64(starts), u64(ends))

    def node_bytes(self, nid: int) -> int:
        """Bytes on node ``nid`` (``SWAP``: paged out) over every address space."""
        return sum(sp.bytes_per_node().get(nid, 0) for sp in self._spaces.values())

    def free_bytes(self, nid: int):
        """Room left on ``nid`` (None: no capacity given)."""
        cap = self.capacities.get(nid)
        return None if cap is None else max(0, cap - self.node_bytes(nid))

    def move(self, key, starts, ends, dst: int, from_nodes=None):
        """Move the bytes of ``[starts, ends)`` (sorted, disjoint) to ``dst``, lowest
        addresses first, as far as ``dst`` has room; only bytes on ``from_nodes`` (default:
        any real node, not swap) move.  Returns ``({(src, dst): bytes}, bytes that did not
        fit)``; moves are in whole pages."""
        sp = self._space(key)
        _, lo, hi, node = sp.pieces(u64(starts), u64(ends))
        ok = (node != dst) & (node != UNPLACED)
        ok &= np.isin(node, list(from_nodes)) if from_nodes is not None else node >= 0
        lo, hi, node = lo[ok], hi[ok], node[ok]
        sz = hi - lo
        room = self.free_bytes(dst) if dst != SWAP else None
        failed = 0
        if room is not None and int(sz.sum()) > room:
            cum = np.cumsum(sz, dtype=U64)
            take = np.minimum(sz, np.maximum(U64(room) - np.minimum(cum - sz, U64(room)),
                                             U64(0)))
            take = take // U64(SIM_PAGE_SIZE) * U64(SIM_PAGE_SIZE)
            failed = int(sz.sum() - take.sum())
            hi = lo + take
            keep = take > 0
            lo, hi, node = lo[keep], hi[keep], node[keep]
        moved = {}
        for n in np.unique(node):
            moved[(int(n), int(dst))] = int((hi - lo)[node == n].sum())
        sp.assign(lo, hi, np.full(len(lo), dst, np.int64))
        return moved, failed
