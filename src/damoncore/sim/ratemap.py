"""One phase's access streams compiled into a piecewise-constant rate over the key space.

:class:`RateMap` holds breakpoints ``b`` (keys, from 0 to ``KEY_END``) and, for every piece
``[b[i], b[i+1])``, the mean rate of each accessor (accesses per second per page).  All
questions the machine asks (is this page touched, how many accesses went where, which
addresses to report) are searchsorted look-ups or overlays on these arrays.
"""

from __future__ import annotations

import numpy as np

from .extents import KEY_END, KEY_SHIFT, U64, key_of, u64

RATE_EPS = 1e-12     # rates below this (float residue of +r - r) are zero


class RateMap:
    """Rates of one epoch.  ``rates``: (pieces, accessors) accesses/s/page (all streams,
    scans at their mean rate); ``poisson``: per piece total of the Poisson streams;
    ``scans``: [(kstart, kend, period_us, accessor_idx)]; ``t0_us``: epoch start, the
    origin of the scan pointers."""

    def __init__(self, b, rates, poisson, scans, t0_us: int):
        self.b = b
        self.rates = rates
        self.poisson = poisson
        self.scans = scans
        self.t0_us = t0_us
        self.total = rates.sum(axis=1)

    @classmethod
    def build(cls, streams, pidx_of, acc_idx, nr_accessors: int, page_size: int, t0_us: int):
        """Compile ``streams``; ``pidx_of``: pid -> process index; ``acc_idx``: accessor ->
        column.  Streams of unknown pids are ignored."""
        ks, ke, rs, cols, scan = [], [], [], [], []
        scans = []
        for s in streams:
            if s.pid not in pidx_of:
                continue
            a, b, r = s.pieces(page_size)
            pk = pidx_of[s.pid]
            ks.append(key_of(pk, a))
            ke.append(key_of(pk, b))
            rs.append(np.asarray(r, float))
            cols.append(np.full(len(a), acc_idx[s.accessor]))
            scan.append(np.full(len(a), s.dist == "scan"))
            if s.dist == "scan":
                scans.append((int(key_of(pk, [s.start])[0]), int(key_of(pk, [s.end])[0]),
                              int(s.period_us), acc_idx[s.accessor]))
        if not ks:
            return cls(u64([0, KEY_END]), np.zeros((1, nr_accessors)), np.zeros(1), [], t0_us)
        ks, ke, rs = np.concatenate(ks), np.concatenate(ke), np.concatenate(rs)
        cols, scan = np.concatenate(cols), np.concatenate(scan)
        b = np.unique(np.concatenate([u64([0, KEY_END]), ks, ke]))
        i0, i1 = np.searchsorted(b, ks), np.searchsorted(b, ke)
        d = np.zeros((len(b), nr_accessors))
        np.add.at(d, (i0, cols), rs)
        np.add.at(d, (i1, cols), -rs)
        rates = np.cumsum(d, axis=0)[:-1]
        rates[np.abs(rates) < RATE_EPS * max(1.0, rs.max())] = 0.0
        p = np.zeros(len(b))
        np.add.at(p, i0[~scan], rs[~scan])
        np.add.at(p, i1[~scan], -rs[~scan])
        poisson = np.cumsum(p)[:-1]
        poisson[np.abs(poisson) < RATE_EPS * max(1.0, rs.max())] = 0.0
        return cls(b, np.maximum(rates, 0.0), np.maximum(poisson, 0.0), scans, t0_us)

    @property
    def starts(self):
        return self.b[:-1]

    @property
    def ends(self):
        return self.b[1:]

    def piece(self, keys) -> np.ndarray:
        """Index of the piece holding each key (``KEY_END`` falls in the last piece)."""
        return np.minimum(np.searchsorted(self.b, u64(keys), side="right") - 1, len(self.b) - 2)

    def scan_hits(self, keys, t0_us: int, t1_us: int, page_size: int) -> np.ndarray:
        """Keys whose page a scan pointer passed during ``[t0_us, t1_us)``."""
        keys = u64(keys)
        hit = np.zeros(len(keys), bool)
        for ks, ke, period, _ in self.scans:
            npages = (ke - ks) // page_size
            inside = (keys >= U64(ks)) & (keys < U64(ke))
            span = (t1_us - t0_us) / period * npages
            if span >= npages:
                hit |= inside
                continue
            p0 = ((t0_us - self.t0_us) % period) / period * npages
            off = (keys[inside] - U64(ks)) // U64(page_size)
            d = np.mod(off.astype(float) + 0.5 - p0, npages)
            hit[np.flatnonzero(inside)[d < span]] = True
        return hit

    def sample(self, rng, alive, t0_us: int, t1_us: int, max_per_accessor: int,
               page_size: int, period: float = 1.0):
        """Access reports for ``[t0_us, t1_us)``: ``(keys, accessor_idx, time_us)``.

        Per accessor, Poisson(expected accesses / ``period``) reports (one report per
        ``period`` accesses on average, like a perf sample period) capped at
        ``max_per_accessor``, spread over pieces in proportion to their expected accesses
        (so report counts per range follow the rates), uniform within a piece.
        """
        npages = ((self.b[1:] - self.b[:-1]) // U64(page_size)).astype(float)
        pidx = (self.b[:-1] >> U64(KEY_SHIFT)).astype(np.int64)
        live = np.zeros(len(pidx), bool)
        ok = pidx < len(alive)
        live[ok] = alive[pidx[ok]]
        dt = (t1_us - t0_us) / 1e6
        out_k, out_a, out_t = [], [], []
        for a in range(self.rates.shape[1]):
            exp = self.rates[:, a] * npages * dt * live
            tot = float(exp.sum())
            if tot <= 0:
                continue
            k = min(int(max_per_accessor), int(rng.poisson(tot / period)))
            if k == 0:
                continue
            idx = rng.choice(len(exp), size=k, p=exp / tot)
            page = np.floor(rng.random(k) * npages[idx]).astype(U64)
            out_k.append(self.b[idx] + page * U64(page_size))
            out_a.append(np.full(k, a))
            out_t.append(t0_us + np.floor(rng.random(k) * (t1_us - t0_us)).astype(np.int64))
        if not out_k:
            return np.zeros(0, U64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_k), np.concatenate(out_a), np.concatenate(out_t)
