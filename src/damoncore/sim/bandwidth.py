"""Memory bandwidth of the simulated machine: per-node peaks, loaded latency, throughput.

The simulated machine counts accesses and their latency cost but has no notion of a memory
channel filling up.  This module adds it on top, from the machine's public state only (its
rate map and extent placement), for evaluating bandwidth-aware placement such as weighted
interleaving.

Model (per memory node ``n``; bytes/s throughout):

- ``peak[n]``: the node's peak bandwidth; ``background[n]``: traffic other workloads put on
  it, served first (a fixed demand: the co-runner gets its bandwidth); the workload under
  study gets the residual ``R[n] = max(peak[n] - background[n], 0)``.
- Loaded latency: ``lat[n] = base[n] / (1 - u[n])`` with utilization ``u = traffic / peak``,
  capped at ``max_latency_factor * base[n]`` (the M/M/1 queueing delay; real controllers
  saturate rather than diverge).
- *Bound* throughput (the default, a bandwidth-bound workload): the workload issues as fast
  as memory allows while its traffic splits over nodes by fixed shares ``s`` (where its
  data is), so the first node to saturate limits it: ``T = min_n R[n] / s[n]`` over nodes
  with ``s[n] > 0``.  ``T`` is maximal, ``sum(R)``, when ``s`` is proportional to ``R``.
- *Closed-loop* throughput (a workload with a fixed number of bytes in flight, e.g. cores x
  outstanding misses x 64 B): Little's law ``T = inflight / mean_latency(T)`` with
  ``mean_latency = sum_n s[n] * lat[n]``, solved by bisection and never above the bound.

Traffic of a process is its streams' rates (accesses/s/page, the sum over accessors) times
its pages on each node times ``bytes_per_access`` (one 64-byte line by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidConfig
from .extents import U64, key_of, overlap_pairs

GB = 1_000_000_000
BYTES_PER_ACCESS = 64
NS_PER_LATENCY_UNIT = 10.0      # the presets' latency 10 (local DRAM) = 100 ns
BISECT_STEPS = 60


def node_traffic(machine, pids=None, bytes_per_access: int = BYTES_PER_ACCESS,
                 t_us: int | None = None) -> np.ndarray:
    """Bytes/s each node serves for the processes ``pids`` (None: all) at the current
    placement and the rates in force at ``t_us`` (default now).  Swapped pages are left out.
    """
    rm = machine.ratemap(t_us)
    qs, qe = rm.starts, rm.ends
    rate = rm.total
    live = rate > 0
    qs, qe, rate = qs[live], qe[live], rate[live]
    if pids is not None:
        if np.isscalar(pids):
            pids = [pids]
        idx = [machine.pidx(p) for p in pids]
        lo = key_of(np.array(idx), [0] * len(idx))
        hi = key_of(np.array(idx) + 1, [0] * len(idx))
        qi, _, qs, qe = overlap_pairs(qs, qe, np.sort(lo), np.sort(hi))
        rate = rate[qi]
    n = len(machine.nodes)
    if len(qs) == 0:
        return np.zeros(n)
    s, e, _, node = machine.segments(qs, qe)
    pages = ((e - s) // U64(machine.page_size)).astype(float)
    r = rate[np.searchsorted(qs, s, side="right") - 1]
    per = np.bincount(node, weights=pages * r, minlength=n + 1)[:n]
    return per * bytes_per_access


def node_shares(traffic) -> np.ndarray:
    """Traffic normalized to shares summing to 1 (zeros stay zeros)."""
    t = np.asarray(traffic, float)
    tot = t.sum()
    return t / tot if tot > 0 else np.zeros_like(t)


def bound_throughput(residual, shares) -> float:
    """``min_n residual[n] / shares[n]`` over ``shares > 0`` (bytes/s); 0 without shares."""
    r, s = np.asarray(residual, float), np.asarray(shares, float)
    use = s > 0
    if not use.any():
        return 0.0
    return float(np.min(r[use] / s[use]))


@dataclass
class BandwidthModel:
    """Per-node peak bandwidth (bytes/s) and unloaded latency (ns).

    ``base_latency_ns`` defaults to 100 ns everywhere; :meth:`for_machine` takes it from a
    simulated machine's latency row of one accessor node.
    """

    peak_bytes_s: np.ndarray
    base_latency_ns: np.ndarray | None = None
    max_latency_factor: float = 10.0

    def __post_init__(self):
        self.peak_bytes_s = np.asarray(self.peak_bytes_s, float)
        if np.any(self.peak_bytes_s <= 0):
            raise InvalidConfig(f"peak bandwidths must be > 0, got {self.peak_bytes_s}")
        if self.base_latency_ns is None:
            self.base_latency_ns = np.full(len(self.peak_bytes_s), 100.0)
        self.base_latency_ns = np.asarray(self.base_latency_ns, float)
        if self.base_latency_ns.shape != self.peak_bytes_s.shape:
            raise InvalidConfig("one base latency per node is needed")
        if self.max_latency_factor < 1:
            raise InvalidConfig(f"max_latency_factor must be >= 1, got {self.max_latency_factor}")

    @classmethod
    def for_machine(cls, machine, peak_bytes_s, accessor_node: int = 0, **kw):
        """Latencies from ``machine.latency[accessor_node]`` (unit 10 = 100 ns)."""
        return cls(np.asarray(peak_bytes_s, float),
                   machine.latency[accessor_node] * NS_PER_LATENCY_UNIT, **kw)

    def residual(self, background=None) -> np.ndarray:
        """Bytes/s left per node after ``background`` traffic (bytes/s per node)."""
        if background is None:
            return self.peak_bytes_s.copy()
        return np.maximum(self.peak_bytes_s - np.asarray(background, float), 0.0)

    def utilization(self, traffic) -> np.ndarray:
        return np.asarray(traffic, float) / self.peak_bytes_s

    def loaded_latency_ns(self, traffic) -> np.ndarray:
        """``base / (1 - u)`` per node, capped at ``max_latency_factor * base``."""
        u = self.utilization(traffic)
        free = np.maximum(1.0 - u, 1.0 / self.max_latency_factor)
        return self.base_latency_ns / free

    def best_shares(self, background=None) -> np.ndarray:
        """Traffic shares that maximize bound throughput: proportional to the residual."""
        return node_shares(self.residual(background))

    def throughput(self, shares, background=None) -> float:
        """Bound throughput (bytes/s) of a workload whose traffic splits by ``shares``."""
        return bound_throughput(self.residual(background), node_shares(shares))

    def closed_loop_throughput(self, shares, inflight_bytes: float, background=None) -> float:
        """Throughput (bytes/s) with ``inflight_bytes`` always outstanding (Little's law),
        at most the bound throughput; latency is loaded by workload plus background."""
        s = node_shares(shares)
        bg = np.zeros_like(s) if background is None else np.asarray(background, float)
        hi = bound_throughput(self.residual(bg), s)
        if hi <= 0 or inflight_bytes <= 0:
            return 0.0
        gap = lambda t: t * float(s @ self.loaded_latency_ns(t * s + bg)) * 1e-9 - inflight_bytes
        if gap(hi) <= 0:
            return hi
        lo = 0.0
        for _ in range(BISECT_STEPS):
            mid = (lo + hi) / 2
            if gap(mid) > 0:
                hi = mid
            else:
                lo = mid
        return lo


def interleave_placement(size: int, weights, unit_bytes: int = 1 << 20) -> tuple:
    """A :class:`~damoncore.sim.workloads.Mapping` ``placement`` that lays ``size`` bytes
    out the way weighted interleaving would, at ``unit_bytes`` granularity: each round gives
    node ``n`` ``weights[n] * unit_bytes``, in node order.  (The kernel interleaves single
    pages; coarser units keep the simulation's extent table small, and access shares over
    any range much larger than a round are the same.)  ``weights``: {nid: weight >= 1}.
    """
    items = [(int(n), int(w)) for n, w in dict(weights).items() if int(w) > 0]
    if not items or size <= 0 or unit_bytes <= 0:
        raise InvalidConfig(f"interleave placement needs weights and sizes > 0, got "
                            f"{weights}, size {size}, unit {unit_bytes}")
    per_round = sum(w for _, w in items) * unit_bytes
    rounds = -(-int(size) // per_round)
    return tuple((n, w * unit_bytes) for _ in range(rounds) for n, w in items)


def sim_node_bytes(machine, pid):
    """A ``node_bytes(starts, ends)`` function for policies: bytes of ``pid``'s virtual
    ``[start, end)`` ranges on each node, ``(len(starts), nr_nodes)`` float array."""
    n = len(machine.nodes)

    def node_bytes(starts, ends) -> np.ndarray:
        out = np.zeros((len(starts), n))
        if len(starts) == 0:
            return out
        k = machine.pidx(pid)
        s, e, _, node = machine.segments(key_of(k, starts), key_of(k, ends))
        qs = key_of(k, starts)
        row = np.searchsorted(qs, s, side="right") - 1
        ok = node < n
        np.add.at(out, (row[ok], node[ok]), (e - s)[ok].astype(float))
        return out

    return node_bytes
