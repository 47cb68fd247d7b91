"""The simulated machine: NUMA nodes, physical frames, processes, workloads, one clock.

Physical address space: node ``n`` owns ``[base_n, base_n + capacity_n)``, nodes laid out
consecutively from 0.  Process memory is mapped to frames through one
:class:`~damoncore.sim.extents.ExtentTable` (virtual keys -> physical start) and every node
keeps a :class:`~damoncore.sim.extents.FreeList`; untouched space costs nothing, so a 1 TiB
machine with a few GiB in use holds a few arrays of a few extents.

Allocation is eager first-touch when a workload is added: each mapping is filled on its
preferred node (explicit ``placement`` first), falling back to the other nodes in order of
latency from the preferred node (:meth:`SimMachine.fallback_order`).  Pages swapped out by
``pageout`` stay in swap (their accesses still happen and are charged ``swap_cost``) until
``willneed`` brings them back.

Time is virtual: ``machine.clock.sleep_us`` advances it, applying phase changes and process
exits on the way and integrating the expected access cost (:meth:`SimMachine.account`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..errors import DamonError, InvalidConfig
from .extents import (KEY_END, KEY_SHIFT, SWAPPED, U64, VADDR_MASK, ExtentTable, FreeList,
                      key_of, overlap_pairs, split_by_offsets, u64, zip_ranges)
from .ratemap import RateMap
from .stats import Accounting

NODE_KINDS = ("dram", "cxl", "gpu")
#: the simulated machines' base page, a model parameter (x86-64's), not the host's: a
#: simulation gives the same results on any host
SIM_PAGE_SIZE = 4096


class SimOutOfMemory(DamonError, MemoryError):
    """A workload does not fit in the simulated machine's free memory."""


@dataclass(frozen=True)
class SimNode:
    """A NUMA node: ``capacity_bytes`` of ``kind`` memory; ``has_cpu``: CPUs live here."""

    nid: int
    capacity_bytes: int
    has_cpu: bool
    kind: str = "dram"

    def __post_init__(self):
        if self.kind not in NODE_KINDS:
            raise InvalidConfig(f"unknown node kind {self.kind!r} (known: {NODE_KINDS})")


class SimClock:
    """The machine's virtual clock (microseconds); sleeping advances the simulation."""

    def __init__(self, machine: "SimMachine"):
        self._m = machine

    def now_us(self) -> int:
        return self._m.now_us

    def sleep_us(self, us: int) -> None:
        if us > 0:
            self._m.advance_to(self._m.now_us + int(us))


@dataclass
class _Proc:
    pidx: int
    proc: object
    exit_abs: int | None
    alive: bool = True


@dataclass
class MoveResult:
    """What a migration did: ``moved`` {(src, dst): bytes}; ``nr_failed`` pages that did
    not fit on the destination (the kernel's -ENOMEM)."""

    moved: dict
    nr_failed: int = 0
    #: the key ranges that moved, ``(kstart, kend)`` (sorted, disjoint): for the move counts
    #: of :mod:`damoncore.sim.moves`
    ranges: tuple = ()

    @property
    def sz_moved(self) -> int:
        return sum(self.moved.values())


class SimMachine:
    """N nodes, a latency matrix and a seeded RNG.

    ``latency[accessor_node][mem_node]``: relative cost of one access.  ``page_size``:
    bytes.  ``swap_cost``: cost of one access to a swapped-out page (default 10x the worst
    latency).  ``seed`` makes every draw reproducible.
    """

    def __init__(self, nodes, latency, page_size: int = SIM_PAGE_SIZE, seed: int = 0,
                 swap_cost: float | None = None):
        self.nodes = list(nodes)
        n = len(self.nodes)
        if [x.nid for x in self.nodes] != list(range(n)) or n == 0:
            raise InvalidConfig("nodes must be numbered 0..N-1 in order")
        for x in self.nodes:
            if x.capacity_bytes <= 0 or x.capacity_bytes % page_size:
                raise InvalidConfig(f"node {x.nid} capacity must be a positive multiple of "
                                    f"the page size {page_size}")
        self.latency = np.asarray(latency, dtype=float)
        if self.latency.shape != (n, n) or np.any(self.latency <= 0):
            raise InvalidConfig(f"latency must be a positive {n}x{n} matrix")
        self.page_size = int(page_size)
        self.swap_cost = float(swap_cost if swap_cost is not None else 10 * self.latency.max())
        self.rng = np.random.default_rng(seed)
        caps = np.array([x.capacity_bytes for x in self.nodes], dtype=U64)
        self.bases = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(U64)
        self.free = [FreeList(int(b), int(b + c)) for b, c in zip(self.bases, caps)]
        self.extents = ExtentTable(self.bases)
        self.clock = SimClock(self)
        self.now_us = 0
        self._procs = {}
        self._alive = np.zeros(0, bool)
        self._accessors = []
        self._acc_idx = {}
        self._workloads = []
        self._epoch_t = []
        self._maps = {}
        self.acct = Accounting(self)

    # --- topology ------------------------------------------------------------------------
    def node_range(self, nid: int):
        """(start, end) physical bytes of node ``nid``."""
        return int(self.bases[nid]), int(self.bases[nid]) + self.nodes[nid].capacity_bytes

    @property
    def total_bytes(self) -> int:
        return sum(x.capacity_bytes for x in self.nodes)

    def node_of(self, paddrs) -> np.ndarray:
        """Node of physical addresses; ``len(nodes)`` for :data:`SWAPPED`."""
        p = u64(paddrs)
        out = np.searchsorted(self.bases, p, side="right") - 1
        out[p == SWAPPED] = len(self.nodes)
        return out

    def node_free(self, nid: int) -> int:
        return self.free[nid].free_bytes

    def node_used(self, nid: int) -> int:
        return self.nodes[nid].capacity_bytes - self.free[nid].free_bytes

    def fallback_order(self, pref: int) -> list:
        """Nodes to allocate on for preferred node ``pref``: ``pref`` itself, then the others
        by latency from it (ties in node order), as the kernel's zonelist orders nodes by
        distance.  ``pref`` always comes first: the row of a CPU-less node copies its
        socket's CPU row, so ranking by that row alone would put the CPU node first."""
        if not 0 <= pref < len(self.nodes):
            raise InvalidConfig(f"preferred node {pref}: the simulated machine has nodes "
                                f"0-{len(self.nodes) - 1}")
        rest = [int(n) for n in np.argsort(self.latency[pref], kind="stable") if n != pref]
        return [pref] + rest

    @property
    def accessors(self):
        return list(self._accessors)

    # --- processes and workloads ---------------------------------------------------------
    def add_workload(self, workload) -> None:
        """Spawn the workload's processes (allocating their memory) and start its phases
        now (its times are relative to the current clock)."""
        for p in workload.processes:
            if p.pid not in self._procs:
                self._spawn(p)
        for _, streams in workload.phases:
            for s in streams:
                if s.accessor not in self._acc_idx:
                    if not 0 <= s.accessor.node < len(self.nodes):
                        raise InvalidConfig(f"accessor {s.accessor.name} on unknown node")
                    self._acc_idx[s.accessor] = len(self._accessors)
                    self._accessors.append(s.accessor)
        self.acct.resize(len(self._accessors))
        self._workloads.append((self.now_us, workload))
        self._epoch_t = sorted({t0 + t for t0, w in self._workloads for t, _ in w.phases})
        self._maps = {}

    def _spawn(self, proc) -> None:
        pidx = len(self._procs)
        self._procs[proc.pid] = _Proc(pidx, proc, None if proc.exit_us is None
                                      else self.now_us + proc.exit_us)
        self._alive = np.append(self._alive, True)
        for m in proc.mappings:
            if (m.start | m.end) % self.page_size or m.end <= m.start or m.end > int(VADDR_MASK):
                raise InvalidConfig(f"mapping [{m.start:#x}, {m.end:#x}) of pid {proc.pid} "
                                    f"must be page aligned, non-empty, below 2**48")
            ks, ke = key_of(pidx, [m.start]), key_of(pidx, [m.end])
            chunks = []
            left = m.end - m.start
            for nid, nbytes in m.placement:
                take = min(int(nbytes), left, self.free[nid].free_bytes)
                chunks.append(self.free[nid].alloc(take))
                left -= take
            pref = proc.node if m.node is None else m.node
            for nid in self.fallback_order(pref):
                take = min(left, self.free[nid].free_bytes)
                chunks.append(self.free[nid].alloc(take))
                left -= take
            if left:
                raise SimOutOfMemory(f"pid {proc.pid}: {left} bytes of [{m.start:#x}, "
                                     f"{m.end:#x}) do not fit in the machine")
            ps = np.concatenate([c[0] for c in chunks])
            pe = np.concatenate([c[1] for c in chunks])
            zs, ze, zp = zip_ranges(ks, ke, ps, pe)
            self.extents.insert(zs, ze, zp)

    def pidx(self, pid) -> int:
        if pid not in self._procs:
            raise InvalidConfig(f"no simulated process with pid {pid}")
        return self._procs[pid].pidx

    def alive(self, pid) -> bool:
        p = self._procs.get(pid)
        return bool(p and p.alive)

    def mappings(self, pid):
        """[(start, end)] virtual ranges of ``pid``."""
        return [(m.start, m.end) for m in self._procs[pid].proc.mappings]

    def process(self, pid):
        """The :class:`~damoncore.sim.workloads.Process` behind ``pid``."""
        return self._procs[pid].proc

    def pids_by_pidx(self) -> np.ndarray:
        """pid of every process index (int64)."""
        out = np.zeros(len(self._procs), np.int64)
        for pid, p in self._procs.items():
            out[p.pidx] = pid
        return out

    def memcg_of_pidx(self):
        """Per process index, its memcg path."""
        out = [None] * len(self._procs)
        for p in self._procs.values():
            out[p.pidx] = p.proc.memcg
        return out

    def ratemap(self, t_us: int | None = None) -> RateMap:
        """The compiled access rates in force at ``t_us`` (default: now)."""
        t = self.now_us if t_us is None else t_us
        e = bisect.bisect_right(self._epoch_t, t) - 1
        if e not in self._maps:
            t0 = self._epoch_t[e] if e >= 0 else 0
            streams = [] if e < 0 else [s for w0, w in self._workloads if t0 >= w0
                                        for s in w.streams_at(t0 - w0)]
            pidx_of = {pid: p.pidx for pid, p in self._procs.items()}
            self._maps[e] = RateMap.build(streams, pidx_of, self._acc_idx,
                                          len(self._accessors), self.page_size, t0)
        return self._maps[e]

    def _epochs(self, t0: int, t1: int):
        """[(rate map, lo, hi)] covering ``[t0, t1)`` split at phase changes."""
        cuts = [t for t in self._epoch_t if t0 < t < t1]
        bounds = [t0] + cuts + [t1]
        return [(self.ratemap(a), a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    # --- time ----------------------------------------------------------------------------
    def advance_to(self, t_us: int) -> None:
        """Run the simulation to ``t_us``: account costs, apply exits on the way."""
        while self.now_us < t_us:
            exits = [p.exit_abs for p in self._procs.values()
                     if p.alive and p.exit_abs is not None and p.exit_abs > self.now_us]
            nxt = min([t_us] + exits + [t for t in self._epoch_t if t > self.now_us])
            self.acct.commit(nxt - self.now_us)
            self.now_us = nxt
            for p in self._procs.values():
                if p.alive and p.exit_abs is not None and p.exit_abs <= self.now_us:
                    self._exit(p)

    def _exit(self, p: _Proc) -> None:
        s, e = self.extents.drop(int(key_of(p.pidx, [0])[0]), int(key_of(p.pidx + 1, [0])[0]))
        self._release(s, e)
        p.alive = False
        self._alive[p.pidx] = False

    def account(self, dt_us: int, commit: bool = True):
        """Expected accesses and cost over ``dt_us`` at the current placement and rates:
        ``{accessor name: (accesses, cost)}``; ``commit`` adds them to :meth:`stats` (the
        clock does this for every advance)."""
        return self.acct.account(dt_us, commit)

    def stats(self) -> dict:
        """Cumulative {accessors: {name: {accesses, cost, local_dram_share, node_share}},
        migrated: {(src, dst): bytes}, swapped_out/swapped_in: bytes, nr_failed: pages}."""
        return self.acct.stats()

    # --- accessed bits and reports -------------------------------------------------------
    def touched(self, keys, t0_us: int, t1_us: int) -> np.ndarray:
        """Whether each page (by key; ``KEY_END`` = none) was accessed in ``[t0, t1)``.

        P = 1 - exp(-sum of rate x time) for the Poisson streams (phase aware), OR the
        deterministic sweep of scan streams; one seeded uniform draw per key.
        """
        keys = u64(keys)
        lam = np.zeros(len(keys))
        scan = np.zeros(len(keys), bool)
        for rm, a, b in self._epochs(t0_us, t1_us):
            lam += rm.poisson[rm.piece(keys)] * ((b - a) / 1e6)
            if rm.scans:
                scan |= rm.scan_hits(keys, a, b, self.page_size)
        pidx = (keys >> U64(KEY_SHIFT)).astype(np.int64)
        live = (keys != KEY_END) & (pidx < len(self._alive))
        live[live] = self._alive[pidx[live]]
        return ((self.rng.random(len(keys)) < -np.expm1(-lam)) | scan) & live

    def sample_accesses(self, t0_us: int, t1_us: int, max_per_accessor: int,
                        period: float = 1.0):
        """A sample of the accesses in ``[t0, t1)``: ``(keys, accessor_idx, time_us)``; one
        report per ``period`` accesses on average, at most ``max_per_accessor`` each."""
        parts = [rm.sample(self.rng, self._alive, a, b, max_per_accessor, self.page_size,
                           period)
                 for rm, a, b in self._epochs(t0_us, t1_us)]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    # --- placement -----------------------------------------------------------------------
    def segments(self, ks, ke):
        """Mapped pieces of key ranges ``[ks, ke)`` (sorted, disjoint):
        ``(kstart, kend, pstart, node)``; swapped pieces have node ``len(nodes)``."""
        x = self.extents
        _, j, lo, hi = overlap_pairs(ks, ke, x.kstart, x.kend)
        p = x.pstart[j]
        ps = np.where(p == SWAPPED, SWAPPED, p + (lo - x.kstart[j]))
        return lo, hi, ps, self.node_of(ps)

    def node_bytes(self, pid, start: int, end: int) -> np.ndarray:
        """Bytes of ``pid``'s virtual ``[start, end)`` on each node (int64, one more entry
        at the end: swapped out)."""
        k = self.pidx(pid)
        s, e, _, node = self.segments(key_of(k, [start]), key_of(k, [end]))
        return np.bincount(node, weights=(e - s).astype(np.float64),
                           minlength=len(self.nodes) + 1).astype(np.int64)

    def move_keys(self, ks, ke, dst: int) -> MoveResult:
        """Migrate the present pages of key ranges ``[ks, ke)`` to node ``dst``; pages
        already there are left alone, pages that do not fit fail (lowest addresses first)."""
        if not 0 <= dst < len(self.nodes):
            raise InvalidConfig(f"no node {dst} in the simulated machine")
        s, e, _, node = self.segments(ks, ke)
        keep = (node != dst) & (node < len(self.nodes))
        s, e = s[keep], e[keep]
        total = int((e - s).sum())
        take = min(total, self.free[dst].free_bytes)
        if take < total:
            s, e, g = split_by_offsets(s, e, [take])
            s, e = s[g == 0], e[g == 0]
        ps, pe = self.free[dst].alloc(take)
        zs, ze, zp = zip_ranges(s, e, ps, pe)
        old = self.extents.lookup(zs)
        src = self.node_of(old)
        self._release(old, old + (ze - zs))
        self.extents.remap(zs, ze, zp)
        moved = np.bincount(src, weights=(ze - zs).astype(float), minlength=len(self.nodes))
        res = MoveResult({(int(n), dst): int(moved[n]) for n in np.flatnonzero(moved)},
                         (total - take) // self.page_size, (zs, ze))
        self.acct.record_move(res)
        return res

    def migrate(self, pid, start: int, end: int, dst: int) -> MoveResult:
        """Migrate ``pid``'s pages in virtual ``[start, end)`` to node ``dst``."""
        k = self.pidx(pid)
        return self.move_keys(key_of(k, [start]), key_of(k, [end]), dst)

    def migrate_phys(self, start: int, end: int, dst: int) -> MoveResult:
        """Migrate the pages behind physical ``[start, end)`` to node ``dst``."""
        ps, pe, ks = self.extents.phys_view()
        _, j, lo, hi = overlap_pairs([start], [end], ps, pe)
        k0 = ks[j] + (lo - ps[j])
        o = np.argsort(k0)
        return self.move_keys(k0[o], (k0 + (hi - lo))[o], dst)

    def swap_out(self, ks, ke) -> int:
        """Free the frames of present pages in ``[ks, ke)``; returns bytes swapped out."""
        s, e, p, node = self.segments(ks, ke)
        ok = node < len(self.nodes)
        self._release(p[ok], p[ok] + (e - s)[ok])
        self.extents.remap(s[ok], e[ok], np.full(int(ok.sum()), SWAPPED, U64))
        sz = int((e - s)[ok].sum())
        self.acct.swapped_out += sz
        return sz

    def swap_in(self, ks, ke, pref: int) -> int:
        """Bring swapped pages of ``[ks, ke)`` back, on ``pref`` or the nearest node with
        room; returns bytes swapped in."""
        s, e, _, node = self.segments(ks, ke)
        sw = node == len(self.nodes)
        s, e = s[sw], e[sw]
        done = 0
        for nid in self.fallback_order(pref):
            want = int((e - s).sum())
            take = min(want, self.free[nid].free_bytes)
            if take == 0:
                continue
            a, b, g = split_by_offsets(s, e, [take])
            ps, pe = self.free[nid].alloc(take)
            zs, ze, zp = zip_ranges(a[g == 0], b[g == 0], ps, pe)
            self.extents.remap(zs, ze, zp)
            s, e, done = a[g > 0], b[g > 0], done + take
        self.acct.swapped_in += done
        return done

    def _release(self, ps, pe) -> None:
        ps, pe = u64(ps), u64(pe)
        nodes = self.node_of(ps)
        for n in np.unique(nodes):
            m = nodes == n
            self.free[n].release(ps[m], pe[m])
