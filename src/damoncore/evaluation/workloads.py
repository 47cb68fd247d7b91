"""The evaluation's workloads: simulated processes whose truly hot bytes are known.

Each workload is one process (pid :data:`PID`) with one mapping, built from the simulator's
streams (:mod:`damoncore.sim.workloads`): hot ranges touched at :data:`HOT_RATE` accesses/s
per page over a :data:`COLD_RATE` background, Zipf popularity by page order, sequential
scans.  A builder takes the seed (offsets that move are drawn from it) and returns the
:class:`~damoncore.sim.Workload` and the times its hot set changes (phase starts, the first
at 0).  Times are multiples of 100 ms so phase changes fall on aggregation boundaries of
the default 100 ms aggregation interval, except ``heap-moving``'s, which fall anywhere in
one as a real workload's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..sim.workloads import DEFAULT_BASE, Accessor, Mapping, Process, Stream, Workload

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PID = 1000
HOT_RATE = 500.0          # accesses/s/page of a hot range: touched in ~92% of 5 ms samples
COLD_RATE = 0.1           # the background: touched in 0.05% of samples
S = 1_000_000             # one second in microseconds
_ACC = Accessor("cpu0", 0, cpu=0, tid=PID)


@dataclass(frozen=True)
class EvalWorkload:
    """``build(seed) -> (Workload, [phase start us])``; ``size``: bytes of the mapping;
    ``duration_us``: how long the evaluation runs it."""

    name: str
    description: str
    size: int
    duration_us: int
    build: Callable


def _process(size):
    return Process(PID, (Mapping(DEFAULT_BASE, DEFAULT_BASE + size),), node=0)


def _hot(off, size, rate=HOT_RATE):
    return Stream(_ACC, PID, DEFAULT_BASE + off, DEFAULT_BASE + off + size, rate)


def _cold(size):
    return Stream(_ACC, PID, DEFAULT_BASE, DEFAULT_BASE + size, COLD_RATE)


def _phased(size, phases, extra=()):
    """``phases``: [(t_us, [(offset, hot size), ...])] over the cold background."""
    wl = Workload([_process(size)],
                  [(t, [_hot(o, h) for o, h in hots] + [_cold(size)] + list(extra))
                   for t, hots in phases])
    return wl, [t for t, _ in phases]


def _offsets(rng, size, sizes, align=4 * KiB):
    """Non-overlapping random offsets (multiples of ``align``) for ranges of ``sizes``."""
    while True:
        offs = [int(rng.integers(0, (size - h) // align)) * align for h in sizes]
        spans = sorted(zip(offs, sizes))
        if all(a + h <= b for (a, h), (b, _) in zip(spans, spans[1:])):
            return offs


# --- builders (module level: worker processes import them by name) ------------------------
MOVING_OFFSETS = (512 * MiB, 3 * GiB + 128 * MiB, 1 * GiB + 640 * MiB, 2 * GiB + 256 * MiB)


def moving(seed):
    """256 MiB of 4 GiB hot, jumping every 10 s (the fixed offsets of the first study)."""
    return _phased(4 * GiB, [(i * 10 * S, [(o, 256 * MiB)]) for i, o in
                             enumerate(MOVING_OFFSETS)])


def small_moving(seed):
    """Two small hot ranges in 8 GiB, 64 MiB and 32 MiB (0.78% and 0.39% of the space),
    both jumping to random offsets every 5 s (8 phases)."""
    rng = np.random.default_rng([seed, 1])
    sizes = (64 * MiB, 32 * MiB)
    return _phased(8 * GiB, [(i * 5 * S, list(zip(_offsets(rng, 8 * GiB, sizes), sizes)))
                             for i in range(8)])


def _zipf(s):
    def build(seed):
        size = 4 * GiB
        wl = Workload([_process(size)], [(0, [Stream(_ACC, PID, DEFAULT_BASE,
                                                     DEFAULT_BASE + size, 50.0, "zipf", s)])])
        return wl, [0]
    build.__name__ = build.__qualname__ = f"zipf_{s}"
    return build


def scan(seed):
    """A 128 MiB hot range moving every 10 s to random offsets, and a sequential scan over
    the whole 4 GiB every 2 s (each page touched once per sweep: never truly hot, it tests
    whether an algorithm reports or chases the scan pointer)."""
    rng = np.random.default_rng([seed, 2])
    size, period = 4 * GiB, 2 * S
    sweep = Stream(_ACC, PID, DEFAULT_BASE, DEFAULT_BASE + size, S / period, "scan",
                   period_us=period)
    return _phased(size, [(i * 10 * S, [(_offsets(rng, size, [128 * MiB])[0], 128 * MiB)])
                          for i in range(4)], extra=[sweep])


PHASE_SIZES = (512 * MiB, 32 * MiB, 1 * GiB, 8 * MiB, 256 * MiB, 64 * MiB, 2 * GiB, 16 * MiB)


def phases(seed):
    """One hot range per 5 s phase, of sizes 512, 32, 1024, 8, 256, 64, 2048, 16 MiB at
    random offsets of 4 GiB: phase changes from 0.2% to 50% of the space."""
    rng = np.random.default_rng([seed, 3])
    size = 4 * GiB
    return _phased(size, [(i * 5 * S, [(_offsets(rng, size, [h])[0], h)])
                          for i, h in enumerate(PHASE_SIZES)])


GROW_SIZES = (16, 32, 64, 128, 256, 512, 1024, 512, 256, 128, 64, 32, 16)


def grow_shrink(seed):
    """A hot set that grows from a random start, 16 MiB doubling to 1 GiB, and shrinks back
    (3 s steps) in 4 GiB."""
    rng = np.random.default_rng([seed, 4])
    size = 4 * GiB
    off = _offsets(rng, size, [1 * GiB])[0]
    return _phased(size, [(i * 3 * S, [(off, h * MiB)]) for i, h in enumerate(GROW_SIZES)])


HEAP_OFFSETS = (192, 96, 288, 32, 224, 320, 128)      # MiB, where the hot range may jump


def heap_moving(seed):
    """The guest comparison's workload as a process sees it (benchmarks/vm_compare_kdamond.py):
    a 32 MiB hot range in a 384 MiB buffer jumping every 4 s, at a random point of an
    aggregation, in a 1152 MiB mapping whose last part holds a heap of 40 hot 16 KiB
    objects 64 KiB apart (the interpreter's: tiny regions reading hot and idle in turn)."""
    rng = np.random.default_rng([seed, 5])
    offs = [0] + [int(o) * MiB for o in rng.permutation(HEAP_OFFSETS)[:5]]
    late = rng.integers(0, 100, len(offs)) * 1000
    heap = [(400 * MiB + j * 64 * KiB, 16 * KiB) for j in range(40)]
    return _phased(1152 * MiB, [(i * 4 * S + (int(late[i]) if i else 0),
                                 [(o, 32 * MiB)] + heap) for i, o in enumerate(offs)])


WORKLOADS = {w.name: w for w in (
    EvalWorkload("moving", moving.__doc__.split("(")[0].strip(), 4 * GiB, 40 * S, moving),
    EvalWorkload("small-moving", "two hot ranges of 0.78% and 0.39% of 8 GiB jumping every 5 s",
                 8 * GiB, 40 * S, small_moving),
    EvalWorkload("zipf-0.8", "Zipf(0.8) by page order over 4 GiB, mean 50 accesses/s/page",
                 4 * GiB, 40 * S, _zipf(0.8)),
    EvalWorkload("zipf-1.0", "Zipf(1.0) by page order over 4 GiB, mean 50 accesses/s/page",
                 4 * GiB, 40 * S, _zipf(1.0)),
    EvalWorkload("zipf-1.2", "Zipf(1.2) by page order over 4 GiB, mean 50 accesses/s/page",
                 4 * GiB, 40 * S, _zipf(1.2)),
    EvalWorkload("scan", "128 MiB hot moving every 10 s under a 2 s sequential sweep of 4 GiB",
                 4 * GiB, 40 * S, scan),
    EvalWorkload("phases", "one hot range per 5 s phase, 8 MiB to 2 GiB, random offsets in 4 GiB",
                 4 * GiB, 40 * S, phases),
    EvalWorkload("grow-shrink", "hot set growing 16 MiB -> 1 GiB and back in 3 s steps (4 GiB)",
                 4 * GiB, 39 * S, grow_shrink),
    EvalWorkload("heap-moving", "32 MiB hot jumping every 4 s mid-aggregation, beside a heap "
                 "of 40 hot 16 KiB objects (1152 MiB)", 1152 * MiB, 24 * S, heap_moving),
)}
