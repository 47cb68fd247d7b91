"""A virtual clock and a tiny deterministic ops backend for core tests.

The ops answers access checks from a list of hot ranges: a sampling address inside one is
accessed with probability ``p_hot``, elsewhere with ``p_cold``.  (The full simulated machine
lives in damoncore.sim; these tests exercise the core alone.)
"""

import numpy as np

from damoncore.ops.base import ApplyResult, Operations


class VirtualClock:
    def __init__(self):
        self.t = 0

    def now_us(self):
        return self.t

    def sleep_us(self, us):
        self.t += int(us)


class HotRangeOps(Operations):
    name = "hotrange"
    page_size = 4096        # a 4 KiB-page machine whatever the host: min_region follows it
    supported_actions = frozenset({"stat", "pageout", "migrate_hot", "migrate_cold"})

    def __init__(self, hot=(), p_hot=1.0, p_cold=0.0, seed=0, clock=None):
        self.hot = list(hot)
        self.p_hot, self.p_cold = p_hot, p_cold
        self.g = np.random.default_rng(seed)
        self.clock = clock or VirtualClock()
        self.applied = []   # (target_idx, scheme, starts, ends)

    def check_accesses(self, ctx):
        out = []
        for t in ctx.targets:
            a = t.regions.sampling_addr
            hot = np.zeros(len(a), bool)
            for s, e in self.hot:
                hot |= (a >= s) & (a < e)
            p = np.where(hot, self.p_hot, self.p_cold)
            out.append((self.g.random(len(a)) < p).astype(np.uint8))
        return out

    def apply_scheme(self, ctx, target, scheme, starts, ends, ops_filters=None):
        self.applied.append((ctx.targets.index(target), scheme, starts.copy(), ends.copy()))
        sz = int((ends - starts).sum())
        return ApplyResult(sz_applied=sz if scheme.action != "stat" else 0,
                           sz_ops_filter_passed=sz)
