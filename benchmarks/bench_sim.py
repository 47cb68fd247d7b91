"""Per-sample-step cost of the full core + sim loop versus monitored size (1000 regions).

Each benchmarked call runs STEPS sample intervals (5 aggregations, so merge/split/callbacks
are included) of a vaddr target whose size is the parameter; the machine is extent based,
so the cost should be flat in the size (within 2x from 1 GiB to 1 TiB).

    PYTHONPATH=src python -m pytest benchmarks/bench_sim.py --benchmark-enable -q
"""

import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.presets import GiB, tiering_machine

STEPS = 100
ATTRS = Attrs(sample_us=5000, aggr_us=100000, min_nr_regions=1000, max_nr_regions=1000)
SIZES = {"1GiB": 1 * GiB, "16GiB": 16 * GiB, "256GiB": 256 * GiB, "1TiB": 1024 * GiB}


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
def test_sample_step_cost(benchmark, size):
    sz = SIZES[size]
    m = tiering_machine(sz, sz, seed=1)
    m.add_workload(Workload.moving_hot(sz, sz // 16, [(0, sz // 4), (2_000_000, sz // 2)],
                                       hot_rate=500.0, cold_rate=0.1))
    ctx = Context(SimOps(m, space="vaddr", pid=1000), [Target(pid=1000)], ATTRS, seed=1)
    ctx.run(ATTRS.sample_us)                          # init regions outside the timing
    benchmark.extra_info["nr_regions"] = ctx.nr_regions()
    benchmark.extra_info["steps_per_call"] = STEPS
    benchmark.pedantic(ctx.run, args=(STEPS * ATTRS.sample_us,), rounds=10, iterations=1)
    assert 900 <= ctx.nr_regions() <= 1001
