"""A custom TPP tiering agent on the simulated seed machine (DRAM nodes 0, 2; CXL 1, 3).

DRAM is full of cold data; a process's 1 GiB hot range was first touched on CXL.  One
context watches CXL and promotes what is hot, one watches DRAM and demotes what is cold,
200 MiB per second each way, until DRAM is 99.7% used / 0.5% free.  It prints every 5
simulated seconds how much of the hot range is on DRAM; 30 simulated seconds take ~1 s.
"""
from damoncore import (AccessPattern, Attrs, Context, Filter, Kdamond, Quota, QuotaGoal,
                       Scheme, Target)
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.presets import seed_machine
from damoncore.sim.workloads import DEFAULT_BASE

GiB, MiB = 1 << 30, 1 << 20
machine = seed_machine(dram_bytes=16 * GiB, cxl_bytes=64 * GiB)
machine.add_workload(Workload.uniform(16 * GiB - 256 * MiB, rate=0.1, pid=1, node=0))
machine.add_workload(Workload.hot_cold(8 * GiB, 2 * GiB, 1 * GiB, pid=2, node=1))
hot_start, hot_end = DEFAULT_BASE + 2 * GiB, DEFAULT_BASE + 3 * GiB


def quota(goal):    # temporal: the full quota while the goal is unmet, nothing once it is met
    return Quota(sz_bytes=200 * MiB, reset_interval_ms=1000, weight_nr_accesses=100,
                 weight_age=100, goals=[goal], goal_tuner="temporal")


promote = Scheme(AccessPattern(min_nr_accesses=5, nr_accesses_unit="percent"), "migrate_hot",
                 target_nid=0, quota=quota(QuotaGoal("node_mem_used_bp", 9970, nid=0)),
                 filters=[Filter("young", allow=True)])
demote = Scheme(AccessPattern(max_nr_accesses=0), "migrate_cold", target_nid=1,
                quota=quota(QuotaGoal("node_mem_free_bp", 50, nid=0)),
                filters=[Filter("young", allow=False)])
cxl = Context(SimOps(machine, space="paddr"), [Target(ranges=[machine.node_range(1)])],
              Attrs(), schemes=[promote])
dram = Context(SimOps(machine, space="paddr"), [Target(ranges=[machine.node_range(0)])],
               Attrs(), schemes=[demote])
agent = Kdamond([dram, cxl])
for t in range(5, 31, 5):
    agent.run(duration_us=5_000_000, cleanup=False)
    on_dram = machine.node_bytes(2, hot_start, hot_end)[0] / (hot_end - hot_start)
    print(f"{t:2d} s: hot range on DRAM {on_dram:4.0%}, promoted "
          f"{promote.stats.sz_promoted // MiB} MiB, demoted "
          f"{demote.stats.sz_demoted // MiB} MiB")
