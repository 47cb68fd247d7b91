"""Range arithmetic for the simulated memory: everything is a sorted array of extents.

Nothing here allocates per page.  Addresses and sizes are bytes (``uint64``).  Virtual
addresses are folded into one *key space*: ``key = (process_index << KEY_SHIFT) | vaddr``,
so one sorted table maps every process' memory.  Physical addresses are plain.

- :func:`overlap_pairs`: every (query, extent) overlap of a query list with a sorted,
  non-overlapping extent list, clipped; the workhorse of every overlay.
- :class:`ExtentTable`: key ranges -> physical start (or :data:`SWAPPED`), with cut, remap,
  drop and coalesce.
- :class:`FreeList`: one node's free physical ranges, lowest-address-first allocation.
"""

from __future__ import annotations

import numpy as np

from ..arrays import expand_runs

U64 = np.uint64
KEY_SHIFT = 48                       # x86-64 user space is below 2**47
VADDR_MASK = U64((1 << KEY_SHIFT) - 1)
KEY_END = U64((1 << 64) - 1)
SWAPPED = U64((1 << 64) - 1)         # pstart of an extent whose pages are in swap


def u64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=U64)


def key_of(pidx: int, vaddr) -> np.ndarray:
    """Keys of virtual addresses ``vaddr`` (bytes) of process index ``pidx``."""
    return (U64(pidx) << U64(KEY_SHIFT)) | u64(vaddr)


def overlap_pairs(qs, qe, s, e):
    """Overlaps of queries ``[qs, qe)`` with extents ``[s, e)`` (sorted, non-overlapping).

    Returns ``(qi, ej, lo, hi)``: query index, extent index and the clipped overlap
    ``[lo, hi)`` (bytes), ordered by query then address.  Cost O((Q + pairs) log E).
    """
    qs, qe = u64(qs), u64(qe)
    lo_j = np.searchsorted(e, qs, side="right")       # first extent ending after qs
    hi_j = np.searchsorted(s, qe, side="left")        # first extent starting at/after qe
    qi, ej = expand_runs(lo_j, np.maximum(hi_j - lo_j, 0))
    lo = np.maximum(qs[qi], s[ej])
    hi = np.minimum(qe[qi], e[ej])
    ok = lo < hi
    return qi[ok], ej[ok], lo[ok], hi[ok]


def coalesce(s, e):
    """Sort ranges and merge touching or overlapping ones; returns new (s, e)."""
    s, e = u64(s), u64(e)
    if len(s) == 0:
        return s, e
    o = np.argsort(s, kind="stable")
    s, e = s[o], e[o]
    run_end = np.maximum.accumulate(e)
    brk = np.ones(len(s), dtype=bool)
    brk[1:] = s[1:] > run_end[:-1]
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], len(s)) - 1
    return s[starts], run_end[ends]


def split_by_offsets(s, e, bounds):
    """Cut the concatenation of ranges ``[s, e)`` at byte offsets ``bounds`` (ascending).

    Returns ``(s2, e2, group)`` where ``group[k]`` counts how many bounds lie at or before
    piece k's starting offset: ``bounds=[a, b]`` yields groups 0 ([0, a)), 1, 2.
    """
    s, e = u64(s), u64(e)
    ln = e - s
    cum = np.cumsum(ln, dtype=U64)
    start_off = cum - ln
    b = u64(bounds)
    b = b[(b > 0) & (b < (cum[-1] if len(cum) else 0))]
    # pieces start at every range start and at every interior bound
    offs = np.unique(np.concatenate([start_off, b]))
    k = np.searchsorted(cum, offs, side="right")      # range holding each piece start
    ends_off = np.minimum(np.append(offs[1:], cum[-1] if len(cum) else 0), cum[k])
    s2 = s[k] + (offs - start_off[k])
    e2 = s[k] + (ends_off - start_off[k])
    group = np.searchsorted(u64(bounds), offs, side="right")
    keep = e2 > s2
    return s2[keep], e2[keep], group[keep]


def zip_ranges(src_s, src_e, dst_s, dst_e):
    """Pair two range lists of equal total length, in order: the k-th byte of the first
    goes to the k-th byte of the second.  Returns ``(s, e, new_start)`` pieces of the
    source, each landing contiguously at ``new_start``."""
    src_s, src_e, dst_s, dst_e = u64(src_s), u64(src_e), u64(dst_s), u64(dst_e)
    la, lb = src_e - src_s, dst_e - dst_s
    ca, cb = np.cumsum(la, dtype=U64), np.cumsum(lb, dtype=U64)
    if len(ca) == 0:
        return src_s[:0], src_e[:0], src_s[:0]
    if ca[-1] != cb[-1]:
        raise ValueError("zip_ranges: totals differ")
    offs = np.unique(np.concatenate([ca - la, cb - lb]))
    offs = offs[offs < ca[-1]]
    ia = np.searchsorted(ca, offs, side="right")
    ib = np.searchsorted(cb, offs, side="right")
    nxt = np.append(offs[1:], ca[-1])
    s = src_s[ia] + (offs - (ca - la)[ia])
    return s, s + (nxt - offs), dst_s[ib] + (offs - (cb - lb)[ib])


class ExtentTable:
    """Key ranges ``[kstart, kend)`` mapped to physical ``pstart`` (or :data:`SWAPPED`).

    Sorted by ``kstart``, non-overlapping, coalesced, and never across a physical
    ``barrier`` (node boundaries), so each extent's frames belong to one node.
    ``version`` changes on every edit so callers can cache derived data.
    """

    def __init__(self, barriers=()):
        self.barriers = u64(barriers)
        self.kstart = np.zeros(0, U64)
        self.kend = np.zeros(0, U64)
        self.pstart = np.zeros(0, U64)
        self.version = 0
        self._phys = None

    def __len__(self):
        return len(self.kstart)

    def _set(self, ks, ke, ps) -> None:
        o = np.argsort(ks, kind="stable")
        ks, ke, ps = u64(ks)[o], u64(ke)[o], u64(ps)[o]
        if len(ks) > 1:
            ln = ke - ks
            sw = ps == SWAPPED
            join = (ks[1:] == ke[:-1]) & ((sw[1:] & sw[:-1])
                                          | (~sw[1:] & ~sw[:-1] & (ps[1:] == ps[:-1] + ln[:-1])
                                             & ~np.isin(ps[1:], self.barriers)))
            head = np.concatenate([[True], ~join])
            first = np.flatnonzero(head)
            last = np.append(first[1:], len(ks)) - 1
            ks, ke, ps = ks[first], ke[last], ps[first]
        self.kstart, self.kend, self.pstart = ks, ke, ps
        self.version += 1
        self._phys = None

    def insert(self, ks, ke, ps) -> None:
        """Add mappings for key ranges not mapped yet."""
        ks, ke = u64(ks), u64(ke)
        if len(overlap_pairs(ks, ke, self.kstart, self.kend)[0]):
            raise ValueError("inserted key range is already mapped")
        self._set(np.concatenate([self.kstart, ks]), np.concatenate([self.kend, ke]),
                  np.concatenate([self.pstart, u64(ps)]))

    def lookup(self, keys):
        """Physical address of every key (``SWAPPED`` for swap, ``KEY_END`` if unmapped)."""
        keys = u64(keys)
        j = np.searchsorted(self.kstart, keys, side="right") - 1
        jc = np.maximum(j, 0)
        ok = (j >= 0) & (keys < self.kend[jc]) if len(self.kstart) else np.zeros(len(keys), bool)
        out = np.full(len(keys), KEY_END, dtype=U64)
        if len(self.kstart):
            ps = self.pstart[jc]
            present = ok & (ps != SWAPPED)
            out[present] = ps[present] + (keys[present] - self.kstart[jc][present])
            out[ok & ~present] = SWAPPED
        return out

    def phys_view(self):
        """Present extents sorted by physical start: ``(pstart, pend, kstart)``."""
        if self._phys is None:
            present = self.pstart != SWAPPED
            ps, ks = self.pstart[present], self.kstart[present]
            ln = self.kend[present] - ks
            o = np.argsort(ps, kind="stable")
            self._phys = (ps[o], ps[o] + ln[o], ks[o])
        return self._phys

    def reverse(self, paddrs):
        """Key of every physical address (``KEY_END`` for free frames)."""
        ps, pe, ks = self.phys_view()
        paddrs = u64(paddrs)
        j = np.searchsorted(ps, paddrs, side="right") - 1
        jc = np.maximum(j, 0)
        out = np.full(len(paddrs), KEY_END, dtype=U64)
        if len(ps):
            ok = (j >= 0) & (paddrs < pe[jc])
            out[ok] = ks[jc][ok] + (paddrs[ok] - ps[jc][ok])
        return out

    def remap(self, ks, ke, new_ps) -> None:
        """Point mapped key ranges ``[ks, ke)`` (sorted, disjoint) at ``new_ps``."""
        ks, ke, new_ps = u64(ks), u64(ke), u64(new_ps)
        if len(ks) == 0:
            return
        cuts = np.unique(np.concatenate([ks, ke]))
        s, e, p = self._cut(cuts)
        k = np.searchsorted(ks, s, side="right") - 1
        kc = np.maximum(k, 0)
        inside = (k >= 0) & (s < ke[kc])
        moved = np.where(new_ps[kc] == SWAPPED, SWAPPED, new_ps[kc] + (s - ks[kc]))
        if int(((e - s)[inside]).sum()) != int((ke - ks).sum()):
            raise ValueError("remap of key ranges that are not fully mapped")
        p = np.where(inside, moved, p)
        self._set(s, e, p)

    def drop(self, klo: int, khi: int):
        """Unmap keys in ``[klo, khi)`` (a whole process); returns the freed present ranges."""
        s, e, p = self._cut(u64([klo, khi]))
        gone = (s >= U64(klo)) & (e <= U64(khi))
        freed = gone & (p != SWAPPED)
        out = (p[freed], p[freed] + (e - s)[freed])
        self._set(s[~gone], e[~gone], p[~gone])
        return out

    def _cut(self, points):
        """The table split at ``points`` (no merge): ``(kstart, kend, pstart)``."""
        s0, e0, p0 = self.kstart, self.kend, self.pstart
        if len(s0) == 0:
            return s0, e0, p0
        j = np.searchsorted(s0, points, side="right") - 1
        jc = np.maximum(j, 0)
        inner = (j >= 0) & (points > s0[jc]) & (points < e0[jc])
        s = np.sort(np.concatenate([s0, points[inner]]))
        j = np.searchsorted(s0, s, side="right") - 1
        nxt = np.append(s[1:], KEY_END)
        e = np.minimum(nxt, e0[j])
        p = np.where(p0[j] == SWAPPED, SWAPPED, p0[j] + (s - s0[j]))
        return s, e, p


class FreeList:
    """Free physical ranges of one node, sorted; allocation takes the lowest addresses."""

    def __init__(self, start: int, end: int):
        self.s = u64([start])
        self.e = u64([end])

    @property
    def free_bytes(self) -> int:
        return int((self.e - self.s).sum())

    def alloc(self, nbytes: int):
        """Take exactly ``nbytes`` (<= free_bytes) from the lowest ranges: ``(s, e)``."""
        if nbytes <= 0:
            return self.s[:0], self.e[:0]
        ln = self.e - self.s
        cum = np.cumsum(ln, dtype=U64)
        if nbytes > (int(cum[-1]) if len(cum) else 0):
            raise ValueError("allocation larger than the free space")
        k = int(np.searchsorted(cum, U64(nbytes), side="left"))
        s, e = self.s[:k + 1].copy(), self.e[:k + 1].copy()
        e[k] = s[k] + (U64(nbytes) - (cum[k] - ln[k]))
        if e[k] == self.e[k]:
            self.s, self.e = self.s[k + 1:], self.e[k + 1:]
        else:
            self.s, self.e = np.concatenate([[e[k]], self.s[k + 1:]]).astype(U64), self.e[k:]
        return s, e

    def release(self, s, e) -> None:
        self.s, self.e = coalesce(np.concatenate([self.s, u64(s)]),
                                  np.concatenate([self.e, u64(e)]))
