"""paddr's answer to node_eligible_mem_bp on this host: the LRU pages of physical ranges by
node, as damos_calc_eligible_bytes() counts the folios damon_get_folio() finds."""

import os

import pytest

from damoncore import AccessPattern, Context, Quota, QuotaGoal, Scheme, Target
from damoncore.numa.topology import Topology
from damoncore.ops.paddr import PaddrOps
from damoncore.schemes.quota import node_eligible_mem_bp

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/proc/kpageflags"),
                                reason="reading /proc/kpageflags needs root")


def _meminfo():
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}


def test_lru_bytes_of_a_node_match_the_lru_lists():
    topo = Topology.read()
    nid = topo.nodes[0]
    ranges = topo.phys_ranges[nid]
    got = PaddrOps().node_bytes(None, None, [a for a, _ in ranges], [b for _, b in ranges])
    m = _meminfo()
    lru = m["Active"] + m["Inactive"] + m.get("Unevictable", 0)
    if len(topo.nodes) == 1:                   # /proc/meminfo is the one node's
        assert abs(got[nid] - lru) <= lru // 20, (got, lru)
    assert 0 < got[nid] < sum(b - a for a, b in ranges)


def test_node_eligible_mem_bp_over_physical_memory():
    topo = Topology.read()
    nid = topo.nodes[0]
    goal = QuotaGoal("node_eligible_mem_bp", 5000, nid=nid)
    other = QuotaGoal("node_eligible_mem_bp", 5000, nid=nid + 1)
    scheme = Scheme(AccessPattern(), "stat", quota=Quota(sz_bytes=1 << 20,
                                                         reset_interval_ms=1000,
                                                         goals=[goal, other]))
    ctx = Context(PaddrOps(), [Target(ranges=topo.phys_ranges[nid])], schemes=[scheme],
                  primitives=("page_fault",))
    ctx.start()
    try:
        share = node_eligible_mem_bp(ctx, scheme, nid)
        elsewhere = node_eligible_mem_bp(ctx, scheme, nid + 1)
    finally:
        ctx.ops.cleanup(ctx)
    # the target is node nid's memory: all that is eligible is there, none on the next node
    assert share == 10000 and elsewhere == 0
    # a pattern no region matches: nothing eligible reads 0, as the kernel's
    none = Scheme(AccessPattern(min_sz=1 << 62), "stat",
                  quota=Quota(sz_bytes=1 << 20, reset_interval_ms=1000, goals=[goal]))
    assert node_eligible_mem_bp(ctx, none, nid) == 0
