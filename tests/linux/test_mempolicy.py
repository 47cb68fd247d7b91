"""Weighted-interleave weights (fixture tree and, as root, this kernel's sysfs) and the
set_mempolicy/mbind/get_mempolicy wrappers on the real kernel."""

import ctypes
import mmap
import os

import numpy as np
import pytest

from damoncore.errors import FeatureMissing, InvalidConfig, SyscallError
from damoncore.linux import mempolicy as mp
from damoncore.linux.errors import NodeUnavailable

PAGE = mmap.PAGESIZE
HAVE_WI = mp.has_weighted_interleave("/sys")
needs_wi = pytest.mark.skipif(not HAVE_WI, reason="kernel without weighted interleave (< 6.9)")


@pytest.fixture
def fake_sysfs(tmp_path):
    d = tmp_path / mp.WEIGHTS_DIR
    d.mkdir(parents=True)
    for n, w in ((0, 1), (1, 1), (3, 4)):
        (d / f"node{n}").write_text(f"{w}\n")
    (d / "auto").write_text("true\n")
    return tmp_path


def test_read_and_write_weights_in_a_fixture_tree(fake_sysfs):
    root = str(fake_sysfs)
    assert mp.read_weights(root) == {0: 1, 1: 1, 3: 4}
    assert mp.read_auto(root) is True
    mp.write_weights({0: 10, 1: 3}, root)
    assert mp.read_weights(root) == {0: 10, 1: 3, 3: 4}
    mp.write_auto(False, root)
    assert mp.read_auto(root) is False


def test_the_c23_auto_spelling_is_found(fake_sysfs):
    d = fake_sysfs / mp.WEIGHTS_DIR
    (d / "auto").unlink()
    assert mp.read_auto(str(fake_sysfs)) is None          # a 6.9 .. 6.15 kernel
    (d / "__auto_type").write_text("false\n")
    assert mp.read_auto(str(fake_sysfs)) is False


def test_preserved_weights_restores_weights_and_auto(fake_sysfs):
    root = str(fake_sysfs)
    with mp.preserved_weights(root) as saved:
        assert saved == {0: 1, 1: 1, 3: 4}
        mp.write_weights({0: 7, 3: 2}, root)
        mp.write_auto(False, root)
    assert mp.read_weights(root) == {0: 1, 1: 1, 3: 4}
    assert mp.read_auto(root) is True


@pytest.mark.parametrize("weights, exc, word", [
    ({0: 0}, InvalidConfig, "1..255"),
    ({0: 256}, InvalidConfig, "1..255"),
    ({2: 5}, NodeUnavailable, "node 2"),
])
def test_bad_weights_are_refused_before_any_write(fake_sysfs, weights, exc, word):
    root = str(fake_sysfs)
    with pytest.raises(exc, match=word):
        mp.write_weights({1: 9, **weights}, root)
    assert mp.read_weights(root)[1] == 1


def test_missing_sysfs_dir_names_the_feature(tmp_path):
    for call in (lambda: mp.read_weights(str(tmp_path)),
                 lambda: mp.write_weights({0: 1}, str(tmp_path))):
        with pytest.raises(FeatureMissing, match=r"MPOL_WEIGHTED_INTERLEAVE \(Linux >= 6.9\)"):
            call()
    with pytest.raises(FeatureMissing, match=str(tmp_path)):
        mp.read_weights(str(tmp_path))


def test_write_refused_by_the_kernel_is_a_syscall_error(fake_sysfs):
    d = fake_sysfs / mp.WEIGHTS_DIR / "node0"
    d.unlink()
    d.mkdir()               # open(..., "w") on a directory fails like a refused write
    with pytest.raises(SyscallError, match="node0"):
        mp.write_weights({0: 3}, str(fake_sysfs))


@pytest.fixture
def anon_range():
    m = mmap.mmap(-1, 64 * PAGE)
    buf = ctypes.c_char.from_buffer(m)
    yield m, ctypes.addressof(buf)
    del buf
    m.close()


@needs_wi
def test_mbind_weighted_interleave_is_read_back(anon_range):
    m, addr = anon_range
    assert mp.get_mempolicy(addr) == (mp.MPOL_DEFAULT, [])
    mp.mbind_weighted_interleave(addr, 64 * PAGE, [0], move=True)
    assert mp.get_mempolicy(addr) == (mp.MPOL_WEIGHTED_INTERLEAVE, [0])
    m[:] = b"x" * len(m)
    got = mp.sample_node_bytes(os.getpid(), [addr], [addr + 64 * PAGE], nr_nodes=1)
    assert got.tolist() == [[64 * PAGE]]


@needs_wi
def test_set_mempolicy_weighted_interleave_for_this_thread():
    try:
        mp.set_weighted_interleave([0])
        assert mp.get_mempolicy() == (mp.MPOL_WEIGHTED_INTERLEAVE, [0])
    finally:
        mp.set_mempolicy(mp.MPOL_DEFAULT)
    assert mp.get_mempolicy() == (mp.MPOL_DEFAULT, [])


def test_bad_node_is_a_syscall_error_or_a_missing_feature(anon_range, tmp_path):
    _, addr = anon_range
    # node 900 has no memory: EINVAL; with weighted interleave present that is the caller's
    # mistake, without the sysfs dir it means the kernel lacks the mode
    if HAVE_WI:
        with pytest.raises(SyscallError, match="mbind.*nodes=\\[900\\]") as ei:
            mp.mbind_weighted_interleave(addr, 64 * PAGE, [900])
        assert ei.value.errno == 22
    with pytest.raises(FeatureMissing, match="Linux >= 6.9"):
        mp.mbind_weighted_interleave(addr, 64 * PAGE, [900], sysfs_root=str(tmp_path))
    with pytest.raises(InvalidConfig, match="out of range"):
        mp.set_weighted_interleave([5000])
    with pytest.raises(InvalidConfig, match="mode"):
        mp.set_mempolicy(7)


def test_sample_node_bytes_counts_only_present_pages(anon_range):
    m, addr = anon_range
    m[: 32 * PAGE] = b"y" * (32 * PAGE)            # first half present, second never touched
    got = mp.sample_node_bytes(os.getpid(), [addr, addr + 32 * PAGE],
                               [addr + 32 * PAGE, addr + 64 * PAGE], nr_nodes=2,
                               samples_per_range=8)
    assert got.tolist() == [[32 * PAGE, 0.0], [0.0, 0.0]]


def test_stride_samples_are_jittered_one_per_stride():
    first, npg, k = np.array([1000, 5000], np.uint64), np.array([2048, 10]), 16
    got = mp.stride_samples(first, npg, k, seed=3)
    assert got.shape == (2, k)
    off = (got - first[:, None]).astype(np.int64)
    assert ((off >= 0) & (off < npg[:, None])).all()
    # one per stride of the 2048-page range: evenly spaced samples would all be 64 pages
    # apart (same parity, same residue mod any interleave period dividing 64)
    assert (off[0] // 128 == np.arange(k)).all()
    assert len(set((off[0] % 4).tolist())) >= 3
    assert (mp.stride_samples(first, npg, k, seed=3) == got).all()      # seeded


def test_sample_node_bytes_exact_and_sampled_agree_on_one_node(anon_range):
    m, addr = anon_range
    m[:] = b"z" * len(m)
    starts = [addr, addr + 16 * PAGE]
    ends = [addr + 16 * PAGE, addr + 64 * PAGE]
    exact = mp.sample_node_bytes(os.getpid(), starts, ends, nr_nodes=1)
    sampled = mp.sample_node_bytes(os.getpid(), starts, ends, nr_nodes=1, max_exact_pages=0,
                                   samples_per_range=4)
    assert exact.tolist() == sampled.tolist() == [[16 * PAGE], [48 * PAGE]]
