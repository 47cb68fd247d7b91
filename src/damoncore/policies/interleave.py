"""Dynamic weighted interleaving (issue 8; the seed talk's Micron "dynamic interleaving").

A bandwidth-bound workload interleaved over several nodes runs fastest when its *traffic*
splits over them in proportion to the bandwidth each can still give it (see
:mod:`damoncore.sim.bandwidth`: ``T = min_n R[n] / s[n]``, maximal for ``s ~ R``).  Static
weights get this right only for one load situation; this policy keeps it right:

1. Bandwidth: per-node peak from HMAT (``numa.Topology``, ``access0`` read bandwidth) or
   configured figures, minus measured background traffic (an optional callable, e.g.
   memory-controller counters; the simulator's :func:`~damoncore.sim.bandwidth.node_traffic`
   of the other processes) = residual ``R``.  Target weights: ``R`` scaled to at most
   ``max_weight`` and reduced by their gcd.
2. Monitoring: at every aggregation, the workload's DAMON regions give how hot each range
   is (``nr_accesses``); ``node_bytes(starts, ends)`` says where their bytes are; so the
   hot traffic's split ``o`` over nodes is ``sum_r nr[r] * bytes[r, n]`` (normalized).
3. Hysteresis (both with ``confirm`` consecutive aggregations):
   - weights: change only when data interleaved by the *current* weights would lose more
     than ``retune_loss_bp`` of the best throughput ``sum(R)`` (default 5%);
   - placement: start migrating when the hot data's split loses more than
     ``retune_loss_bp`` against the current weights' split, stop at ``settle_loss_bp``
     (default 2%).  Small pattern noise thus changes nothing.
4. Re-placement: when a migration episode starts, the hot bytes (in address order) are
   cut into one contiguous part per node, sized by the weights; one ``migrate_hot`` scheme
   per node (``target_nid`` = the node, an ``addr`` allow filter = its part) moves the hot
   pages of its part there, in address order from where the last window stopped, under a
   ``Quota`` whose sizes add up to
   ``max_bytes_per_s * reset_ms / 1000`` per ``reset_ms`` window (bytes charged; bytes
   moved are at most that).  Assignment by address makes re-application idempotent: a page
   in place stays there whatever the region boundaries.  (A single scheme with
   ``dests=[(nid, weight)]`` is not: the engine splits each *batch* by weight in address
   order and batches are picked by score, so every window re-shuffles pages that earlier
   windows placed; measured, it never settled.)  The schemes are switched on and off
   through one shared ``user_input`` quota goal with the ``temporal`` tuner (goal met =
   paused), so the on/off decision takes effect at the next quota window.  The schemes
   apply once per window: schemes/apply.py consumes the resume point of a full window at
   the next apply even when that apply has no quota left, so more applies per window
   restart every window at the same (hottest, lowest) regions and never reach the rest.
5. New allocations: ``set_weights({nid: weight})`` is called on every change; on Linux pass
   :func:`sysfs_weights_setter` (system-wide sysfs weights, used by every process under
   MPOL_WEIGHTED_INTERLEAVE); the simulator has no fault-time allocation, so there the
   weights only reach memory mapped later through
   :func:`~damoncore.sim.bandwidth.interleave_placement` (the policy records them).

Built on the public API only (Context, Target, Scheme, Quota, QuotaGoal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from math import gcd

import numpy as np

from ..core.attrs import Attrs
from ..core.context import Context
from ..core.target import Target
from ..errors import InvalidConfig
from ..schemes.scheme import AccessPattern, Filter, Quota, QuotaGoal, Scheme

GiB = 1 << 30
BP = 10000
HMAT_BW_UNIT = 1 << 20        # sysfs access0/read_bandwidth is in MiB/s


def peak_from_topology(topology, nodes) -> dict:
    """{nid: bytes/s} from HMAT ``access0`` read bandwidth; nodes without it are left out."""
    out = {}
    for n in nodes:
        acc = topology.access.get(n, {}).get(0)
        if acc is not None and acc.read_bandwidth:
            out[n] = float(acc.read_bandwidth) * HMAT_BW_UNIT
    return out


def weights_from_shares(shares, nodes, max_weight: int = 100) -> dict:
    """Integer weights 1..``max_weight`` proportional to ``shares`` (the largest gets
    ``max_weight``), divided by their gcd: ``{nid: weight}``."""
    s = np.asarray(shares, float)
    if s.max(initial=0) <= 0:
        return {n: 1 for n in nodes}
    w = np.maximum(1, np.rint(s / s.max() * max_weight)).astype(int)
    g = reduce(gcd, w.tolist())
    return {n: int(x) // g for n, x in zip(nodes, w)}


def bound_throughput(residual, shares) -> float:
    """``min_n residual[n] / shares[n]`` over ``shares > 0`` (the model of
    :mod:`damoncore.sim.bandwidth`); 0 without shares."""
    r, s = np.asarray(residual, float), np.asarray(shares, float)
    use = s > 0
    return float(np.min(r[use] / s[use])) if use.any() else 0.0


def sysfs_weights_setter(sysfs_root: str = "/sys"):
    """``set_weights`` for Linux: writes ``weighted_interleave/nodeN`` (needs root)."""
    from ..linux.mempolicy import write_weights
    return lambda weights: write_weights(weights, sysfs_root)


@dataclass
class InterleaveConfig:
    """Knobs of the dynamic interleaving policy.

    ``nodes``: the interleave set.  ``peak_bytes_s``: {nid: bytes/s}; None takes HMAT from
    ``topology``.  ``max_bytes_per_s``: re-placement bound (bytes charged per second), in
    windows of ``reset_ms``.  ``retune_loss_bp``/``settle_loss_bp``: hysteresis thresholds
    (basis points of throughput).  ``confirm``: consecutive aggregations a trigger must
    hold.  ``hot_pct``: minimum access rate (percent of the max) of a region that counts
    as hot data and may be migrated.  ``max_weight``: largest sysfs weight (<= 255).
    """

    nodes: list
    peak_bytes_s: dict | None = None
    max_bytes_per_s: int = 1 * GiB
    reset_ms: int = 1000
    retune_loss_bp: int = 500
    settle_loss_bp: int = 200
    confirm: int = 2
    hot_pct: int = 5
    max_weight: int = 100
    attrs: Attrs = field(default_factory=lambda: Attrs(ops_update_us=1_000_000))

    def __post_init__(self):
        self.nodes = [int(n) for n in self.nodes]
        if len(self.nodes) < 2 or len(set(self.nodes)) != len(self.nodes):
            raise InvalidConfig(f"interleaving needs two or more distinct nodes, got {self.nodes}")
        if not 0 <= self.settle_loss_bp <= self.retune_loss_bp < BP:
            raise InvalidConfig(f"need 0 <= settle_loss_bp <= retune_loss_bp < 10000, got "
                                f"{self.settle_loss_bp}/{self.retune_loss_bp}")
        if self.max_bytes_per_s <= 0 or self.reset_ms <= 0:
            raise InvalidConfig("max_bytes_per_s and reset_ms must be > 0")
        if not 1 <= self.max_weight <= 255:
            raise InvalidConfig(f"max_weight must be 1..255, got {self.max_weight}")
        if self.confirm < 1 or not 0 <= self.hot_pct <= 100:
            raise InvalidConfig("confirm must be >= 1 and hot_pct 0..100")


@dataclass
class Decision:
    """What the policy saw and decided at one aggregation (``time_us`` on the context
    clock).  Shares are over ``InterleaveConfig.nodes``; losses in basis points."""

    time_us: int
    hot_shares: np.ndarray
    target_shares: np.ndarray
    weights: dict
    weights_loss_bp: int
    placement_loss_bp: int
    migrating: bool
    retuned: bool


class DynamicInterleave:
    """The policy: one monitoring context over the workload with the re-placement scheme.

    ``ops``: the ops backend of the workload's address space (``SimOps(..., "vaddr")`` or
    ``VaddrOps``); ``target``: its :class:`Target`.  ``node_bytes(starts, ends)`` returns
    bytes per node of each range, ``(k, nr_nodes)`` with columns indexed by node id
    (:func:`damoncore.sim.bandwidth.sim_node_bytes`,
    :func:`damoncore.linux.mempolicy.sample_node_bytes`).  ``background()`` returns bytes/s
    per node id of other traffic (None: none).  ``weights``: initial weights (default: from
    peak bandwidth).  Run it with ``policy.ctx.run(...)`` or in a :class:`Kdamond`.
    """

    def __init__(self, cfg: InterleaveConfig, ops, target: Target, node_bytes,
                 background=None, set_weights=None, topology=None, weights=None,
                 seed: int = 0):
        self.cfg = cfg
        peak = cfg.peak_bytes_s
        if peak is None:
            peak = peak_from_topology(topology, cfg.nodes) if topology is not None else {}
        missing = [n for n in cfg.nodes if n not in peak]
        if missing:
            raise InvalidConfig(f"no bandwidth for nodes {missing}: no HMAT there, give "
                                f"InterleaveConfig.peak_bytes_s")
        self.peak = np.array([float(peak[n]) for n in cfg.nodes])
        self.node_bytes = node_bytes
        self.background = background
        self.set_weights = set_weights
        self.weights = dict(weights) if weights else weights_from_shares(
            self.peak, cfg.nodes, cfg.max_weight)
        self.goal = QuotaGoal("user_input", BP, current_value=BP)      # met = paused
        pattern = AccessPattern(min_nr_accesses=max(cfg.hot_pct, 1), nr_accesses_unit="percent")
        self.schemes = [
            Scheme(pattern, "migrate_hot", target_nid=n, apply_interval_us=cfg.reset_ms * 1000,
                   # equal scores: the quota's score threshold is computed over every
                   # hot region, before the addr filter, so with access weights a part
                   # would only ever see the few hottest regions that land in it
                   quota=Quota(sz_bytes=1, reset_interval_ms=cfg.reset_ms,
                               goals=[self.goal], goal_tuner="temporal"),
                   filters=[Filter("addr", allow=True, address_range=(0, 1))],
                   name=f"interleave part -> node{n}")
            for n in cfg.nodes]
        self.parts = {}
        self.ctx = Context(ops, [target], cfg.attrs, schemes=self.schemes, seed=seed,
                           name="dynamic interleave")
        self.ctx.add_callback(self._on_snapshot)
        self.migrating = False
        self._weights_streak = 0
        self._place_streak = 0
        self.history: list[Decision] = []
        self.weights_log = [(0, dict(self.weights))]
        if set_weights is not None:
            set_weights(dict(self.weights))

    @property
    def sz_migrated(self) -> int:
        """Bytes the re-placement schemes moved so far."""
        return sum(sc.stats.sz_migrated for sc in self.schemes)

    def _set_parts(self, snap) -> None:
        """Cut the hot bytes, in address order, into one part per node by the weights,
        and split the re-placement budget the same way."""
        cfg, t = self.cfg, snap.targets[0]
        hot = t.nr_accesses.astype(float) * 100 >= max(cfg.hot_pct, 1) * snap.max_nr_accesses
        s, e = t.start[hot].astype(np.int64), t.end[hot].astype(np.int64)
        if len(s) == 0:
            return
        cum = np.cumsum(e - s)
        shares = self.weight_shares()
        want = (cum[-1] * np.cumsum(shares)[:-1]).astype(np.int64)
        i = np.searchsorted(cum, want, side="right")
        before = np.where(i > 0, cum[np.maximum(i - 1, 0)], 0)
        page = self.ctx.min_region
        cuts = np.minimum(s[np.minimum(i, len(s) - 1)] + (want - before), e[-1])
        cuts = np.concatenate([[s[0]], cuts // page * page, [e[-1]]])
        budget = cfg.max_bytes_per_s * cfg.reset_ms // 1000
        self.parts = {}
        for k, (sc, n) in enumerate(zip(self.schemes, cfg.nodes)):
            a, b = int(cuts[k]), int(max(cuts[k + 1], cuts[k] + 1))
            self.parts[n] = (a, b)
            sc.filters = [Filter("addr", allow=True, address_range=(a, b))]
            sc.quota.sz_bytes = max(page, int(budget * shares[k]) // page * page)

    def weight_shares(self) -> np.ndarray:
        w = np.array([self.weights[n] for n in self.cfg.nodes], float)
        return w / w.sum()

    def residual(self) -> np.ndarray:
        """Bytes/s per interleave node left after background traffic (>= 0)."""
        if self.background is None:
            return self.peak.copy()
        bg = np.asarray(self.background(), float)[self.cfg.nodes]
        return np.maximum(self.peak - bg, 0.0)

    def hot_shares(self, snap) -> np.ndarray:
        """Split of the hot data's accesses over the interleave nodes (sums to 1 or 0)."""
        o = np.zeros(len(self.cfg.nodes))
        if not snap.targets:
            return o
        t = snap.targets[0]
        nr = t.nr_accesses.astype(float)
        hot = nr * 100 >= max(self.cfg.hot_pct, 1) * snap.max_nr_accesses
        if not hot.any():
            return o
        nb = np.asarray(self.node_bytes(t.start[hot], t.end[hot]), float)[:, self.cfg.nodes]
        # DAMON saturates at one access per sample: hotter pages all count as nr = max
        o = nr[hot] @ nb
        tot = o.sum()
        return o / tot if tot > 0 else o

    def _on_snapshot(self, ctx, snap) -> None:
        cfg = self.cfg
        r = self.residual()
        best = float(r.sum())
        target = r / best if best > 0 else np.full(len(r), 1 / len(r))
        loss = lambda got, ref: 0 if ref <= 0 else max(0, int(BP - got * BP // ref))
        w_loss = loss(bound_throughput(r, self.weight_shares()), best)
        cand = weights_from_shares(target, cfg.nodes, cfg.max_weight)
        retuned = False
        self._weights_streak = self._weights_streak + 1 if (
            w_loss > cfg.retune_loss_bp and cand != self.weights) else 0
        if self._weights_streak >= cfg.confirm:
            self.weights, self._weights_streak, retuned = cand, 0, True
            self.migrating = False              # a new episode with parts for the new weights
            self.weights_log.append((snap.end_us, dict(cand)))
            if self.set_weights is not None:
                self.set_weights(dict(cand))
        o = self.hot_shares(snap)
        p_loss = 0 if o.sum() == 0 else loss(bound_throughput(r, o),
                                              bound_throughput(r, self.weight_shares()))
        if not self.migrating:
            self._place_streak = self._place_streak + 1 if p_loss > cfg.retune_loss_bp else 0
            if self._place_streak >= cfg.confirm:
                self.migrating, self._place_streak = True, 0
                self._set_parts(snap)
        elif p_loss <= cfg.settle_loss_bp:
            self.migrating = False
        self.goal.current_value = max(1, BP - p_loss) if self.migrating else BP
        self.history.append(Decision(snap.end_us, o, target, dict(self.weights), w_loss,
                                     p_loss, self.migrating, retuned))
