"""The native sample path (ops/_idle_sample.pyx via Context.begin_samples) against the generic
per-sample path: the same RNG stream and the same kernel answers must give the same regions,
counters, snapshots and scheme stats.

The kernel here is files: a fake procfs (``<pid>/pagemap`` with crafted entries, ``<pid>/maps``)
and an idle bitmap that answers from a fixed pattern.  The bitmap file is opened with O_APPEND,
so the marking pwrites land past its end (Linux appends on pwrite with O_APPEND) while the
reads keep returning the pattern: a frame reads idle (not accessed) or not by its bit, sample
after sample, on both paths.  The answers come through the same syscalls as the real bitmap's
(the real interface runs in the guest: tests/vm/test_native_vm.py).
"""

import os
import sys
import threading
import time

import numpy as np
import pytest

from damoncore.core import Attrs, Context, Target
from damoncore.core.attrs import IntervalsGoal
from damoncore.linux.page_idle import FileIO, PageIdle
from damoncore.ops.vaddr import VaddrOps
from damoncore.schemes.scheme import AccessPattern, Scheme

PAGE = os.sysconf("SC_PAGE_SIZE")
NR_PFNS = 1 << 18
PRESENT = 1 << 63
# (start page, nr pages): two ranges of target 0 (explicit), one VMA pair for target 1
# (from maps), and a VMA that appears in maps after the third aggregation
A = (0x10000, 16384)
B = (0x14000, 4096)
C = (0x20000, 2048)
D = (0x22000, 1024)
LATE = (0x30000, 2048)


def vma(r):
    return r[0] * PAGE, (r[0] + r[1]) * PAGE


class World:
    """Fake procfs + idle-bitmap answers, built from ``seed``: pages in 1 MiB chunks of
    different hotness, 10% of pages absent, frames shared by several pages now and then."""

    def __init__(self, root, seed):
        rng = np.random.default_rng(seed)
        self.root, self.pid = root, os.getpid()
        words = rng.integers(0, 1 << 63, NR_PFNS // 64, dtype=np.uint64)
        words |= rng.integers(0, 2, NR_PFNS // 64, dtype=np.uint64) << np.uint64(63)
        self.answers = words.astype("<u8").tobytes()
        p = np.arange(NR_PFNS, dtype=np.uint64)
        idle = (words[(p // 64).astype(np.int64)] >> (p % np.uint64(64))) & np.uint64(1)
        busy, quiet = p[idle == 0], p[idle == 1]
        first = min(r[0] for r in (A, B, C, D, LATE))
        last = max(r[0] + r[1] for r in (A, B, C, D, LATE))
        ent = np.zeros(last - first, np.uint64)
        chunk = 256                                     # pages of one hotness
        for r in (A, B, C, D, LATE):
            n = r[1]
            hot = np.repeat(rng.choice([0.0, 0.05, 0.5, 0.95, 1.0], -(-n // chunk)), chunk)[:n]
            acc = rng.random(n) < hot
            pf = np.where(acc, rng.choice(busy, n), rng.choice(quiet, n))
            present = rng.random(n) < 0.9
            ent[r[0] - first:r[0] - first + n] = np.where(present, pf | np.uint64(PRESENT), 0)
        self.entries, self.first = ent, first

    def make(self, name):
        """A fresh copy (procfs dir, bitmap path) for one run."""
        d = self.root / name / str(self.pid)
        d.mkdir(parents=True)
        with open(d / "pagemap", "wb") as f:
            f.seek(self.first * 8)
            f.write(self.entries.tobytes())
        self.write_maps(d, late=False)
        bitmap = self.root / name / "bitmap"
        bitmap.write_bytes(self.answers)
        return self.root / name, bitmap

    @staticmethod
    def write_maps(d, late):
        lines = [f"{a:x}-{b:x} rw-p 00000000 00:00 0" for a, b in map(vma, (C, D))]
        if late:
            lines.append("%x-%x rw-p 00000000 00:00 0" % vma(LATE))
        (d / "maps").write_text("\n".join(lines) + "\n")


def answering_bitmap(path):
    """A PageIdle whose marks append past the answers (see the module docstring)."""
    io = FileIO(str(path))
    os.close(io.fd)
    io.fd = os.open(path, os.O_RDWR | os.O_APPEND)
    pi = PageIdle(io=io)
    assert pi.raw_fd is not None, "a plain FileIO: the C loops may use it"
    return pi


def run(world, name, native, attrs, nr_aggrs, schemes=(), primitives=("page_table",),
        reports_at=(), adaptation=None):
    root, bitmap = world.make(name)
    ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap), native=native)
    t0 = Target(pid=world.pid, ranges=[vma(A), vma(B)])
    t1 = Target(pid=world.pid)                          # ranges from maps, refit on update
    ctx = Context(ops, [t0, t1], attrs, schemes=[s() for s in schemes],
                  primitives=primitives, seed=11,
                  adaptation=None if adaptation is None else adaptation())
    out = {"snaps": [], "sampler": None}

    def cb(c, snap):
        out["snaps"].append((c.passed_sample_intervals, snap.sample_us, snap.aggr_us,
                             [(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(),
                               t.age.tolist(), None if t.nr_reports is None
                               else t.nr_reports.tolist()) for t in snap.targets]))
        n = len(out["snaps"])
        if n == 3:
            World.write_maps(root / str(world.pid), late=True)
        if n in reports_at:          # reports pushed in the loop's thread: deterministic
            a, b = vma(A)
            c.report_access(np.arange(a, b, 64 * PAGE, dtype=np.uint64), time_us=None)
        out["sampler"] = out["sampler"] or c.ops.native_sampler(c)
        return n >= nr_aggrs

    ctx.add_callback(cb)
    ctx.run()
    out["regions"] = [{c: getattr(t.regions, c).tolist() for c in
                       ("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses",
                        "age")} for t in ctx.targets]
    out["passed"] = ctx.passed_sample_intervals
    out["rng"] = int(ctx.rng[0])
    out["stats"] = [vars(s.stats) for s in ctx.schemes]
    out["adaptation"] = ctx.adaptation
    return out


class CountDueScheme(Scheme):
    """A scheme due by sample count only.  Schemes are also due by the clock (when the loop
    runs late), which depends on how long each path takes per sample: compared here on the
    count rule alone; test_scheme_due_by_the_clock checks the clock rule."""

    def reschedule(self, ctx):
        super().reschedule(ctx)
        self.next_apply_us = None


def stat_every(samples, sample_us):
    return lambda: CountDueScheme(AccessPattern(min_nr_accesses=1), action="stat",
                                  apply_interval_us=samples * sample_us)


CASES = {
    # kernel defaults' shape: 20 samples an aggregation, an ops update every 3 aggregations
    "plain": dict(attrs=Attrs(200, 4_000, 12_000, 10, 300), nr_aggrs=12),
    # a scheme due every 7 samples (not a multiple of the aggregation), a second every 13
    "schemes": dict(attrs=Attrs(200, 4_000, 30_000, 10, 300), nr_aggrs=10,
                    schemes=(stat_every(7, 200), stat_every(13, 200))),
    # intervals auto-tuning changes sample_us (and so the native loop's deadlines) on the way
    "tuning": dict(attrs=Attrs(300, 6_000, 50_000, 10, 300,
                               IntervalsGoal(access_bp=2000, aggrs=2, min_sample_us=100,
                                             max_sample_us=2_000)), nr_aggrs=10),
    # page-fault reports next to the idle checks: pending reports end a native run
    "reports": dict(attrs=Attrs(200, 4_000, 12_000, 10, 300), nr_aggrs=8,
                    primitives=("page_table", "page_fault"), reports_at=(2, 5)),
}


def _assert_same_run(native, generic, kw):
    """The native run did what the generic one did, sample for sample, mostly in C."""
    assert generic["sampler"] is None
    s = native["sampler"].sampler
    # most sample ends ran in C: all but one per aggregation/ops update/scheme apply/report
    assert s.nr_ends >= native["passed"] // 3, (s.nr_ends, native["passed"])
    assert native["passed"] == generic["passed"]
    assert len(native["snaps"]) == len(generic["snaps"]) == kw["nr_aggrs"]
    for k, (g, n) in enumerate(zip(generic["snaps"], native["snaps"])):
        assert n == g, f"aggregation {k} differs"
    assert native["regions"] == generic["regions"]
    assert native["stats"] == generic["stats"]
    assert native["rng"] == generic["rng"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_native_equals_generic(tmp_path, case, seed):
    world = World(tmp_path, seed)
    kw = CASES[case]
    generic = run(world, "generic", False, **kw)
    native = run(world, "native", True, **kw)
    _assert_same_run(native, generic, kw)
    # the answers were not trivial: some regions hot, some cold, some in between
    nr = np.concatenate([np.array(t[2]) for t in native["snaps"][-1][3]])
    mx = native["snaps"][-1][2] // native["snaps"][-1][1]
    assert (nr == 0).any() and (nr >= mx * 0.9).any() and ((nr > 0) & (nr < mx * 0.9)).any()


class RecordingScheme(Scheme):
    def reschedule(self, ctx):
        self.applied_at = getattr(self, "applied_at", []) + [ctx.passed_sample_intervals]
        super().reschedule(ctx)


@pytest.mark.parametrize("native", [False, True])
def test_scheme_due_by_the_clock(tmp_path, native):
    """A loop slower than its interval (every sample takes its work on top of sample_us)
    applies a scheme when its interval has passed on the clock, before the sample count says
    so; a native run must end there and leave the apply to Python."""
    world = World(tmp_path, 8)
    root, bitmap = world.make("c")
    ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap), native=native)
    s = RecordingScheme(AccessPattern(), action="stat", apply_interval_us=50 * 200)
    # one aggregation a second: only the scheme and the clock decide when Python runs
    ctx = Context(ops, [Target(pid=world.pid, ranges=[vma(A)])],
                  Attrs(200, 1_000_000, 100_000_000, 10, 10), schemes=[s])
    keep = {}
    orig = s.reschedule

    def resched(c):
        orig(c)
        keep["s"] = keep.get("s") or c.ops.native_sampler(c)
        if len(s.applied_at) >= 6:
            c.stop()
    s.reschedule = resched
    ctx.run()
    applies = s.applied_at[1:]                  # [0]: scheduled at start
    gaps = [b - a for a, b in zip(s.applied_at, applies)]
    assert len(applies) >= 5 and all(g <= 50 for g in gaps), s.applied_at
    assert any(g < 50 for g in gaps), f"never due by the clock first: {s.applied_at}"
    if native:
        assert keep["s"].sampler.nr_ends > len(applies) * 10


def test_late_vma_is_monitored_after_the_ops_update(tmp_path):
    world = World(tmp_path, 3)
    out = run(world, "n", True, Attrs(200, 4_000, 12_000, 10, 300), 9)
    lo, hi = vma(LATE)
    starts = out["regions"][1]["start"]
    assert any(lo <= a < hi for a in starts), "the VMA added to maps got regions"


def test_native_runs_are_long_and_python_calls_per_sample_few(tmp_path):
    """One aggregation of 100 samples: the native path makes O(1) Python calls per run, the
    generic path dozens per sample (sys.setprofile counts every call)."""
    world = World(tmp_path, 4)
    calls = {}
    for native in (False, True):
        root, bitmap = world.make(f"p{native}")
        ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap), native=native)
        ctx = Context(ops, [Target(pid=world.pid, ranges=[vma(A)])],
                      Attrs(100, 10_000, 10_000_000, 10, 100))
        ctx.add_callback(lambda c, s: c.nr_aggregations >= 3)
        n = [0]

        def prof(frame, event, arg):
            if event in ("call", "c_call"):
                n[0] += 1
        sys.setprofile(prof)
        try:
            ctx.run()
        finally:
            sys.setprofile(None)
        calls[native] = n[0] / ctx.passed_sample_intervals
    assert calls[False] > 20 and calls[True] < 5, calls


def test_stop_from_another_thread_ends_a_native_wait(tmp_path):
    world = World(tmp_path, 5)
    root, bitmap = world.make("s")
    ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap))
    # 1000 s samples: without a wakeup the run would sleep through the first one
    ctx = Context(ops, [Target(pid=world.pid, ranges=[vma(A)])],
                  Attrs(1_000_000_000, 2_000_000_000, 4_000_000_000, 10, 100))
    timer = threading.Timer(0.3, ctx.stop)
    timer.start()
    ctx.run()
    timer.join()
    assert ctx.passed_sample_intervals == 0, "stopped inside the first sample's wait"
    assert ops._native is None, "cleanup dropped the sampler"


def test_report_from_another_thread_ends_the_native_run_and_counts(tmp_path):
    world = World(tmp_path, 6)
    root, bitmap = world.make("r")
    ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap))
    t = Target(pid=world.pid, ranges=[vma(A)])
    ctx = Context(ops, [t], Attrs(20_000, 2_000_000, 100_000_000, 10, 10),
                  primitives=("page_table", "page_fault"))
    a, b = vma(A)
    got = []

    def cb(c, snap):
        got.append(snap.targets[0].nr_reports.copy())
        return True
    ctx.add_callback(cb)

    def push():
        time.sleep(0.5)
        ctx.report_access(np.full(5, a + PAGE, np.uint64))
    th = threading.Thread(target=push)
    th.start()
    ctx.run()
    th.join()
    assert got and int(got[0][0]) == 5, "the five reports counted in the first region"


def test_target_exit_ends_monitoring_cleanly(make_child, tmp_path):
    """A real process: its pidfd ends the native wait; the generic end marks it obsolete."""
    c = make_child(64)
    c.touch()
    world = World(tmp_path, 7)
    _, bitmap = world.make("x")
    ops = VaddrOps(page_idle=answering_bitmap(bitmap))
    t = Target(pid=c.pid, ranges=[(c.addr, c.end)])
    ctx = Context(ops, [t], Attrs(200_000, 20_000_000, 100_000_000, 10, 10))
    threading.Timer(0.5, c.exit).start()
    ctx.run(duration_us=60_000_000)
    assert t.obsolete and ctx.stopped.is_set()
    assert ctx.passed_sample_intervals < 300, "ended at the exit, not at the duration"


def test_python_backends_keep_the_generic_path():
    from damoncore.ops.sim import SimOps
    from damoncore.ops.base import Operations
    assert Operations().native_sampler(None) is None
    assert SimOps.native_sampler is Operations.native_sampler


# --- paddr: physical ranges, the idle answers per frame, and the LRU check (kpageflags) ----

def paddr_run(tmp_path, name, native, seed, nr_aggrs=8):
    from damoncore.ops.paddr import PaddrOps
    rng = np.random.default_rng(seed)
    d = tmp_path / name
    (d / "proc").mkdir(parents=True)
    words = rng.integers(0, 1 << 63, NR_PFNS // 64, dtype=np.uint64)
    # hot and cold stretches of frames: idle bits all 0 or all 1 over 4096-frame blocks
    block = rng.choice([0, 1, 2], NR_PFNS // 4096)
    per_word = np.repeat(block, 4096 // 64)
    words = np.where(per_word == 0, np.uint64(0), np.where(per_word == 1, ~np.uint64(0), words))
    (d / "bitmap").write_bytes(words.astype("<u8").tobytes())
    flags = np.where(rng.random(NR_PFNS) < 0.8, 1 << 5, 1 << 10).astype(np.uint64)  # LRU/BUDDY
    flags.tofile(d / "proc" / "kpageflags")
    ops = PaddrOps(procfs_root=str(d / "proc"), page_idle=answering_bitmap(d / "bitmap"),
                   native=native)
    targets = [Target(ranges=[(0, NR_PFNS // 2 * PAGE)]),
               Target(ranges=[(NR_PFNS // 2 * PAGE, NR_PFNS * PAGE)])]
    ctx = Context(ops, targets, Attrs(200, 4_000, 12_000, 10, 300), seed=5)
    snaps, keep = [], {}

    def cb(c, snap):
        snaps.append([(t.start.tolist(), t.nr_accesses.tolist(), t.age.tolist())
                      for t in snap.targets])
        keep["s"] = keep.get("s") or c.ops.native_sampler(c)
        return len(snaps) >= nr_aggrs
    ctx.add_callback(cb)
    ctx.run()
    return snaps, [t.regions.nr_accesses_bp.tolist() for t in targets], keep.get("s")


@pytest.mark.parametrize("seed", [0, 1])
def test_paddr_native_equals_generic(tmp_path, seed):
    g_snaps, g_bp, g_s = paddr_run(tmp_path, "g", False, seed)
    n_snaps, n_bp, n_s = paddr_run(tmp_path, "n", True, seed)
    assert g_s is None and n_s.sampler.nr_ends > 100 and n_s.sampler.nr_kpageflags_reads > 0
    assert n_snaps == g_snaps and n_bp == g_bp
    nr = np.concatenate([np.array(t[1]) for t in n_snaps[-1]])
    assert (nr == 0).any() and (nr > 0).any()


def test_an_adaptation_watching_every_sample_without_rows_keeps_the_generic_path(tmp_path):
    from damoncore.core.adaptation import KernelAdaptation

    class Watching(KernelAdaptation):
        name = "watching"
        nr = 0

        def sampled(self, ctx, accessed):
            self.nr += 1

    world = World(tmp_path, 9)
    root, bitmap = world.make("w")
    ops = VaddrOps(procfs_root=str(root), page_idle=answering_bitmap(bitmap))
    ad = Watching()
    ctx = Context(ops, [Target(pid=world.pid, ranges=[vma(A)])],
                  Attrs(200, 4_000, 100_000, 10, 100), adaptation=ad)
    ctx.add_callback(lambda c, s: c.nr_aggregations >= 3)
    ctx.run()
    assert ad.nr == ctx.passed_sample_intervals == 60


# --- adaptations that keep every sample (Adaptation.sampled + sample_rows) ------------------

class RowsRecorder:
    """Mixin: keeps every aggregation's rows (as Adaptation.sampled saw them) at its merge."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen = []
        self.rows = {}

    def sample_rows(self, ctx):
        from damoncore.core.adaptation import SampleRows
        out = []
        for i, t in enumerate(ctx.targets):
            s = self.rows.get(i)
            if s is None or s.key is not t.regions.start:
                s = self.rows[i] = SampleRows(t.regions.start, t.regions.nr,
                                              ctx.attrs.aggr_samples)
            out.append(None if t.obsolete else s)
        return out

    def sampled(self, ctx, accessed):
        for s, t, acc in zip(self.sample_rows(ctx), ctx.targets, accessed):
            if s is not None:
                s.record(t.regions.sampling_addr, acc)

    def merge(self, ctx, threshold):
        self.seen.append([(s.k, s.addrs[:s.k].tolist(), s.accessed[:s.k].tolist())
                          for _, s in sorted(self.rows.items())])
        self.rows = {}
        super().merge(ctx, threshold)


def recording_kernel():
    from damoncore.core.adaptation import KernelAdaptation
    return type("RecordingKernel", (RowsRecorder, KernelAdaptation), {"name": "rec"})()


def edge_split():
    from damoncore.core.edge_split import EdgeSplit
    return EdgeSplit()


def recording_edge_split():
    from damoncore.core.edge_split import EdgeSplit

    class Rec(EdgeSplit):       # what edge-split's own rows hold at each merge
        def __init__(self):
            super().__init__()
            self.seen = []

        def merge(self, ctx, threshold):
            self.seen.append([(s.k, s.addrs[:s.k].tolist(), s.accessed[:s.k].tolist())
                              for _, s in sorted(self._samples.items())])
            super().merge(ctx, threshold)
    return Rec()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("adaptation", [recording_kernel, edge_split, recording_edge_split])
@pytest.mark.parametrize("case", ["plain", "schemes", "reports"])
def test_per_sample_adaptation_native_equals_generic(tmp_path, case, adaptation, seed):
    """An adaptation that keeps every sample (edge-split) runs on the native path, its rows
    written by the C loop, and gives exactly what the generic path (sampled()) gives."""
    world = World(tmp_path, seed)
    kw = CASES[case]
    generic = run(world, "generic", False, adaptation=adaptation, **kw)
    native = run(world, "native", True, adaptation=adaptation, **kw)
    _assert_same_run(native, generic, kw)
    seen = getattr(native["adaptation"], "seen", None)
    if seen is not None:
        assert seen == generic["adaptation"].seen
        # one row per sample (an ops update mid-way starts new rows for a refit target;
        # target 0's explicit ranges keep theirs), most of them written in C
        assert all(k > 0 for agg in seen for k, _, _ in agg)
        assert all(agg[0][0] == kw["attrs"].aggr_samples for agg in seen), seen
    if adaptation is edge_split:        # the regions moved off the kernel's: cuts happened
        kernel = run(world, "kernel", True, **kw)
        assert kernel["regions"] != native["regions"]
