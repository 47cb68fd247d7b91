"""Page migration between NUMA nodes with move_pages(2), batched in Cython.

Addresses are virtual byte addresses in the target process, one per page, page-aligned.
Partial failures are never raised: every page gets a status and per-errno counters.  Only
whole-call failures raise (an unusable node, a vanished process, missing permission).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import numpy as np

from damoncore.arrays import expand_runs, unique
from damoncore.linux._syscalls import DEFAULT_CHUNK, move_pages_batch
from damoncore.linux.errors import NodeUnavailable, errno_name, raise_for_errno
from damoncore.linux.formats import parse_cpulist
from damoncore.linux.system import PAGE_SIZE

MPOL_MF_MOVE = 1 << 1  # move pages mapped only by this process
MPOL_MF_MOVE_ALL = 1 << 2  # also shared pages (CAP_SYS_NICE)


@dataclass
class MoveResult:
    """Outcome of one move_pages batch.

    Attributes:
        nr_moved: pages that now sit on their requested node (already-there pages included:
            the kernel does not tell them apart).
        errors: errno name -> number of pages with that status, e.g. ``{'ENOENT': 3}``.
        bytes_moved: ``(src_node, dst_node) -> bytes`` for pages whose source node was given.
        status: the raw per-page status (int32: node id or -errno).
        nr_not_moved: the kernel's own count of pages it could not move (sum of returns).
    """

    nr_moved: int
    errors: dict[str, int]
    status: np.ndarray
    bytes_moved: dict[tuple[int, int], int] = field(default_factory=dict)
    nr_not_moved: int = 0


def memory_nodes(sysfs_root: str = "/sys") -> list[int]:
    """Nodes that are online and have memory (``has_memory``, else ``online``)."""
    base = os.path.join(sysfs_root, "devices/system/node")
    for name in ("has_memory", "online"):
        try:
            with open(os.path.join(base, name)) as f:
                return parse_cpulist(f.read(), os.path.join(base, name))
        except FileNotFoundError:
            continue
    return [0]


def _as_addrs(addrs) -> np.ndarray:
    a = np.ascontiguousarray(addrs, dtype=np.uint64)
    if a.ndim != 1:
        raise ValueError("addrs must be one-dimensional")
    return a


def _count_errors(status: np.ndarray) -> dict[str, int]:
    neg = status[status < 0]
    if neg.size == 0:
        return {}
    vals, counts = np.unique(-neg, return_counts=True)
    return {errno_name(int(v)): int(c) for v, c in zip(vals, counts)}


def query_pages(pid: int, addrs, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Node of each page of ``pid`` at ``addrs`` (bytes): int32 array, node id or -errno.

    -ENOENT means the page is not present (never touched or unmapped), -EFAULT an address outside
    any mapping.  Raises TargetGone if ``pid`` does not exist.
    """
    a = _as_addrs(addrs)
    status = np.empty(a.shape[0], dtype=np.int32)
    _, err, _ = move_pages_batch(pid, a, None, status, 0, chunk)
    if err:
        raise_for_errno(err, "move_pages", pid, "query")
    return status


def move_pages(
    pid: int,
    addrs,
    nodes,
    flags: int = MPOL_MF_MOVE,
    src_nodes=None,
    page_size: int = PAGE_SIZE,
    sysfs_root: str = "/sys",
    chunk: int = DEFAULT_CHUNK,
) -> MoveResult:
    """Move the pages of ``pid`` at ``addrs`` (bytes) to ``nodes`` (a node id or one per page).

    Args:
        pid: target process.
        addrs: page-aligned virtual addresses in bytes.
        nodes: destination node, scalar or int array of the same length as ``addrs``.
        flags: MPOL_MF_MOVE or MPOL_MF_MOVE_ALL.
        src_nodes: optional current node per page (e.g. from ``query_pages``); enables
            ``bytes_moved`` per (src, dst).
        page_size: bytes per page, for ``bytes_moved``.
        sysfs_root: where to check that destinations are online and have memory.
        chunk: pages per syscall.

    Raises:
        NodeUnavailable: a destination node is offline or memoryless (checked up front, and again
            if the kernel rejects the whole call with ENODEV/EINVAL).
        TargetGone: ``pid`` does not exist.
        SyscallError: any other whole-call failure (e.g. EPERM).  ENOMEM (the destination
            is full) is not raised: the pages not attempted count as ``ENOMEM``.  Pages
            the kernel reports only as a count of failures (a positive return) are
            re-queried and count as ``EAGAIN`` where they did not reach their node.
    """
    a = _as_addrs(addrs)
    if np.ndim(nodes) == 0:
        dst = np.full(a.shape[0], int(nodes), dtype=np.int32)
        wanted = [int(nodes)]
    else:
        dst = np.ascontiguousarray(nodes, dtype=np.int32)
        if dst.shape != a.shape:
            raise ValueError("nodes must be a scalar or have one entry per address")
        wanted = unique(dst).tolist()
    usable = set(memory_nodes(sysfs_root))
    for nid in wanted:
        if nid not in usable:
            raise NodeUnavailable(nid, f"usable nodes: {sorted(usable)}")
    status = np.empty(a.shape[0], dtype=np.int32)
    not_moved, err, done = move_pages_batch(pid, a, dst, status, flags, chunk)
    if err in (errno.ENODEV, errno.EINVAL):
        bad = int(dst[done]) if done < dst.shape[0] else int(dst[0])
        raise NodeUnavailable(bad, f"move_pages returned {errno_name(err)}")
    if err == errno.ENOMEM:
        # the destination ran out of memory (below its watermarks) part way: a partial
        # failure.  The failed call may have moved some of its pages before giving up, so
        # ask where the rest are; those not on their destination count as ENOMEM.
        where = query_pages(pid, a[done:])
        status[done:] = np.where(where == dst[done:], where, -errno.ENOMEM)
    elif err:
        raise_for_errno(err, "move_pages", pid)
    if not_moved:
        # the kernel could not migrate some pages (e.g. transiently pinned) and says only
        # how many: their status may still read the destination, so ask where they are
        where = query_pages(pid, a)
        moved_ok = status >= 0
        status[moved_ok] = np.where(where[moved_ok] == dst[moved_ok], where[moved_ok],
                                    -errno.EAGAIN)
    ok = status >= 0
    result = MoveResult(
        nr_moved=int(np.count_nonzero(ok & (status == dst))),
        errors=_count_errors(status),
        status=status,
        nr_not_moved=int(not_moved),
    )
    if src_nodes is not None:
        src = np.asarray(src_nodes, dtype=np.int64)
        known = ok & (src >= 0)
        pairs, counts = np.unique(
            np.stack([src[known], dst[known].astype(np.int64)]), axis=1, return_counts=True
        )
        result.bytes_moved = {
            (int(s), int(d)): int(c) * page_size for (s, d), c in zip(pairs.T, counts)
        }
    return result


def page_addrs(start: int, end: int, page_size: int = PAGE_SIZE) -> np.ndarray:
    """Page-aligned addresses covering ``[start, end)`` bytes as a uint64 array."""
    first = start - start % page_size
    return np.arange(first, end, page_size, dtype=np.uint64)


def pages_of_ranges(starts, ends, page_size: int = PAGE_SIZE):
    """Page addresses covering each ``[starts[i], ends[i])`` and the index i of each page."""
    ps = np.uint64(page_size)
    s = np.asarray(starts, np.uint64) // ps
    e = (np.asarray(ends, np.uint64) + ps - np.uint64(1)) // ps
    ridx, pages = expand_runs(s, (e - s).astype(np.int64))
    return pages * ps, ridx


def move_range(
    pid: int, start: int, end: int, node: int, page_size: int = PAGE_SIZE, **kwargs
) -> MoveResult:
    """Move every page of ``pid`` in ``[start, end)`` (bytes) to ``node`` in one batch."""
    return move_pages(pid, page_addrs(start, end, page_size), node, page_size=page_size, **kwargs)
