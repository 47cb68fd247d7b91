"""damoncore.arrays: the whole-array helpers against numpy's own functions, and the runtime
paths' freedom from ``numpy.ma`` (np.unique imports it on first use: ~1 s in the TCG guest,
paid inside a paddr ``start``'s first scheme apply)."""
import os
import subprocess
import sys

import numpy as np
from hypothesis import given, settings, strategies as st

from damoncore.arrays import unique

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=60),
       st.sampled_from([np.uint64, np.int64, np.uint32, np.int32]))
def test_unique_is_np_unique(values, dtype):
    info = np.iinfo(dtype)
    a = np.array([v % (int(info.max) + 1) for v in values], dtype=np.uint64).astype(dtype)
    got = unique(a)
    want = np.unique(a)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


def test_unique_flattens_and_takes_lists():
    assert unique([[3, 1], [3, 2]]).tolist() == [1, 2, 3]
    assert unique([]).tolist() == []
    assert unique(np.array([7], np.uint64)).tolist() == [7]


def test_runtime_paths_do_not_import_numpy_ma():
    """The helpers the sample and apply paths call (idle-bitmap word runs, the apply's
    region splits, the owner index's extents, the node_eligible_mem_bp goal's bytes per
    node) leave numpy.ma unimported: a plain np.unique on them would import it."""
    code = """
import sys
import numpy as np
from damoncore.linux import page_idle
from damoncore.schemes.apply import _split_at_addrs
from damoncore.ops.rmap import Extents
from damoncore.core.regions import Regions
pfns = np.array([5, 3, 3, 900, 64], np.uint64)
page_idle.word_runs(pfns)
page_idle._Layout(pfns, 16)
r = Regions([0], [1 << 20])
_split_at_addrs(r, [4096, 8192, 4096], 4096)
assert r.nr == 3, r.nr
Extents(np.array([9, 1, 2], np.uint64), np.array([40, 10, 30], np.uint64),
        np.array([1, 2, 3], np.uint64))
from damoncore.ops.base import Operations
class Nodes(Operations):
    def node_ranges(self, ctx, target, starts, ends):
        return [0, 8192, 4096], [4096, 12288, 8192], [1, 0, 1]
assert Nodes().node_bytes(None, None, [], []) == {0: 4096, 1: 8192}
print("numpy.ma" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False"]
