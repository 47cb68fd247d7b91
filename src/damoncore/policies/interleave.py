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
4. Re-placement, minimal: when a migration episode starts, the hot data's layout is read
   from the ops backend (:meth:`~damoncore.Operations.node_ranges`: which node holds each
   part), each node's share of the hot traffic is compared with the weights, and only each
   node's *surplus* moves, to the nodes in *deficit*, nothing else (:func:`plan_moves`: a
   surplus node gives whole 1 MiB chunks of its hot pages, spread evenly over the address
   range; the chunks are dealt to the deficit nodes in address order by their deficits,
   the way the kernel's weighted interleave index deals pages).  The plan runs in address
   order, ``max_bytes_per_s * aggr_us`` bytes per aggregation: one ``migrate_hot`` scheme
   per node (``target_nid`` = the node) applies every aggregation with ``addr`` allow
   filters on its next pieces and a size quota of the same bytes.  A page in place is
   never in a plan, so re-planning is idempotent, and a page moves once per weight change.
   (Cutting the hot data into one contiguous part per node instead moved most pages of
   every node: 2216 MiB for a 5:3:5:3 -> 20:12:20:3 change that needed 408 MiB.)
5. New allocations: ``set_weights({nid: weight})`` is called on every change; on Linux pass
   :func:`sysfs_weights_setter` (system-wide sysfs weights, used by every process under
   MPOL_WEIGHTED_INTERLEAVE); the simulator has no fault-time allocation, so there the
   weights only reach memory mapped later through
   :func:`~damoncore.sim.bandwidth.interleave_placement` (the policy records them).

Built on the public API only (Context, Target, Scheme, Quota, the ops ``node_ranges``
query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from math import gcd

import numpy as np

from .. import PAGE_SIZE
from ..arrays import expand_runs
from ..core.attrs import Attrs
from ..core.context import Context
from ..core.target import Target
from ..errors import FeatureMissing, InvalidConfig
from ..schemes.scheme import AccessPattern, Filter, Quota, Scheme
from ..units import BP

GiB = 1 << 30
PLAN_UNIT = PAGE_SIZE     # a scheme's size quota when its node has nothing planned
#: an address filter that matches nothing: the schemes' filter while nothing is planned
NOTHING = Filter("addr", allow=True, address_range=(0, 1))
INTERLEAVE_WEIGHT_MAX = 20    # deficits are dealt with weights up to this (a short cycle)
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
    from ..numa import write_interleave_weights
    return lambda weights: write_interleave_weights(weights, sysfs_root)


@dataclass
class InterleaveConfig:
    """Knobs of the dynamic interleaving policy.

    ``nodes``: the interleave set.  ``peak_bytes_s``: {nid: bytes/s}; None takes HMAT from
    ``topology``.  ``max_bytes_per_s``: re-placement bound (bytes charged per second),
    spent evenly, ``max_bytes_per_s * aggr_us`` per aggregation, so no window of
    ``reset_ms`` (the re-tune interval the evaluation measures recovery against) charges
    more than ``max_bytes_per_s * reset_ms / 1000``.  ``retune_loss_bp``/``settle_loss_bp``:
    hysteresis thresholds (basis points of throughput).  ``confirm``: consecutive
    aggregations a trigger must hold.  ``hot_pct``: minimum access rate (percent of the
    max) of a region that counts as hot data and may be migrated.  ``max_weight``: largest
    sysfs weight (<= 255).  ``max_ranges``: address filters per scheme per aggregation.
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
    max_ranges: int = 256
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
        if self.max_ranges < 1:
            raise InvalidConfig(f"max_ranges must be >= 1, got {self.max_ranges}")


def plan_moves(rs, re, rn, weight, nodes, shares, page: int, unit: int = 1 << 20,
               bridge: int = 16):
    """The least moves that give ``nodes`` the traffic ``shares`` of hot data.

    ``rs``/``re``/``rn``: runs of hot pages (bytes, address order) and the node holding
    each; ``weight``: traffic per byte of each run (e.g. its region's ``nr_accesses``).
    Node ``n``'s share of the traffic is ``cur[n]``, its target ``shares[n]``.  A node with
    a surplus gives the fraction ``surplus / cur`` of its pages, spread evenly over the
    ``unit``-byte chunks of the address space and in whole chunks where possible (error
    diffusion over its chunks in address order: few, large pieces).  The given chunks, in address order, are
    dealt to the deficit nodes like the kernel's weighted interleave deals pages: the
    ``c``-th goes to the node whose slot holds ``c mod sum(w)``, ``w`` the deficits scaled
    to at most ``INTERLEAVE_WEIGHT_MAX``.  Pieces bound for one node are joined across gaps
    of at most ``bridge`` pages that lie on that node already (a page-level interleave
    would give one range per page otherwise; a page already there does not move).  Runs on
    nodes outside ``nodes`` are left alone.  Returns ``(starts, ends, node index)`` sorted
    by address.
    """
    rs, re = np.asarray(rs, np.int64), np.asarray(re, np.int64)
    rn, weight = np.asarray(rn, np.int64), np.asarray(weight, float)
    idx = {int(n): k for k, n in enumerate(nodes)}
    k = np.array([idx.get(int(n), -1) for n in rn], np.int64)
    ok = (k >= 0) & (re > rs)
    rs, re, k, weight = rs[ok], re[ok], k[ok], weight[ok]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(rs) == 0:
        return empty
    traffic = weight * (re - rs)
    cur = np.bincount(k, traffic, minlength=len(nodes))
    total = cur.sum()
    if total <= 0:
        return empty
    want = np.asarray(shares, float) * total
    surplus = np.maximum(cur - want, 0)
    deficit = np.maximum(want - cur, 0)
    if surplus.sum() <= 0 or deficit.sum() <= 0:
        return empty
    frac = np.divide(surplus, cur, out=np.zeros(len(nodes)), where=cur > 0)
    # the runs cut at unit chunks of the address space
    c0, c1 = rs // unit, (re - 1) // unit
    ncut = c1 - c0 + 1
    rep, ch = expand_runs(c0, ncut)
    ps, pe, pk = np.maximum(rs[rep], ch * unit), np.minimum(re[rep], (ch + 1) * unit), k[rep]
    pages = (pe - ps) // page
    gs, ge, gkey = [], [], []
    for n in np.flatnonzero(frac > 0):
        m = np.flatnonzero(pk == n)
        chunks, inv = np.unique(ch[m], return_inverse=True)
        per = np.bincount(inv, pages[m], minlength=len(chunks)).astype(np.int64)
        take = _diffuse(per, frac[n])                          # pages per chunk
        # the first ``take`` of the node's pages in each chunk
        before = np.cumsum(pages[m]) - pages[m]
        before -= np.concatenate([[0], np.cumsum(per)[:-1]])[inv]
        mine = np.clip(take[inv] - before, 0, pages[m])
        sel = mine > 0
        gs.append(ps[m][sel])
        ge.append(ps[m][sel] + mine[sel] * page)
        gkey.append(ch[m][sel] * len(nodes) + n)
    gs, ge, gkey = np.concatenate(gs), np.concatenate(ge), np.concatenate(gkey)
    # deal the given (chunk, node) parts to the deficit nodes, in address order
    parts, pinv = np.unique(gkey, return_inverse=True)
    w = np.where(deficit > 0, np.maximum(1, np.rint(deficit / deficit.max()
                                                    * INTERLEAVE_WEIGHT_MAX)), 0)
    w = w.astype(np.int64)
    slot = np.searchsorted(np.cumsum(w), np.arange(len(parts)) % int(w.sum()), side="right")
    dst = slot[pinv]
    o = np.lexsort((gs, dst))
    gs, ge, dst = gs[o], ge[o], dst[o]
    # join pieces bound for one node across short gaps already on that node
    gap_ok = np.zeros(len(gs), bool)
    if len(gs) > 1:
        a, b, d = ge[:-1], gs[1:], dst[:-1]
        same = (dst[1:] == d) & (b - a <= bridge * page)
        on_d = np.zeros(len(a), np.int64)
        for x in np.unique(d[same]):
            sel = same & (d == x)
            on_d[sel] = _bytes_below(rs, re, k == x, b[sel]) - _bytes_below(rs, re, k == x,
                                                                              a[sel])
        gap_ok[1:] = same & (on_d == b - a)
    first = np.flatnonzero(~gap_ok)
    last = np.append(first[1:], len(gs)) - 1
    s, e, d = gs[first], ge[last], dst[first]
    o = np.argsort(s, kind="stable")
    return s[o], e[o], d[o]


def _diffuse(per, frac: float) -> np.ndarray:
    """Pages to take from each chunk holding ``per`` pages so that ``frac`` of them are
    taken (to a page) and spread evenly, in whole chunks: error diffusion, a chunk is taken
    when at least half of it is owed; the last taken chunks are trimmed (or the last
    chunks topped up) to the exact total.  (Once per plan, over the chunks.)"""
    per = np.asarray(per, np.int64)
    take = np.zeros(len(per), np.int64)
    owed = 0.0
    for i, p in enumerate(per.tolist()):
        owed += frac * p
        if p and owed >= p / 2:
            take[i] = p
            owed -= p
    fix = int(np.floor(owed + 0.5))                  # pages still owed (< 0: too many)
    for i in range(len(per) - 1, -1, -1):
        if fix == 0:
            break
        d = max(fix, -int(take[i])) if fix < 0 else min(fix, int(per[i] - take[i]))
        take[i] += d
        fix -= d
    return take


def _bytes_below(rs, re, mask, x):
    """Bytes of the runs ``[rs, re)`` (sorted, disjoint) selected by ``mask`` below each
    address of ``x``."""
    ln = np.where(mask, re - rs, 0)
    cum = np.concatenate([[0], np.cumsum(ln)])
    j = np.searchsorted(rs, x, side="left")                  # runs starting below x
    jc = np.maximum(j - 1, 0)
    over = np.where((j > 0) & mask[jc] & (re[jc] > x), re[jc] - x, 0)
    return cum[j] - over


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
        aggr_ms = max(1, cfg.attrs.aggr_us // 1000)
        self.schemes = [
            # any access count: the plan's address filters carry the decision; every
            # aggregation, at most the plan's next bytes for this node (quota)
            Scheme(AccessPattern(), "migrate_hot", target_nid=n,
                   quota=Quota(sz_bytes=PLAN_UNIT, reset_interval_ms=aggr_ms),
                   filters=[NOTHING], name=f"interleave -> node{n}")
            for n in cfg.nodes]
        self.plan = None          # (starts, ends, node index) of the episode, by address
        self._plan_at = 0
        self.nr_plans = 0
        self.sz_planned = 0
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

    def _plan(self, snap) -> None:
        """The episode's re-placement: each interleave node's surplus of hot traffic,
        taken evenly from its runs of hot pages, dealt to the deficit nodes in address
        order by their deficits (:func:`plan_moves`)."""
        cfg, t = self.cfg, snap.targets[0]
        hot = t.nr_accesses.astype(float) * 100 >= max(cfg.hot_pct, 1) * snap.max_nr_accesses
        s, e = t.start[hot], t.end[hot]
        self.plan, self._plan_at = None, 0
        if len(s) == 0:
            return
        got = self.ctx.ops.node_ranges(self.ctx, self.ctx.targets[0], s, e)
        if got is None:
            raise FeatureMissing("where pages are (the ops node_ranges query)",
                                 f"ops backend {self.ctx.ops.name!r} cannot tell which node "
                                 f"holds a range")
        rs, re, rn = (np.asarray(x) for x in got)
        weight = t.nr_accesses[hot].astype(float)[np.searchsorted(s, rs, side="right") - 1]
        self.plan = plan_moves(rs, re, rn, weight, cfg.nodes, self.weight_shares(),
                               self.ctx.min_region)
        self.nr_plans += 1
        self.sz_planned += int((self.plan[1] - self.plan[0]).sum())

    def _set_filters(self) -> None:
        """The plan's next pieces (address order) on the schemes: at most
        ``max_bytes_per_s * aggr_us`` bytes and ``max_ranges`` pieces per node."""
        cfg = self.cfg
        for sc in self.schemes:
            sc.filters = [NOTHING]
            sc.quota.sz_bytes = PLAN_UNIT
        if not self.migrating or self.plan is None:
            return
        ps, pe, pk = self.plan
        i = self._plan_at
        budget = max(self.ctx.min_region, cfg.max_bytes_per_s * cfg.attrs.aggr_us // 1_000_000)
        cum = np.cumsum(pe[i:] - ps[i:])
        j = i + int(np.searchsorted(cum, budget, side="right"))
        # the node with the most pieces in that span limits it to max_ranges pieces
        if j > i:
            k = pk[i:j]
            order = np.argsort(k, kind="stable")
            rank = np.empty(len(k), np.int64)
            rank[order] = np.arange(len(k)) - np.searchsorted(k[order], k[order])
            over = np.flatnonzero(rank >= cfg.max_ranges)
            if len(over):
                j = i + int(over[0])
        if j == i and i < len(ps):
            j = i + 1
        for k, sc in enumerate(self.schemes):
            sel = np.flatnonzero(pk[i:j] == k) + i
            if len(sel):
                sc.filters = [Filter("addr", allow=True, address_range=(int(ps[x]), int(pe[x])))
                              for x in sel]
                sc.quota.sz_bytes = int((pe[sel] - ps[sel]).sum())
        self._plan_at = j

    @property
    def plan_done(self) -> bool:
        return self.plan is None or self._plan_at >= len(self.plan[0])

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
        if retuned and p_loss > cfg.retune_loss_bp:
            # the weight change was itself confirmed: re-place now
            self.migrating, self._place_streak = True, 0
            self._plan(snap)
        elif not self.migrating:
            self._place_streak = self._place_streak + 1 if p_loss > cfg.retune_loss_bp else 0
            if self._place_streak >= cfg.confirm:
                self.migrating, self._place_streak = True, 0
                self._plan(snap)
        elif self.plan_done:
            # the plan ran out: done if the split is right, else a new plan (the hot data
            # changed under the old one)
            if p_loss <= cfg.settle_loss_bp:
                self.migrating = False
            else:
                self._plan(snap)
        self._set_filters()
        self.history.append(Decision(snap.end_us, o, target, dict(self.weights), w_loss,
                                     p_loss, self.migrating, retuned))
