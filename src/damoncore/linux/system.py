"""Facts about the running system that other modules must not restate: the page size and
the top of the user address space.

The page size comes from ``sysconf(_SC_PAGESIZE)`` (in :mod:`damoncore.linux._syscalls`,
next to every syscall number); callers take :data:`PAGE_SIZE` or, better, the page size of
the ops backend they work for (``Operations.page_size``), never a literal.
"""

from __future__ import annotations

import functools
import os

from damoncore.errors import FeatureMissing
from damoncore.linux import _syscalls

#: bytes per base page of this system
PAGE_SIZE: int = _syscalls.PAGE_SIZE

_PAGEMAP_ENTRY = 8


@functools.lru_cache(maxsize=None)
def user_space_end(procfs_root: str = "/proc") -> int:
    """The end of the user address space (the kernel's ``TASK_SIZE`` for this process), in
    bytes, found on the running system: /proc/self/pagemap has an entry for every page
    below it and returns nothing from there on (``pagemap_read()``), so a binary search
    over its page numbers finds it in ~50 preads, once.  ``0x7ffffffff000`` on x86-64 with
    4-level paging; 48 bits (or 52) on arm64, 56 bits with x86 LA57."""
    path = os.path.join(procfs_root, "self", "pagemap")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise FeatureMissing("CONFIG_PROC_PAGE_MONITOR", f"{path}: {err.strerror}") from err
    try:
        def mapped(page):
            return len(os.pread(fd, _PAGEMAP_ENTRY, page * _PAGEMAP_ENTRY)) == _PAGEMAP_ENTRY
        lo, hi = 0, (1 << 63) // _PAGEMAP_ENTRY      # the largest offset pread accepts
        if not mapped(lo):
            raise FeatureMissing("CONFIG_PROC_PAGE_MONITOR", f"{path} reads nothing")
        while hi - lo > 1:                          # mapped(lo) and not mapped(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if mapped(mid) else (lo, mid)
        return hi * PAGE_SIZE
    finally:
        os.close(fd)


def syscall_number(name: str) -> int:
    """The platform's number of syscall ``name`` (e.g. ``"move_pages"``), from
    ``<sys/syscall.h>``; FeatureMissing if its headers do not know it."""
    nr = _syscalls.SYSCALLS.get(name, -1)
    if nr < 0:
        raise FeatureMissing(f"{name}(2)", "not in this platform's <sys/syscall.h>")
    return nr
