"""Compare region adaptations (how regions split and merge) on one simulated workload.

A 4 GiB process's 256 MiB hot range jumps to another place after 10 s.  Each adaptation
monitors the same workload (same seed) for 20 simulated seconds; per aggregation the
regions reported hot (accessed in at least half of the samples) are checked against the
hot range the workload really has.  Add your own adaptation to ADAPTATIONS.
"""
import statistics

from damoncore import Attrs, Context, EdgeSplit, FixedRegions, KernelAdaptation, Target
from damoncore.ops.sim import SimOps
from damoncore.sim import Workload
from damoncore.sim.presets import tiering_machine
from damoncore.sim.workloads import DEFAULT_BASE

GiB, MiB = 1 << 30, 1 << 20
MOVE_US, END_US = 10_000_000, 20_000_000
HOT = [(0, DEFAULT_BASE + 512 * MiB), (MOVE_US, DEFAULT_BASE + 3 * GiB)]   # (from, start)
ADAPTATIONS = {     # name: (a factory of the adaptation, (min_nr_regions, max_nr_regions))
    "kernel": (KernelAdaptation, (10, 1000)),
    "fixed-100": (FixedRegions, (100, 100)),
    "edge-split": (EdgeSplit, (10, 1000)),
}


def evaluate(make_adaptation, nr_regions):
    machine = tiering_machine(8 * GiB, 8 * GiB, seed=1)
    machine.add_workload(Workload.moving_hot(4 * GiB, 256 * MiB,
                                             [(t, a - DEFAULT_BASE) for t, a in HOT], pid=1))
    ctx = Context(SimOps(machine, space="vaddr", pid=1), [Target(pid=1)],
                  Attrs(min_nr_regions=nr_regions[0], max_nr_regions=nr_regions[1]),
                  seed=1, adaptation=make_adaptation())
    rows = []                    # (end time, share of the hot range found, false hot bytes)

    def check(ctx, snapshot):
        t = snapshot.targets[0]
        lo = [a for since, a in HOT if since <= snapshot.start_us][-1]
        hot = t.nr_accesses >= snapshot.max_nr_accesses // 2
        inside = (t.end.clip(lo, lo + 256 * MiB) - t.start.clip(lo, lo + 256 * MiB))[hot]
        rows.append((snapshot.end_us, inside.sum() / (256 * MiB),
                     (t.end - t.start)[hot].sum() - inside.sum(), t.start.size))
    ctx.add_callback(check)
    ctx.run(duration_us=END_US)
    found_at = next((end for end, share, _, _ in rows if end > MOVE_US and share >= 0.9), None)
    return (statistics.median(share for _, share, _, _ in rows[10:]),
            None if found_at is None else (found_at - MOVE_US) / 1e6,
            max(false for _, _, false, _ in rows[10:]) / MiB,
            statistics.mean(n for *_, n in rows))


for name, (make, nr_regions) in ADAPTATIONS.items():
    found, after_move, false_hot, regions = evaluate(make, nr_regions)
    moved = "never" if after_move is None else f"{after_move:.1f} s"
    print(f"{name:>10}: {found:4.0%} of the hot range found (median); 90% of it {moved} "
          f"after the move; false hot at most {false_hot:.0f} MiB; {regions:.0f} regions")
