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


@pytest.fixture
def bitmap(tmp_path):
    path = tmp_path / "bitmap"
    path.write_bytes(b"\0" * (NR_PFNS // 8))
    io = KernelLikeBitmap(str(path))
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


def test_read_keeps_order_and_duplicates(bitmap):
    pi = PageIdle(io=bitmap)
    pi.mark_idle([5, 700])
    assert pi.read_idle([700, 6, 5, 700]).tolist() == [True, False, True, True]


def test_word_runs_bridge_small_gaps():
    p, spans = word_runs([0, 64 * 3, 64 * 100], max_gap_words=4)
    assert spans == [(0, 4, 0, 2), (100, 1, 2, 3)]


def test_frames_past_end_read_not_idle(bitmap):
    assert not PageIdle(io=bitmap).read_idle([NR_PFNS + 100]).any()


@pytest.mark.skipif(os.path.exists(BITMAP_PATH), reason="this kernel has idle page tracking")
def test_real_path_missing_is_feature_missing():
    with pytest.raises(FeatureMissing, match="CONFIG_IDLE_PAGE_TRACKING"):
        PageIdle()
