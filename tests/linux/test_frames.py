"""The C frame loops (linux/_frames.pyx) against the Python paths they replace.

File fixtures: a plain file stands for the bitmap or a pagemap; the C and the Python path must
leave identical bytes, return identical values and issue the same number of syscalls.  Then the
real /proc/self/pagemap.
"""

import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

from damoncore.errors import SyscallError, TargetGone
from damoncore.linux import _frames
from damoncore.linux.page_idle import FileIO, PageIdle
from damoncore.linux.pagemap import Pagemap

NR_PFNS = 1 << 16
PAGE = os.sysconf("SC_PAGE_SIZE")


class PythonIO(FileIO):
    """The same file, but not a plain FileIO: PageIdle takes its Python path."""


def random_file(path, nbytes, seed):
    data = np.random.default_rng(seed).integers(0, 1 << 63, nbytes // 8, dtype=np.uint64)
    path.write_bytes(data.astype("<u8").tobytes())
    return data


def frame_sets(seed):
    """Random PFN sets: scattered, dense runs, duplicates, unsorted, one word, empty."""
    rng = np.random.default_rng(seed)
    dense = np.arange(5000, 5000 + 700)
    yield rng.choice(NR_PFNS, 300)                                      # duplicates likely
    yield np.concatenate([dense, rng.choice(NR_PFNS, 50), dense[::7]])[::-1]
    yield rng.permutation(dense)
    yield np.array([63, 0, 63, 1])
    yield np.array([], dtype=np.uint64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("small_batch", [0, 1 << 20])
@pytest.mark.parametrize("max_gap", [0, 4, 16])
def test_idle_mark_and_read_match_python(tmp_path, seed, small_batch, max_gap):
    for k, pfns in enumerate(frame_sets(seed)):
        pfns = np.asarray(pfns, dtype=np.uint64)
        c_path, py_path = tmp_path / f"c{k}", tmp_path / f"py{k}"
        random_file(c_path, NR_PFNS // 8, seed)
        random_file(py_path, NR_PFNS // 8, seed)
        c = PageIdle(io=FileIO(str(c_path)), max_gap_words=max_gap, max_read_gap_words=max_gap)
        py = PageIdle(io=PythonIO(str(py_path)), max_gap_words=max_gap,
                      max_read_gap_words=max_gap)
        py.small_batch = small_batch
        assert c._in_c and not py._in_c
        c.mark_idle(pfns)
        py.mark_idle(pfns)
        assert c_path.read_bytes() == py_path.read_bytes()
        assert c.nr_syscalls == py.nr_syscalls
        probe = np.concatenate([pfns, np.random.default_rng(k).choice(NR_PFNS + 300, 200)])
        probe = probe.astype(np.uint64)                     # includes frames past the end
        got, want = c.read_idle(probe), py.read_idle(probe)
        assert got.dtype == bool and np.array_equal(got, want)
        assert c.nr_syscalls == py.nr_syscalls
        c.close()
        py.close()


def test_idle_read_matches_numpy_reference(tmp_path):
    words = random_file(tmp_path / "bm", NR_PFNS // 8, 7)
    pfns = np.random.default_rng(7).choice(NR_PFNS + 1000, 5000).astype(np.uint64)
    out = np.empty(pfns.size, np.uint8)
    fd = os.open(tmp_path / "bm", os.O_RDONLY)
    try:
        _frames.idle_read(fd, pfns, out)
    finally:
        os.close(fd)
    inside = pfns < NR_PFNS
    want = np.zeros(pfns.size, np.uint8)
    p = pfns[inside]
    want[inside] = (words[(p // 64).astype(np.int64)] >> (p % np.uint64(64))) & np.uint64(1)
    assert np.array_equal(out, want)


def test_idle_read_keeps_order_and_shape(tmp_path):
    (tmp_path / "bm").write_bytes(b"\0" * (NR_PFNS // 8))
    with PageIdle(io=FileIO(str(tmp_path / "bm"))) as pi:
        pi.mark_idle([5, 700])
        assert pi.read_idle([700, 6, 5, 700]).tolist() == [True, False, True, True]
        assert pi.read_idle(np.array([[5, 6], [700, 701]])).tolist() == [[True, False],
                                                                          [True, False]]
        assert pi.read_idle([]).shape == (0,)


def test_syscall_counts_one_per_span(tmp_path):
    (tmp_path / "bm").write_bytes(b"\0" * (NR_PFNS // 8))
    fd = os.open(tmp_path / "bm", os.O_RDWR)
    try:
        # words 0, 1 (adjacent), 3 (gap of 1), 100: spans with gap 0: {0,1}, {3}, {100}
        pfns = np.array([6400, 64 * 3, 1, 64, 2], np.uint64)
        assert _frames.idle_mark(fd, pfns, 0) == 3
        assert _frames.idle_mark(fd, pfns, 1) == 2
        assert _frames.idle_read(fd, pfns, np.empty(5, np.uint8), 0) == 3
    finally:
        os.close(fd)


def test_errors_name_the_syscall(tmp_path):
    (tmp_path / "bm").write_bytes(b"\0" * 64)
    fd = os.open(tmp_path / "bm", os.O_RDONLY)
    try:
        with pytest.raises(SyscallError) as ei:
            _frames.idle_mark(fd, np.array([3], np.uint64))
        assert ei.value.errno == 9 and ei.value.syscall == "pwrite"      # EBADF
    finally:
        os.close(fd)
    with pytest.raises(SyscallError) as ei:
        _frames.idle_read(fd, np.array([3], np.uint64), np.empty(1, np.uint8))
    assert ei.value.syscall == "pread"
    with pytest.raises(ValueError):
        _frames.pagemap_at(0, np.zeros(2, np.uint64), np.zeros(1, np.uint64))


@pytest.mark.parametrize("max_gap", [0, 1, 16])
def test_pagemap_at_matches_file_reference(tmp_path, max_gap):
    entries = random_file(tmp_path / "pm", 8 * 4096, 3)
    rng = np.random.default_rng(max_gap)
    pages = np.concatenate([rng.choice(4096 + 50, 400), np.arange(100, 140)[::-1]])
    pages = pages.astype(np.uint64)
    out = np.empty(pages.size, np.uint64)
    fd = os.open(tmp_path / "pm", os.O_RDONLY)
    try:
        nr_calls, nr_empty = _frames.pagemap_at(fd, pages, out, max_gap)
    finally:
        os.close(fd)
    want = np.where(pages < 4096, entries[np.minimum(pages, 4095).astype(np.int64)], 0)
    assert np.array_equal(out, want)
    u = np.unique(pages)
    span_starts = np.concatenate([u[:1], u[1:][np.diff(u) > max_gap + 1]])
    span_lasts = np.concatenate([u[:-1][np.diff(u) > max_gap + 1], u[-1:]])
    # a span that runs past the end is read on after its short read, which returns nothing
    straddling = int(((span_starts < 4096) & (span_lasts >= 4096)).sum())
    assert nr_calls == len(span_starts) + straddling
    assert nr_empty == int((span_starts >= 4096).sum()) > 0      # reads past the end


def test_entries_at_matches_read_on_self():
    nr = 256
    m = mmap.mmap(-1, nr * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf = np.frombuffer(m, np.uint8)
        buf[: nr * PAGE // 2: PAGE] = 1                      # first half present
        first = buf.ctypes.data // PAGE
        rng = np.random.default_rng(0)
        pages = (first + rng.choice(nr, 500)).astype(np.uint64)
        top = np.array([(1 << 47) // PAGE, first - 1, (1 << 47) // PAGE + 3], np.uint64)
        pages = np.concatenate([pages, top])
        with Pagemap(os.getpid()) as pm:
            full = pm.read(first * PAGE, (first + nr) * PAGE)
            for gap in (0, 1, 16):
                got = pm.entries_at(pages, gap)
                idx = (pages[:-3] - np.uint64(first)).astype(np.int64)
                assert np.array_equal(got[:-3], full[idx])
                assert got[-3] == 0 and got[-1] == 0           # beyond TASK_SIZE
                assert got[-2] == pm.read((first - 1) * PAGE, first * PAGE)[0]
            assert (got[:-3][idx < nr // 2] >> np.uint64(63)).all()    # present
    finally:
        del buf
        m.close()


def test_entries_at_on_exited_process_is_target_gone():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                         stdin=subprocess.PIPE)
    pm = Pagemap(p.pid)
    assert pm.entries_at([0, 1]).shape == (2,)
    p.stdin.close()
    p.wait(timeout=10)
    with pytest.raises(TargetGone):
        pm.entries_at([1 << 20, 5])
    pm.close()


KERNFS_BIN = "/sys/kernel/btf/vmlinux"      # a sysfs bin file, like the idle bitmap


@pytest.mark.skipif(not os.access(KERNFS_BIN, os.R_OK), reason=f"no readable {KERNFS_BIN}")
def test_reads_go_on_after_kernfs_short_reads():
    """kernfs hands out at most PAGE_SIZE bytes of a sysfs bin file per read: a span of words
    longer than that must be read on, not zero-filled (the idle bitmap at 1000s of regions)."""
    fd = os.open(KERNFS_BIN, os.O_RDONLY)
    try:
        assert len(os.pread(fd, 4 * PAGE, 0)) == PAGE, "kernfs no longer caps reads"
        raw = b"".join(os.pread(fd, PAGE, off) for off in range(0, 4 * PAGE, PAGE))
        words = np.frombuffer(raw, "<u8")
        idx = np.arange(words.size, dtype=np.uint64)[::-1].copy()
        out = np.empty(idx.size, np.uint64)
        nr_calls, nr_empty = _frames.pagemap_at(fd, idx, out)
        assert np.array_equal(out, words[idx.astype(np.int64)]) and nr_empty == 0
        assert nr_calls == 4                            # one span, four capped preads
        bits = np.empty(idx.size * 64, np.uint8)
        pfns = np.arange(idx.size * 64, dtype=np.uint64)
        _frames.idle_read(fd, pfns, bits)
        want = (words[(pfns // 64).astype(np.int64)] >> (pfns % np.uint64(64))) & np.uint64(1)
        assert np.array_equal(bits, want)
    finally:
        os.close(fd)


class CappedIO(PythonIO):
    """At most one page per pread/pwrite call, as kernfs does."""

    def pread(self, nbytes, offset):
        return super().pread(min(nbytes, PAGE), offset)

    def pwrite(self, data, offset):
        return super().pwrite(bytes(data[:PAGE]), offset)


def test_python_path_goes_on_after_short_transfers(tmp_path):
    (tmp_path / "c").write_bytes(b"\0" * (NR_PFNS // 8))
    (tmp_path / "py").write_bytes(b"\0" * (NR_PFNS // 8))
    pfns = np.arange(0, NR_PFNS, 3, dtype=np.uint64)    # one span of NR_PFNS / 64 words
    c = PageIdle(io=FileIO(str(tmp_path / "c")))
    py = PageIdle(io=CappedIO(str(tmp_path / "py")))
    c.mark_idle(pfns)
    py.mark_idle(pfns)
    assert (tmp_path / "c").read_bytes() == (tmp_path / "py").read_bytes()
    assert py.nr_syscalls == NR_PFNS // 8 // PAGE
    assert py.read_idle(pfns).all() and not py.read_idle(pfns + np.uint64(1)).any()
    c.close()
    py.close()
