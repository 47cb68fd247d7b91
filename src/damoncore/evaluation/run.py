"""One cell of the grid: one algorithm monitoring one workload with one seed, scored at every
aggregation against the simulator's ground truth.

Ground truth comes from the machine's rate map: a page is truly hot when its access rate
makes it touched in half of the sample intervals or more (``rate >= ln 2 / sample``, 139
accesses/s at 5 ms), the same bar as "``nr_accesses`` >= half of the snapshot's maximum"
used for a region reported hot (for a saturated maximum).  Per aggregation:

- ``coverage``: share of the truly hot bytes inside reported-hot regions;
- ``false_hot``: share of the other bytes inside reported-hot regions;
- ``nr_regions``: regions in the snapshot; ``checks_per_sample``: sampling addresses the
  backend checked per sample interval (the monitor's cost on a real machine);
- ``cpu_us_per_sample``: the monitor's own CPU time per sample (core loop and adaptation,
  this thread), without the simulated backend's time and without the scoring.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.adaptation import Adaptation
from ..core.adaptations import ADAPTATIONS
from ..core.attrs import Attrs
from ..core.context import Context
from ..core.target import Target
from ..errors import InvalidConfig
from ..ops.sim import SimOps
from ..sim.extents import KEY_SHIFT, U64
from ..sim.presets import tiering_machine
from .workloads import PID, WORKLOADS

VADDR_MASK = (1 << KEY_SHIFT) - 1

#: the columns of every row, in order (the tidy table's header)
COLUMNS = ("algorithm", "adaptation", "min_nr_regions", "max_nr_regions", "sample_us",
           "aggr_us", "workload", "seed", "t_s", "phase", "aggr_in_phase", "hot_bytes",
           "coverage", "false_hot", "nr_regions", "checks_per_sample", "cpu_us_per_sample")
#: columns that are measurements of this machine's speed (the rest is a function of the cell)
TIMING_COLUMNS = ("cpu_us_per_sample",)


@dataclass(frozen=True)
class Cell:
    """One run: ``adaptation`` (a name of :data:`~damoncore.core.adaptation.ADAPTATIONS`
    or an importable "module:Class", built with ``options``), the monitoring attributes, a
    workload name, a seed.  ``label``: the algorithm's name in tables (default
    "<adaptation> <min>-<max>"); ``duration_us``: shorter (or longer) than the workload's
    own schedule."""

    adaptation: str
    workload: str
    seed: int
    min_nr_regions: int = 10
    max_nr_regions: int = 1000
    sample_us: int = 5000
    aggr_us: int = 100_000
    label: str = ""
    options: dict = field(default_factory=dict)
    duration_us: int = 0          # 0: the workload's own duration

    @property
    def algorithm(self) -> str:
        return self.label or f"{self.adaptation} {self.min_nr_regions}-{self.max_nr_regions}"

    def attrs(self) -> Attrs:
        return Attrs(sample_us=self.sample_us, aggr_us=self.aggr_us,
                     min_nr_regions=self.min_nr_regions, max_nr_regions=self.max_nr_regions)

    def to_dict(self) -> dict:
        return asdict(self)


def make_adaptation(name: str, **options):
    """An adaptation instance from a registered name or an importable ``module:Class``."""
    if name in ADAPTATIONS:
        return ADAPTATIONS[name](**options)
    if ":" in name:
        import importlib
        mod, _, cls = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError, ValueError) as e:
            raise InvalidConfig(f"adaptation {name!r}: cannot import it ({e})") from e
        if not (isinstance(obj, type) and issubclass(obj, Adaptation)):
            raise InvalidConfig(f"adaptation {name!r}: not a subclass of Adaptation")
        return obj(**options)
    raise InvalidConfig(f"unknown adaptation {name!r} (known: {', '.join(ADAPTATIONS)}, "
                        f"or module:Class)")


class _MeteredSimOps(SimOps):
    """SimOps that keeps its own CPU time and counts the sampling addresses it checks."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cpu_s = 0.0
        self.checks = 0

    def _timed(self, fn, *a):
        t0 = time.thread_time()
        try:
            return fn(*a)
        finally:
            self.cpu_s += time.thread_time() - t0

    def prepare_access_checks(self, ctx):
        self.checks += sum(t.regions.nr for t in ctx.active_targets)
        return self._timed(super().prepare_access_checks, ctx)

    def check_accesses(self, ctx):
        return self._timed(super().check_accesses, ctx)

    def target_valid(self, target):
        return self._timed(super().target_valid, target)

    def update(self, ctx):
        return self._timed(super().update, ctx)


def _truth(m, t_us, true_hot_rate):
    """(breakpoints, cumulative truly-hot bytes at each) of the process' address space."""
    rm = m.ratemap(t_us)
    pk = U64(m.pidx(PID))
    b = rm.b
    mine = (b[:-1] >> U64(KEY_SHIFT)) == pk
    s = (b[:-1][mine] & U64(VADDR_MASK)).astype(np.int64)
    e = np.where((b[1:][mine] >> U64(KEY_SHIFT)) == pk,
                 (b[1:][mine] & U64(VADDR_MASK)).astype(np.int64), np.int64(VADDR_MASK))
    hot = rm.total[mine] >= true_hot_rate
    cum = np.concatenate([[0], np.cumsum(np.where(hot, e - s, 0))])
    return np.concatenate([s, e[-1:]]), cum


def _hot_below(bps, cum, x):
    """Truly-hot bytes of the address space below each address of ``x``."""
    x = np.asarray(x, np.int64)
    k = np.clip(np.searchsorted(bps, x, side="right") - 1, 0, len(bps) - 2)
    seg_hot = (cum[k + 1] - cum[k]) > 0
    return cum[k] + np.where(seg_hot, np.clip(x - bps[k], 0, bps[k + 1] - bps[k]), 0)


def score(start, end, nr_accesses, max_nr_accesses, bps, cum, space_bytes):
    """(coverage, false_hot, truly hot bytes) of one snapshot's regions."""
    hot = nr_accesses >= max(1, max_nr_accesses // 2)
    in_hot = _hot_below(bps, cum, end) - _hot_below(bps, cum, start)
    size = (end - start).astype(np.int64)
    hot_bytes = int(in_hot.sum())
    cov = float(in_hot[hot].sum() / hot_bytes) if hot_bytes else float("nan")
    cold = space_bytes - hot_bytes
    fh = float((size[hot] - in_hot[hot]).sum() / cold) if cold else float("nan")
    return cov, fh, hot_bytes


def run_cell(cell: Cell) -> list:
    """Run one cell; its rows (tuples in :data:`COLUMNS` order), one per aggregation."""
    if isinstance(cell, dict):
        cell = Cell(**cell)
    if cell.workload not in WORKLOADS:
        raise InvalidConfig(f"unknown workload {cell.workload!r} (known: "
                            f"{', '.join(WORKLOADS)})")
    w = WORKLOADS[cell.workload]
    attrs = cell.attrs()
    attrs.validate()
    wl, changes = w.build(cell.seed)
    m = tiering_machine(16 * (1 << 30), 16 * (1 << 30), seed=cell.seed)
    m.add_workload(wl)
    ops = _MeteredSimOps(m, space="vaddr", pid=PID)
    ctx = Context(ops, [Target(pid=PID)], attrs, seed=cell.seed,
                  adaptation=make_adaptation(cell.adaptation, **cell.options))
    true_hot_rate = float(np.log(2) / (attrs.sample_us / 1e6))
    head = (cell.algorithm, cell.adaptation, attrs.min_nr_regions, attrs.max_nr_regions,
            attrs.sample_us, attrs.aggr_us, cell.workload, cell.seed)
    rows = []
    last = {"cpu": time.thread_time(), "ops": 0.0, "checks": 0, "samples": 0}

    def cb(ctx, snap):
        cpu = time.thread_time()
        samples = ctx.passed_sample_intervals - last["samples"]
        core = (cpu - last["cpu"]) - (ops.cpu_s - last["ops"])
        checks = (ops.checks - last["checks"]) / max(1, samples)
        t = snap.targets[0]
        ph = max(i for i, t0 in enumerate(changes) if t0 < snap.end_us)
        bps, cum = _truth(m, snap.end_us - 1, true_hot_rate)
        cov, fh, hot_bytes = score(t.start, t.end, t.nr_accesses, snap.max_nr_accesses,
                                   bps, cum, w.size)
        rows.append(head + (round(snap.end_us / 1e6, 3), ph,
                            (snap.end_us - changes[ph]) // attrs.aggr_us, hot_bytes,
                            round(cov, 6), round(fh, 6), len(t.start), round(checks, 3),
                            round(1e6 * core / max(1, samples), 3)))
        last.update(samples=ctx.passed_sample_intervals, ops=ops.cpu_s, checks=ops.checks)
        last["cpu"] = time.thread_time()

    ctx.add_callback(cb)
    ctx.run(cell.duration_us or w.duration_us)
    return rows
