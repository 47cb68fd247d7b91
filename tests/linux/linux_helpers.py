"""Helpers of the Linux wrapper tests: a real child process with one mapping of N pages,
driven over a pipe; smaps parsing; the root requirement.  (A module of its own, not
conftest, so test files import it by a name no other test folder uses.)"""

import os
import subprocess
import sys

import pytest

PAGE = os.sysconf("SC_PAGE_SIZE")

CHILD = r"""
import ctypes, mmap, sys
n, kind = int(sys.argv[1]), sys.argv[2]
if kind == "anon":
    m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
else:
    f = open(kind, "rb")
    m = mmap.mmap(f.fileno(), n * mmap.PAGESIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_NOHUGEPAGE)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m)) if kind == "anon" else None
if addr is None:
    # A read-only mapping cannot be exported as a writable buffer; find it in /proc/self/maps.
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith(kind):
            addr = int(line.split("-")[0], 16)
print(addr, n * mmap.PAGESIZE, flush=True)
x = 0
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "touch":
        a, b = int(args[0]), int(args[1])
        for i in range(a * mmap.PAGESIZE, b * mmap.PAGESIZE, mmap.PAGESIZE):
            if kind == "anon":
                m[i] = 1
            else:
                x += m[i]
    print("ok", flush=True)
"""


class Child:
    """A child process holding ``npages`` pages at ``addr`` (bytes); anon or a file mapping."""

    def __init__(self, npages, kind="anon"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(npages), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        addr, size = self.proc.stdout.readline().split()
        self.pid, self.addr, self.size, self.npages = self.proc.pid, int(addr), int(size), npages

    def touch(self, first=0, last=None):
        """Fault in pages ``[first, last)`` (indices) and wait until done."""
        last = self.npages if last is None else last
        self.proc.stdin.write(f"touch {first} {last}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def smaps_entry(pid, addr):
    """The /proc/PID/smaps fields (kB values converted to bytes) of the mapping at ``addr``."""
    out, inside = {}, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= addr < end
            elif inside and line.rstrip().endswith("kB"):
                key, val, _ = line.split()
                out[key.rstrip(":")] = int(val) * 1024
    return out


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SYS_ADMIN)")
