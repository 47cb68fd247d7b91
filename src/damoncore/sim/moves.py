"""Migration accounting of a simulated machine: what a policy moved against what it had to.

Every policy evaluated on the simulator reports the same figures (:class:`MoveLedger`):

- ``moved``: bytes migrated (every move of a page counts, a page moved twice counts twice);
- ``minimum``: the bytes that had to move to go from the initial placement through every
  checkpoint to the final one: the pages whose node differs between two consecutive
  placements, summed over the consecutive pairs.  The checkpoints are the workload's phase
  changes (a policy may rightly move a page away and back when the pattern changes); with
  none it is the distance from the initial to the final placement.  No policy that ends
  (and passes each checkpoint) where this one did can move less;
- per-page move counts (a piecewise-constant count over the key space, so no per-page
  arrays): the most times any page was moved and the bytes moved once, twice, ...; all of
  it also per named range (``{name: (pid, start, end)}``, virtual bytes).

The machine keeps the move counts (:class:`MoveCounts`, fed by every
:meth:`SimMachine.move_keys`); the ledger takes placements at its creation and at each
:meth:`MoveLedger.checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .extents import KEY_END, SWAPPED, U64, key_of, overlap_pairs, u64


class MoveCounts:
    """How many times each key (page) was migrated: breakpoints ``b`` (keys, from 0 to
    ``KEY_END``) and a count per piece ``[b[i], b[i+1])``, coalesced."""

    def __init__(self):
        self.b = u64([0, KEY_END])
        self.c = np.zeros(1, np.int64)

    def add(self, s, e) -> None:
        """Count one move of every key in the disjoint ranges ``[s, e)``."""
        s, e = u64(s), u64(e)
        ok = e > s
        s, e = s[ok], e[ok]
        if len(s) == 0:
            return
        o = np.argsort(s, kind="stable")
        s, e = s[o], e[o]
        pts = np.unique(np.concatenate([self.b, s, e]))
        lo = pts[:-1]
        c = self.c[np.searchsorted(self.b, lo, side="right") - 1]
        k = np.searchsorted(s, lo, side="right") - 1
        kc = np.maximum(k, 0)
        c = c + ((k >= 0) & (lo < e[kc]))
        keep = np.ones(len(c), bool)
        keep[1:] = c[1:] != c[:-1]
        self.b = np.append(lo[keep], KEY_END).astype(U64)
        self.c = c[keep]

    def overlay(self, ks, ke):
        """``(count, bytes)`` of every overlap of the key ranges with the count pieces."""
        _, j, lo, hi = overlap_pairs(ks, ke, self.b[:-1], self.b[1:])
        return self.c[j], (hi - lo).astype(np.int64)

    @property
    def max_count(self) -> int:
        return int(self.c.max(initial=0))


def placement(machine):
    """The machine's current placement: ``(kstart, kend, node)`` of every mapped extent
    (node ``len(machine.nodes)`` for swapped pages)."""
    x = machine.extents
    p = x.pstart
    return x.kstart.copy(), x.kend.copy(), machine.node_of(np.where(p == SWAPPED, SWAPPED, p))


def placement_distance(a, b, ks=None, ke=None) -> int:
    """Bytes mapped in both placements ``a`` and ``b`` (from :func:`placement`) whose node
    differs, optionally only inside the key ranges ``[ks, ke)``."""
    pts = np.unique(np.concatenate([a[0], a[1], b[0], b[1]]))
    if len(pts) < 2:
        return 0
    lo, hi = pts[:-1], pts[1:]

    def node_at(p):
        j = np.searchsorted(p[0], lo, side="right") - 1
        jc = np.maximum(j, 0)
        inside = (j >= 0) & (lo < p[1][jc]) if len(p[0]) else np.zeros(len(lo), bool)
        return np.where(inside, p[2][jc] if len(p[0]) else -1, -1)

    na, nb = node_at(a), node_at(b)
    diff = (na >= 0) & (nb >= 0) & (na != nb)
    lo, hi = lo[diff], hi[diff]
    if ks is None:
        return int((hi - lo).sum())
    _, _, olo, ohi = overlap_pairs(ks, ke, lo, hi)
    return int((ohi - olo).sum())


@dataclass
class RangeMoves:
    """Moves inside one range (or everywhere): bytes moved, the minimum needed, the most
    times one page moved and bytes moved once, twice, ... (``{count: bytes}``)."""

    moved: int
    minimum: int
    max_moves: int
    by_count: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """moved / minimum (1.0 when nothing had to move and nothing did; inf when
        something moved although nothing had to)."""
        if self.minimum == 0:
            return 1.0 if self.moved == 0 else float("inf")
        return self.moved / self.minimum


class MoveLedger:
    """Placements at creation and at every :meth:`checkpoint`, and the machine's move counts
    since creation: :meth:`report` compares bytes moved with the minimum needed."""

    def __init__(self, machine):
        self.machine = machine
        self.counts0 = (machine.acct.moves.b.copy(), machine.acct.moves.c.copy())
        self.placements = [placement(machine)]
        self.times_us = [machine.now_us]

    def checkpoint(self) -> None:
        """Take the current placement as one the policy was right to reach (a phase
        change: call it at the boundary)."""
        self.placements.append(placement(self.machine))
        self.times_us.append(self.machine.now_us)

    def _counts(self, ks, ke):
        cur = self.machine.acct.moves
        c1, sz = cur.overlay(ks, ke)
        b0, c0 = self.counts0
        _, j, lo, hi = overlap_pairs(ks, ke, cur.b[:-1], cur.b[1:])
        before = c0[np.searchsorted(b0, lo, side="right") - 1]
        return c1 - before, sz

    def moves_in(self, ks, ke) -> RangeMoves:
        """The figures for the key ranges ``[ks, ke)`` (sorted, disjoint)."""
        ks, ke = u64(ks), u64(ke)
        cnt, sz = self._counts(ks, ke)
        moved = int((cnt * sz).sum())
        by = {int(k): int(sz[cnt == k].sum()) for k in np.unique(cnt) if k > 0}
        pts = self.placements + [placement(self.machine)]
        minimum = sum(placement_distance(a, b, ks, ke) for a, b in zip(pts, pts[1:]))
        return RangeMoves(moved, minimum, int(cnt.max(initial=0)), by)

    def report(self, ranges=None) -> dict:
        """``{"all": RangeMoves, name: RangeMoves, ...}`` for the whole machine and each of
        ``ranges`` ``{name: (pid, start, end)}`` (virtual bytes)."""
        out = {"all": self.moves_in([0], [KEY_END])}
        for name, (pid, s, e) in (ranges or {}).items():
            k = self.machine.pidx(pid)
            out[name] = self.moves_in(key_of(k, [s]), key_of(k, [e]))
        return out
