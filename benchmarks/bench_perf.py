"""Cost of page-fault sampling to the sampled process: its fault rate unmonitored vs monitored.

The child maps fresh anonymous memory and writes one byte per page (numpy strided store, so the
loop is all page faults), timing itself; the monitored runs drain the rings in a thread the way a
monitor would.  Run:

    PYTHONPATH=src python -m pytest benchmarks/bench_perf.py --benchmark-enable -q
    PYTHONPATH=src python benchmarks/bench_perf.py [ROUNDS]   # slowdown per sampler config
"""

import functools
import statistics
import subprocess
import sys
import threading

import pytest

from damoncore.linux import perf_ring as pr
from damoncore.linux.perf import DEFAULT_SAMPLE_PERIOD, PageFaultSampler

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
    t0, c0 = time.perf_counter(), time.thread_time()
    a[:: mmap.PAGESIZE] = 1
    dt, dc = time.perf_counter() - t0, time.thread_time() - c0
    del a
    m.close()
    print(dt, dc, flush=True)
"""


class Faulter:
    """A child that faults ``NR_PAGES`` fresh pages per ``round()`` and returns the seconds taken."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(NR_PAGES)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def round(self) -> float:
        """Wall seconds; ``last_cpu_s`` gets the CPU seconds (user + system) of the round."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        wall, self.last_cpu_s = (float(x) for x in self.proc.stdout.readline().split())
        return wall

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


@pytest.mark.parametrize("period", [1, DEFAULT_SAMPLE_PERIOD])
def test_monitored(benchmark, faulter, period):
    times = []
    with PageFaultSampler(pid=faulter.pid, sample_period=period) as s:
        d = Drainer(s)
        benchmark.pedantic(lambda: times.append(faulter.round()), rounds=5)
        d.stop()
        benchmark.extra_info["faults_per_s"] = NR_PAGES / min(times)
        benchmark.extra_info["samples"] = d.nr_samples
        benchmark.extra_info["lost"] = s.lost


def configs(tracefs=None):
    """Named sampler factories compared by ``main``: kernel-side cost knobs, one at a time."""
    full = pr.SAMPLE_IP | pr.SAMPLE_TID | pr.SAMPLE_TIME | pr.SAMPLE_ADDR | pr.SAMPLE_CPU
    sw = functools.partial(PageFaultSampler, ring_pages=256)
    out = {
        "p1 IP|TID|TIME|ADDR|CPU (old)": lambda pid: sw(pid=pid, sample_period=1, sample_type=full),
        "p1 TID|TIME|ADDR (default type)": lambda pid: sw(pid=pid, sample_period=1),
        "p1 TID|ADDR": lambda pid: sw(pid=pid, sample_period=1,
                                      sample_type=pr.SAMPLE_TID | pr.SAMPLE_ADDR),
        "p1 ADDR only (floor)": lambda pid: sw(pid=pid, sample_period=1,
                                               sample_type=pr.SAMPLE_ADDR),
        "p1 default, 8 MiB ring, wake 1/2": lambda pid: sw(pid=pid, sample_period=1,
                                                           ring_pages=2048,
                                                           wakeup_bytes=1024 * 4096),
        "event on, no samples": lambda pid: sw(pid=pid, sample_period=1 << 40),
        "p2 default type": lambda pid: sw(pid=pid, sample_period=2),
        f"p{DEFAULT_SAMPLE_PERIOD} default (DEFAULT)": lambda pid: sw(pid=pid),
        "p4 default type": lambda pid: sw(pid=pid, sample_period=4),
    }
    if tracefs is not None:
        tp = functools.partial(PageFaultSampler.tracepoint, tracefs_root=tracefs)
        out["tracepoint p1"] = lambda pid: tp(pid=pid, sample_period=1)
        out[f"tracepoint p{DEFAULT_SAMPLE_PERIOD}"] = lambda pid: tp(pid=pid)
    return out


def tracefs_mount():
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2] == "tracefs"]
    return mounts[0] if mounts else None


def main(rounds=15, names=None):
    """Each monitored round follows an unmonitored one (the machine is shared); medians.

    The slowdown is in the child's CPU time per fault (user + system, so the kernel's sampling
    work counts and other load on the machine does not); wall time is printed alongside.
    """
    cfg = configs(tracefs_mount())
    names = names or list(cfg)
    f = Faulter()
    cpu = {n: [] for n in [None] + names}
    wall = {n: [] for n in [None] + names}
    lost = dict.fromkeys(names, 0)
    samples = dict.fromkeys(names, 0)
    try:
        f.round()
        for _ in range(rounds):
            for n in names:
                wall[None].append(f.round())
                cpu[None].append(f.last_cpu_s)
                with cfg[n](f.pid) as s:
                    d = Drainer(s)
                    wall[n].append(f.round())
                    cpu[n].append(f.last_cpu_s)
                    d.stop()
                    lost[n] += s.lost
                    samples[n] += d.nr_samples
    finally:
        f.close()
    med = statistics.median
    pc, pw = med(cpu[None]), med(wall[None])
    print(f"unmonitored: {pc / NR_PAGES * 1e9:.0f} ns CPU/fault ({NR_PAGES / pw:,.0f} faults/s "
          f"wall), medians of {rounds} interleaved rounds of {NR_PAGES} faults")
    print(f"{'config':34s} {'CPU slowdown':>12s} {'ns/fault':>9s} {'wall':>7s} "
          f"{'samples/round':>13s} {'lost':>5s}")
    for n in names:
        c, w = med(cpu[n]), med(wall[n])
        print(f"{n:34s} {c / pc - 1:12.1%} {(c - pc) / NR_PAGES * 1e9:+9.0f} {w / pw - 1:7.1%} "
              f"{samples[n] / rounds:13,.0f} {lost[n]:5d}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
