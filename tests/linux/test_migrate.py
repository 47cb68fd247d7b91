"""move_pages(2) on a real child process."""

import subprocess
import sys

import numpy as np
import pytest
from linux_helpers import PAGE

from damoncore.errors import TargetGone
from damoncore.linux.migrate import move_pages, move_range, page_addrs, query_pages
from damoncore.linux.errors import NodeUnavailable

N = 64


def test_query_finds_node0_and_enoent_for_untouched(make_child):
    c = make_child(N)
    c.touch(0, N // 2)
    st = query_pages(c.pid, page_addrs(c.addr, c.addr + c.size, PAGE))
    assert st.dtype == np.int32 and st.shape == (N,)
    assert (st[: N // 2] == 0).all()
    assert (st[N // 2 :] == -2).all()  # -ENOENT: never faulted in


def test_move_to_node0_succeeds(make_child):
    c = make_child(N)
    c.touch()
    addrs = page_addrs(c.addr, c.addr + c.size, PAGE)
    src = query_pages(c.pid, addrs)
    res = move_pages(c.pid, addrs, 0, src_nodes=src)
    assert (res.status == 0).all()
    assert res.nr_moved == N and res.errors == {}
    assert res.bytes_moved == {(0, 0): N * PAGE}


def test_move_range_counts_unmapped_as_enoent(make_child):
    c = make_child(N)
    c.touch(0, 10)
    res = move_range(c.pid, c.addr, c.addr + c.size, 0, page_size=PAGE)
    assert res.nr_moved == 10
    assert res.errors == {"ENOENT": N - 10}
    # An address in no mapping at all (below mmap_min_addr) is counted too, not raised.
    beyond = np.array([PAGE], dtype=np.uint64)
    res = move_pages(c.pid, np.concatenate([page_addrs(c.addr, c.addr + PAGE), beyond]), 0)
    assert res.status[0] == 0 and res.status[1] < 0
    assert sum(res.errors.values()) == 1


def test_per_page_node_array_and_chunking(make_child):
    c = make_child(N)
    c.touch()
    addrs = page_addrs(c.addr, c.addr + c.size, PAGE)
    res = move_pages(c.pid, addrs, np.zeros(N, dtype=np.int64), chunk=7)
    assert res.nr_moved == N


def test_offline_node_raises_naming_it(make_child):
    c = make_child(4)
    c.touch()
    with pytest.raises(NodeUnavailable, match="node 1 ") as ei:
        move_range(c.pid, c.addr, c.addr + c.size, 1)
    assert ei.value.node == 1
    assert isinstance(ei.value, ValueError)


def test_kernel_rejects_node_even_without_upfront_check(make_child, tmp_path):
    """A stale sysfs view (fixture says node 1 has memory) still gives a clear error."""
    node_dir = tmp_path / "devices/system/node"
    node_dir.mkdir(parents=True)
    (node_dir / "has_memory").write_text("0-1\n")
    c = make_child(4)
    c.touch()
    with pytest.raises(NodeUnavailable, match="node 1 "):
        move_range(c.pid, c.addr, c.addr + c.size, 1, sysfs_root=str(tmp_path))


def test_exited_pid_is_target_gone():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(TargetGone):
        query_pages(p.pid, np.array([0x10000], dtype=np.uint64))
    with pytest.raises(TargetGone):
        move_pages(p.pid, np.array([0x10000], dtype=np.uint64), 0)
