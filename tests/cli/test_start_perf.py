"""``start --target_pid P --sample_primitives page_fault``: real perf page-fault monitoring
of a live process from the command line, recorded and read back."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from damoncore.records import read_records

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))

CHILD = textwrap.dedent("""
    import mmap, sys, time
    m = mmap.mmap(-1, 256 << 20)
    import ctypes
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    print(addr, flush=True)
    end = time.time() + 20
    while time.time() < end:
        m.madvise(mmap.MADV_DONTNEED)       # every touch faults again
        for off in range(0, 256 << 20, 4096):
            m[off] = 1
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="perf sampling of another process needs root")
def test_perf_page_fault_monitoring_of_a_live_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        base = int(child.stdout.readline())
        out = tmp_path / "damon.data"
        p = subprocess.run([sys.executable, "-m", "damoncore.cli.main", "start",
                            "--target_pid", str(child.pid), "--sample_primitives", "page_fault",
                            "--duration", "3s", "--no_status_socket", "--quiet",
                            "--record", str(out)],
                           env=dict(os.environ, PYTHONPATH=SRC), capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    finally:
        child.kill()
        child.wait()
    recs = read_records(str(out))
    snaps = [s for r in recs for s in r.snapshots]
    # 30 aggregations are due in 3 s; a loaded 2-core machine (CI shares its cores) has
    # delivered as few as 5 in 2 s, so ask only for several, not for the schedule
    assert len(snaps) >= 3
    last = snaps[-1].targets[0]
    acc = last.nr_accesses > 0
    assert acc.any()
    # accessed regions lie in (or overlap) the child's faulting buffer
    s, e = last.start[acc], last.end[acc]
    inside = (e > np.uint64(base)) & (s < np.uint64(base + (256 << 20)))
    covered = np.minimum(e, np.uint64(base + (256 << 20))) - np.maximum(s, np.uint64(base))
    assert inside.all() or int(covered[inside].sum()) >= 0.9 * int((e - s).sum())
