"""pagemap and kpageflags agree with /proc/PID/smaps for a real child's mapping."""

import os

import numpy as np
import pytest
from linux_helpers import PAGE, requires_root, smaps_entry

from damoncore.errors import TargetGone
from damoncore.linux import kpageflags as kpf
from damoncore.linux.kpageflags import KPageFlags, contiguous_runs
from damoncore.linux.pagemap import Pagemap, file_or_shared, pfns, present

N = 256


def test_contiguous_runs():
    s, n = contiguous_runs(np.array([1, 2, 3, 7, 9, 10], dtype=np.uint64))
    assert s.tolist() == [1, 7, 9] and n.tolist() == [3, 1, 2]


@requires_root
@pytest.mark.parametrize("touched", [0, 37, N])
def test_anon_present_and_anon_match_smaps(make_child, touched):
    c = make_child(N)
    c.touch(0, touched)
    with Pagemap(c.pid, page_size=PAGE) as pm:
        ent = pm.read(c.addr, c.addr + c.size)
    sm = smaps_entry(c.pid, c.addr)
    assert ent.shape == (N,)
    pres = present(ent)
    assert pres.sum() * PAGE == sm["Rss"] == touched * PAGE
    assert pres[:touched].all() and not pres[touched:].any()
    assert not file_or_shared(ent).any()
    with KPageFlags() as kf:
        flags = kf.read(pfns(ent)[pres])
    assert kpf.has(flags, kpf.ANON).sum() * PAGE == sm["Anonymous"]
    assert not kpf.has(flags, kpf.THP).any()  # NOHUGEPAGE mapping
    # Bridging gaps must not change the answer (LRU state is live: compare stable bits only).
    stable = np.uint64((1 << kpf.ANON) | (1 << kpf.MMAP) | (1 << kpf.COMPOUND_HEAD))
    with KPageFlags() as kf:
        p = pfns(ent)[pres][::-1]
        for gap in (0, 3, 1 << 20):
            assert (kf.read(p, max_gap=gap) & stable == flags[::-1] & stable).all()


@requires_root
def test_file_mapping_is_file_and_not_anon(make_child, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(os.urandom(N * PAGE))
    c = make_child(N, kind=str(path))
    c.touch(0, N // 2)
    with Pagemap(c.pid, page_size=PAGE) as pm:
        ent = pm.read(c.addr, c.addr + c.size)
    sm = smaps_entry(c.pid, c.addr)
    pres = present(ent)
    assert pres.sum() * PAGE == sm["Rss"]
    assert pres[: N // 2].all()
    assert file_or_shared(ent[pres]).all()
    with KPageFlags() as kf:
        flags = kf.read(pfns(ent)[pres])
    assert not kpf.has(flags, kpf.ANON).any()
    assert kpf.has(flags, kpf.MMAP).all()


@requires_root
def test_kpageflags_read_matches_range_reads_with_duplicates():
    with KPageFlags() as kf:
        ref = kf.read_range(1000, 64)
        order = np.array([1063, 1000, 1010, 1010, 1001], dtype=np.uint64)
        assert (kf.read(order) == ref[(order - 1000).astype(np.int64)]).all()


def test_missing_process_is_target_gone(tmp_path):
    with pytest.raises(TargetGone):
        Pagemap(123456789, procfs_root=str(tmp_path))
