"""Real child processes and an idle-bitmap fixture for the ops backend tests."""

import os
import subprocess
import sys

import numpy as np

from damoncore.linux.page_idle import FileIO

PAGE = os.sysconf("SC_PAGE_SIZE")

# One buffer of N pages (a spacer mapping after it); commands on stdin.  Anonymous, or with
# a file path a read-only shared mapping of that file (touch reads: clean page cache).
BUFFER_CHILD = r"""
import ctypes, mmap, sys
n = int(sys.argv[1])
path = sys.argv[2] if len(sys.argv) > 2 else None
if path is None:
    m = mmap.mmap(-1, n * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
else:
    f = open(path, "rb")
    m = mmap.mmap(f.fileno(), n * mmap.PAGESIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    addr = next(int(ln.split("-")[0], 16) for ln in open("/proc/self/maps")
                if ln.rstrip().endswith(path))
    m.madvise(mmap.MADV_RANDOM)     # no readahead: each fault reads one small folio
m.madvise(mmap.MADV_NOHUGEPAGE)
spacer = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ)
maps = []
x = 0
print(addr, flush=True)
for line in sys.stdin:
    cmd, *a = line.split()
    if cmd == "touch":
        for i in range(int(a[0]) * mmap.PAGESIZE, int(a[1]) * mmap.PAGESIZE, mmap.PAGESIZE):
            if path is None:
                m[i] = 1
            else:
                x += m[i]
    elif cmd == "drop":
        m.madvise(mmap.MADV_DONTNEED)
    elif cmd == "map":
        x = mmap.mmap(-1, int(a[0]) * mmap.PAGESIZE)
        maps.append(x)
        print(ctypes.addressof(ctypes.c_char.from_buffer(x)), flush=True)
        continue
    elif cmd == "exit":
        sys.exit(0)
    print("ok", flush=True)
"""


class BufferChild:
    """A child holding ``npages`` pages at ``addr`` (bytes): anonymous, or of file ``path``
    (mapped read-only, shared)."""

    def __init__(self, npages, path=None):
        extra = [] if path is None else [str(path)]
        self.proc = subprocess.Popen([sys.executable, "-c", BUFFER_CHILD, str(npages), *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid, self.npages = self.proc.pid, npages
        self.addr = int(self.proc.stdout.readline())
        self.size = npages * PAGE
        self.end = self.addr + self.size

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def touch(self, first=0, last=None):
        assert self.cmd(f"touch {first} {self.npages if last is None else last}") == "ok"

    def exit(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("exit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class KernelLikeBitmap(FileIO):
    """A regular file with the idle bitmap's semantics: written 1 bits are ORed in (0 bits
    ignored), aligned whole words only; ``access(pfns)`` clears bits like a touch does."""

    def __init__(self, path, nr_pfns):
        with open(path, "wb") as f:
            f.write(b"\0" * (nr_pfns // 8))
        super().__init__(path)
        self.nr_pfns = nr_pfns

    def pwrite(self, data, offset):
        assert offset % 8 == 0 and len(data) % 8 == 0, "kernel rejects unaligned access"
        old = np.frombuffer(os.pread(self.fd, len(data), offset).ljust(len(data), b"\0"), "<u8")
        return os.pwrite(self.fd, (old | np.frombuffer(data, "<u8")).tobytes(), offset)

    def pread(self, nbytes, offset):
        assert offset % 8 == 0 and nbytes % 8 == 0, "kernel rejects unaligned access"
        return super().pread(nbytes, offset)

    def access(self, pfns):
        words = np.frombuffer(os.pread(self.fd, self.nr_pfns // 8, 0), "<u8").copy()
        p = np.asarray(pfns, dtype=np.uint64)
        np.bitwise_and.at(words, (p // 64).astype(np.int64), ~(np.uint64(1) << (p % 64)))
        os.pwrite(self.fd, words.tobytes(), 0)

    def idle(self, pfns):
        words = np.frombuffer(os.pread(self.fd, self.nr_pfns // 8, 0), "<u8")
        p = np.asarray(pfns, dtype=np.uint64)
        return (words[(p // 64).astype(np.int64)] >> (p % 64)) & np.uint64(1) != 0
