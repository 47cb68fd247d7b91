"""Idle bitmap batching against a fixture file with the kernel's write semantics."""

import os

import numpy as np
import pytest

from damoncore.errors import FeatureMissing
from damoncore.linux.page_idle import BITMAP_PATH, FileIO, PageIdle, word_runs

NR_PFNS = 1 << 16


class KernelLikeBitmap(FileIO):
    """A regular file that ORs written words in, as the kernel's bitmap does (0 bits ignored)."""

    def pwrite(self, data, offset):
        assert offset % 8 == 0 and len(data) % 8 == 0, "kernel rejects unaligned access"
        old = np.frombuffer(os.pread(self.fd, len(data), offset).ljust(len(data), b"\0"), "<u8")
        new = old | np.frombuffer(data, "<u8")
        return os.pwrite(self.fd, new.tobytes(), offset)

    def pread(self, nbytes, offset):
        assert offset % 8 == 0 and nbytes % 8 == 0, "kernel rejects unaligned access"
        return super().pread(nbytes, offset)

    def access(self, pfns):
        """What the workload does: touching a page clears its idle bit."""
        words = np.frombuffer(os.pread(self.fd, NR_PFNS // 8, 0), "<u8").copy()
        p = np.asarray(pfns, dtype=np.uint64)
        np.bitwise_and.at(words, (p // 64).astype(np.int64), ~(np.uint64(1) << (p % 64)))
        os.pwrite(self.fd, words.tobytes(), 0)


class RecordingBitmap(KernelLikeBitmap):
    """Also records every syscall as ``(call, first_word, nr_words)``."""

    def __init__(self, path):
        super().__init__(path)
        self.calls = []

    def pwrite(self, data, offset):
        self.calls.append(("pwrite", offset // 8, len(data) // 8))
        return super().pwrite(data, offset)

    def pread(self, nbytes, offset):
        self.calls.append(("pread", offset // 8, nbytes // 8))
        return super().pread(nbytes, offset)


@pytest.fixture
def bitmap(tmp_path):
    path = tmp_path / "bitmap"
    path.write_bytes(b"\0" * (NR_PFNS // 8))
    io = RecordingBitmap(str(path))
    yield io
    io.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mark_then_access_then_read(bitmap, seed):
    rng = np.random.default_rng(seed)
    pfns = rng.choice(NR_PFNS, size=3000, replace=False).astype(np.uint64)
    others = np.setdiff1d(np.arange(NR_PFNS, dtype=np.uint64), pfns)
    pi = PageIdle(io=bitmap)
    pi.mark_idle(pfns)
    assert pi.read_idle(pfns).all()
    assert not pi.read_idle(others).any(), "marking must not set bits of other frames"
    accessed = pfns[rng.random(pfns.size) < 0.3]
    bitmap.access(accessed)
    got = pi.read_idle(pfns)
    assert (got == ~np.isin(pfns, accessed)).all()


def test_a_sample_step_costs_a_handful_of_syscalls(bitmap):
    # Three dense clusters of 4096 frames each: one pwrite and one pread per cluster.
    pfns = np.concatenate([np.arange(b, b + 4096) for b in (0, 20000, 50000)]).astype(np.uint64)
    pi = PageIdle(io=bitmap)
    pi.mark_idle(pfns[::-1])
    assert pi.nr_syscalls == 3
    idle = pi.read_idle(pfns)
    assert idle.all() and pi.nr_syscalls == 6


@pytest.mark.parametrize("small_batch", [0, 1 << 20])       # numpy plan, plain-Python plan
@pytest.mark.parametrize("nr", [1, 10, 200, 5000])
def test_syscalls_stay_bounded(bitmap, small_batch, nr):
    # Writes: one per cluster of words no more than max_gap_words apart.  Reads: one per run of
    # adjacent words, never covering a word without a requested frame (the kernel would walk
    # the rmap of every idle frame in it).
    rng = np.random.default_rng(nr)
    pfns = rng.choice(NR_PFNS, size=nr, replace=False).astype(np.uint64)
    pi = PageIdle(io=bitmap, max_gap_words=4)
    pi.small_batch = small_batch
    words = np.unique(pfns // 64).astype(np.int64)
    pi.mark_idle(pfns)
    assert pi.nr_syscalls == 1 + int((np.diff(words) > 5).sum())
    assert pi.nr_syscalls <= nr
    pi.read_idle(pfns)
    reads = [c for c in bitmap.calls if c[0] == "pread"]
    assert len(reads) == pi.nr_syscalls - (len(bitmap.calls) - len(reads))
    assert len(reads) == 1 + int((np.diff(words) > 1).sum())
    covered = np.concatenate([np.arange(w, w + n) for _, w, n in reads])
    assert np.array_equal(np.sort(covered), words)


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_python_and_numpy_plans_agree(bitmap, seed):
    rng = np.random.default_rng(seed)
    pfns = np.concatenate([rng.choice(NR_PFNS, 40), rng.integers(1000, 1100, 20)]).astype(np.uint64)
    probe = np.concatenate([pfns, rng.choice(NR_PFNS, 40), [NR_PFNS + 7]]).astype(np.uint64)
    results, calls = [], []
    for small_batch in (0, 1 << 20):
        bitmap.calls.clear()
        os.pwrite(bitmap.fd, b"\0" * (NR_PFNS // 8), 0)
        pi = PageIdle(io=bitmap)
        pi.small_batch = small_batch
        pi.mark_idle(pfns)
        bitmap.access(pfns[::3])
        results.append(pi.read_idle(probe))
        calls.append(list(bitmap.calls))
    assert np.array_equal(results[0], results[1])
    assert calls[0] == calls[1]
    assert np.array_equal(results[0], np.isin(probe, pfns) & ~np.isin(probe, pfns[::3]))


def test_read_keeps_order_and_duplicates(bitmap):
    pi = PageIdle(io=bitmap)
    pi.mark_idle([5, 700])
    assert pi.read_idle([700, 6, 5, 700]).tolist() == [True, False, True, True]


def test_word_runs_bridge_small_gaps():
    p, spans = word_runs([0, 64 * 3, 64 * 100], max_gap_words=4)
    assert spans == [(0, 4, 0, 2), (100, 1, 2, 3)]


@pytest.mark.parametrize("small_batch", [0, 1 << 20])
def test_frames_past_end_read_not_idle(bitmap, small_batch):
    pi = PageIdle(io=bitmap)
    pi.small_batch = small_batch
    assert not pi.read_idle([NR_PFNS + 100]).any()
    pi.mark_idle([NR_PFNS - 1, 5])
    # NR_PFNS - 1 and NR_PFNS + 1 share one two-word pread, which comes back one word short
    got = pi.read_idle([NR_PFNS + 100, NR_PFNS - 1, NR_PFNS + 1, 5])
    assert got.tolist() == [False, True, False, True]


@pytest.mark.skipif(os.path.exists(BITMAP_PATH), reason="this kernel has idle page tracking")
def test_real_path_missing_is_feature_missing():
    with pytest.raises(FeatureMissing, match="CONFIG_IDLE_PAGE_TRACKING"):
        PageIdle()
