"""Cost of page-fault sampling to the sampled process: its fault rate unmonitored vs monitored.

The child maps fresh anonymous memory and writes one byte per page (numpy strided store, so the
loop is all page faults), timing itself; the monitored runs drain the rings in a thread the way a
monitor would.  Run:

    PYTHONPATH=src python -m pytest benchmarks/bench_perf.py --benchmark-enable -q
    PYTHONPATH=src python benchmarks/bench_perf.py      # prints faults/s and the slowdown
"""

import statistics
import subprocess
import sys
import threading

import pytest

from damoncore.linux.perf import PageFaultSampler

NR_PAGES = 1 << 15  # 128 MiB per round
CHILD = r"""
import mmap, sys, time
import numpy as np
n = int(sys.argv[1])
print("ready", flush=True)
for _ in sys.stdin:
    m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    a = np.frombuffer(m, dtype=np.uint8)
    t0 = time.perf_counter()
    a[:: mmap.PAGESIZE] = 1
    dt = time.perf_counter() - t0
    del a
    m.close()
    print(dt, flush=True)
"""


class Faulter:
    """A child that faults ``NR_PAGES`` fresh pages per ``round()`` and returns the seconds taken."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(NR_PAGES)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def round(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class Drainer:
    """Reads the sampler's rings in a thread until stopped; counts samples."""

    def __init__(self, sampler):
        self.sampler, self.nr_samples = sampler, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.nr_samples += self.sampler.read(timeout_s=0.05)["addr"].size
        self.nr_samples += self.sampler.read()["addr"].size

    def stop(self):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def faulter():
    f = Faulter()
    f.round()  # warm up the allocator and numpy
    yield f
    f.close()


def test_unmonitored(benchmark, faulter):
    times = []
    benchmark.pedantic(lambda: times.append(faulter.round()), rounds=5)
    benchmark.extra_info["faults_per_s"] = NR_PAGES / min(times)


@pytest.mark.parametrize("period", [1, 4])
def test_monitored(benchmark, faulter, period):
    times = []
    with PageFaultSampler(pid=faulter.pid, sample_period=period) as s:
        d = Drainer(s)
        benchmark.pedantic(lambda: times.append(faulter.round()), rounds=5)
        d.stop()
        benchmark.extra_info["faults_per_s"] = NR_PAGES / min(times)
        benchmark.extra_info["samples"] = d.nr_samples
        benchmark.extra_info["lost"] = s.lost


def main(rounds=9, periods=(1, 4)):
    """Interleave unmonitored and monitored rounds (the machine is shared) and compare medians."""
    f = Faulter()
    times = {p: [] for p in (None,) + tuple(periods)}
    lost = {p: 0 for p in periods}
    samples = {p: 0 for p in periods}
    try:
        f.round()
        for _ in range(rounds):
            times[None].append(f.round())
            for p in periods:
                with PageFaultSampler(pid=f.pid, sample_period=p) as s:
                    d = Drainer(s)
                    times[p].append(f.round())
                    d.stop()
                    lost[p] += s.lost
                    samples[p] += d.nr_samples
    finally:
        f.close()
    plain = NR_PAGES / statistics.median(times[None])
    print(f"unmonitored            {plain:12,.0f} faults/s (median of {rounds})")
    for p in periods:
        rate = NR_PAGES / statistics.median(times[p])
        print(f"monitored, period {p:<4} {rate:12,.0f} faults/s  slowdown {plain / rate - 1:6.1%}"
              f"  samples {samples[p]:,} lost {lost[p]:,}")


if __name__ == "__main__":
    main()
