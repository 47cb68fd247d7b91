"""Monitor a real process with perf page-fault samples and print its hot address ranges.

Starts a child that maps 256 MiB, touches it all once, then keeps faulting all over the
64 MiB at offset 128 MiB (it drops those pages and touches them again in random order).
A context samples the child's page faults through perf (this host has no idle page
tracking, so faults are the access source; needs root) for 3 s and prints the ranges of
the last aggregation accessed in at least half as many samples as the most accessed one.
"""
import subprocess
import sys

from damoncore import Attrs, Context, Target
from damoncore.ops.perf import PerfOps

MiB = 1 << 20
CHILD = """
import ctypes, mmap, random
m = mmap.mmap(-1, 256 << 20)
for off in range(0, 256 << 20, mmap.PAGESIZE):
    m[off] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
hot = memoryview(m)[128 << 20:192 << 20]
offsets = list(range(0, 64 << 20, mmap.PAGESIZE))
random.shuffle(offsets)
while True:
    m.madvise(mmap.MADV_DONTNEED, 128 << 20, 64 << 20)
    for off in offsets:
        hot[off] = 1
"""

child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
base = int(child.stdout.readline())
snapshots = []
ctx = Context(PerfOps(), [Target(pid=child.pid)], Attrs(sample_us=5000, aggr_us=100_000),
              primitives=("page_fault",))
ctx.add_callback(lambda ctx, snapshot: snapshots.append(snapshot))
try:
    ctx.run(duration_us=3_000_000)
finally:
    child.kill()
    child.wait()

last = snapshots[-1].targets[0]
top = int(last.nr_accesses.max())       # hot: at least half as often accessed as the top
ranges = []                             # hot regions, adjacent ones merged
for start, end, nr in zip(last.start.tolist(), last.end.tolist(), last.nr_accesses.tolist()):
    if top and nr >= (top + 1) // 2 and ranges and ranges[-1][1] == start:
        ranges[-1][1] = end
    elif top and nr >= (top + 1) // 2:
        ranges.append([start, end])
print(f"child {child.pid}: 256 MiB mapped at {base:#x}, faulting in [+128 MiB, +192 MiB)")
print("hot in the last aggregation (offsets from the mapping):")
for start, end in ranges:
    print(f"  [{(start - base) / MiB:+.1f} MiB, {(end - base) / MiB:+.1f} MiB)  "
          f"{(end - start) / MiB:.1f} MiB")
