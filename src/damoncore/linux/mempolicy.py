"""NUMA memory policies: weighted-interleave weights in sysfs, set_mempolicy(2), mbind(2).

Weights live in ``<sysfs_root>/kernel/mm/mempolicy/weighted_interleave/nodeN`` (one u8 per
node, 1..255, Linux >= 6.9).  Since 6.16 an ``auto`` file selects between weights the kernel
derives from HMAT bandwidth (``true``) and the user's (``false``; writing any ``nodeN``
switches to manual).  Kernels built with a compiler that has C23 ``auto`` name that file
``__auto_type`` (the kernel's ``#define auto __auto_type`` also rewrote the attribute name);
both spellings are handled.

The syscalls go through :mod:`damoncore.linux._syscalls` (numbers from the platform's
``<sys/syscall.h>``; no libnuma needed).
``set_mempolicy`` sets the policy of the *calling thread*, ``mbind`` the policy of a range of
the *calling process*; there is no call that changes another process' policy, so a tuner
changes the system-wide weights and migrates existing pages (``move_pages``) instead.
"""

from __future__ import annotations

import contextlib
import errno
import os

import numpy as np

from damoncore.errors import FeatureMissing, InvalidConfig, SyscallError
from damoncore.linux import _syscalls
from damoncore.linux.errors import NodeUnavailable, raise_for_errno
from damoncore.linux.system import PAGE_SIZE

# include/uapi/linux/mempolicy.h: policy modes
MPOL_DEFAULT = 0
MPOL_PREFERRED = 1
MPOL_BIND = 2
MPOL_INTERLEAVE = 3
MPOL_LOCAL = 4
MPOL_PREFERRED_MANY = 5        # Linux >= 5.15
MPOL_WEIGHTED_INTERLEAVE = 6   # Linux >= 6.9
MODE_NAMES = ("default", "preferred", "bind", "interleave", "local", "preferred_many",
              "weighted_interleave")
# optional mode flags, or'ed into the mode
MPOL_F_STATIC_NODES = 1 << 15
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
# get_mempolicy flags
MPOL_F_NODE = 1 << 0
MPOL_F_ADDR = 1 << 1
MPOL_F_MEMS_ALLOWED = 1 << 2
# mbind flags
MPOL_MF_STRICT = 1 << 0
MPOL_MF_MOVE = 1 << 1
MPOL_MF_MOVE_ALL = 1 << 2

FEATURE = "MPOL_WEIGHTED_INTERLEAVE (Linux >= 6.9)"
WEIGHTS_DIR = "kernel/mm/mempolicy/weighted_interleave"
AUTO_FILES = ("auto", "__auto_type")
MIN_WEIGHT, MAX_WEIGHT = 1, 255
NODEMASK_BITS = 1024           # the kernel's MAX_NUMNODES upper bound (CONFIG_NODES_SHIFT=10)
_ULONG = np.dtype("L")         # the C unsigned long of a nodemask word
_ULONG_BITS = 8 * _ULONG.itemsize


# --- sysfs weights -------------------------------------------------------------------------
def weights_dir(sysfs_root: str = "/sys") -> str:
    """The weighted-interleave sysfs directory; FeatureMissing when the kernel lacks it."""
    d = os.path.join(sysfs_root, WEIGHTS_DIR)
    if not os.path.isdir(d):
        raise FeatureMissing(FEATURE, f"no {d}")
    return d


def has_weighted_interleave(sysfs_root: str = "/sys") -> bool:
    return os.path.isdir(os.path.join(sysfs_root, WEIGHTS_DIR))


def read_weights(sysfs_root: str = "/sys") -> dict[int, int]:
    """{node id: weight} for every ``nodeN`` file (nodes with memory)."""
    d = weights_dir(sysfs_root)
    out = {}
    for name in os.listdir(d):
        if name.startswith("node") and name[4:].isdigit():
            with open(os.path.join(d, name)) as f:
                out[int(name[4:])] = int(f.read().strip())
    return dict(sorted(out.items()))


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as err:
        raise SyscallError(err.errno or errno.EIO, "write", detail=f"{path} <- {text!r}") from err


def write_weights(weights, sysfs_root: str = "/sys") -> None:
    """Set ``{node id: weight}`` (1..255; needs root).  Nodes left out keep their weight.

    Raises NodeUnavailable for a node without a ``nodeN`` file, InvalidConfig for a weight
    out of range, SyscallError (EACCES/EPERM/EINVAL) when the kernel refuses the write.
    """
    d = weights_dir(sysfs_root)
    items = [(int(n), int(w)) for n, w in dict(weights).items()]
    for n, w in items:
        if not MIN_WEIGHT <= w <= MAX_WEIGHT:
            raise InvalidConfig(f"interleave weight of node {n} must be "
                                f"{MIN_WEIGHT}..{MAX_WEIGHT}, got {w}")
        if not os.path.exists(os.path.join(d, f"node{n}")):
            raise NodeUnavailable(n, f"no {d}/node{n}")
    for n, w in items:
        _write(os.path.join(d, f"node{n}"), f"{w}\n")


def _auto_path(sysfs_root: str) -> str | None:
    d = weights_dir(sysfs_root)
    for name in AUTO_FILES:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


def read_auto(sysfs_root: str = "/sys") -> bool | None:
    """Whether the kernel derives the weights itself (6.16+ auto mode); None before 6.16."""
    p = _auto_path(sysfs_root)
    if p is None:
        return None
    with open(p) as f:
        return f.read().strip() in ("true", "1", "Y", "y")


def write_auto(enabled: bool, sysfs_root: str = "/sys") -> None:
    """Switch the kernel's auto weights on (recomputed from HMAT) or off."""
    p = _auto_path(sysfs_root)
    if p is None:
        raise FeatureMissing("weighted_interleave/auto (Linux >= 6.16)",
                             f"no auto file in {weights_dir(sysfs_root)}")
    _write(p, "true\n" if enabled else "false\n")


@contextlib.contextmanager
def preserved_weights(sysfs_root: str = "/sys"):
    """Restore the weights (and auto mode) found on entry when the block ends.

    A kernel without HMAT bandwidth data refuses to re-enter auto mode (ENODEV) although
    auto is its boot default; the weights it showed then were its defaults (all 1), so
    they are restored in manual mode and the refusal is not an error.
    """
    saved, auto = read_weights(sysfs_root), read_auto(sysfs_root)
    try:
        yield saved
    finally:
        write_weights(saved, sysfs_root)
        if auto:
            try:
                write_auto(True, sysfs_root)
            except SyscallError as err:
                if err.errno != errno.ENODEV:
                    raise


# --- syscalls ------------------------------------------------------------------------------
def _nodemask(nodes):
    """(c_ulong array, maxnode) for the node ids; maxnode is one past the mask's bits
    because the kernel's get_nodes() drops the last bit (a historic off-by-one)."""
    mask = np.zeros(NODEMASK_BITS // _ULONG_BITS, _ULONG)
    for n in nodes:
        n = int(n)
        if not 0 <= n < NODEMASK_BITS:
            raise InvalidConfig(f"node id {n} out of range 0..{NODEMASK_BITS - 1}")
        mask[n // _ULONG_BITS] |= mask.dtype.type(1 << (n % _ULONG_BITS))
    return mask, NODEMASK_BITS + 1


def _nodes_of(mask) -> list[int]:
    return [i * _ULONG_BITS + b for i, word in enumerate(mask.tolist())
            for b in range(_ULONG_BITS) if word >> b & 1]


def _check_mode(mode: int, mode_flags: int) -> None:
    if not 0 <= mode < len(MODE_NAMES):
        raise InvalidConfig(f"unknown memory policy mode {mode}")
    if mode_flags & ~MPOL_MODE_FLAGS:
        raise InvalidConfig(f"unknown memory policy mode flags {mode_flags:#x}")


def _fail(err: int, syscall: str, mode: int, sysfs_root: str, detail: str = ""):
    """EINVAL for weighted interleave on a kernel without it names the feature."""
    if err == errno.EINVAL and mode == MPOL_WEIGHTED_INTERLEAVE \
            and not has_weighted_interleave(sysfs_root):
        raise FeatureMissing(FEATURE, f"{syscall} returned EINVAL and there is no "
                                      f"{os.path.join(sysfs_root, WEIGHTS_DIR)}")
    if err == errno.ENOSYS:
        raise FeatureMissing("CONFIG_NUMA", f"{syscall}(2) not implemented by this kernel")
    raise_for_errno(err, syscall, None, detail)


def set_mempolicy(mode: int, nodes=(), mode_flags: int = 0, sysfs_root: str = "/sys") -> None:
    """Set the calling thread's policy for its future allocations.

    ``nodes``: node ids of the policy (empty for MPOL_DEFAULT/MPOL_LOCAL).  ``sysfs_root``
    only serves to tell an old kernel (FeatureMissing) from a bad argument (SyscallError).
    """
    _check_mode(mode, mode_flags)
    mask, maxnode = _nodemask(nodes)
    nodes = list(nodes)
    r = _syscalls.set_mempolicy(mode | mode_flags, mask if nodes else None,
                                maxnode if nodes else 0)
    if r != 0:
        _fail(-r, "set_mempolicy", mode, sysfs_root,
              f"{MODE_NAMES[mode]} nodes={nodes}")


def mbind(addr: int, length: int, mode: int, nodes=(), flags: int = 0, mode_flags: int = 0,
          sysfs_root: str = "/sys") -> None:
    """Set the policy of the calling process' ``[addr, addr + length)`` (bytes; ``addr``
    page aligned).  ``flags``: MPOL_MF_STRICT/MOVE/MOVE_ALL (MOVE migrates the range's
    existing pages to conform, which for interleave modes re-spreads them)."""
    _check_mode(mode, mode_flags)
    if flags & ~(MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL):
        raise InvalidConfig(f"unknown mbind flags {flags:#x}")
    mask, maxnode = _nodemask(nodes)
    nodes = list(nodes)
    r = _syscalls.mbind(addr, length, mode | mode_flags, mask if nodes else None,
                        maxnode if nodes else 0, flags)
    if r != 0:
        _fail(-r, "mbind", mode, sysfs_root,
              f"[{addr:#x}, +{length:#x}) {MODE_NAMES[mode]} nodes={nodes}")


def get_mempolicy(addr: int | None = None) -> tuple[int, list[int]]:
    """(mode, node ids) of the calling thread, or of the VMA holding ``addr`` (bytes).

    Mode flags are stripped from the mode (compare with the ``MPOL_*`` constants).
    """
    mask = np.zeros(NODEMASK_BITS // _ULONG_BITS, _ULONG)
    flags = 0 if addr is None else MPOL_F_ADDR
    r, mode = _syscalls.get_mempolicy(mask, NODEMASK_BITS, addr or 0, flags)
    if r != 0:
        _fail(-r, "get_mempolicy", -1, "/sys", "" if addr is None else f"addr {addr:#x}")
    return mode & ~MPOL_MODE_FLAGS, _nodes_of(mask)


def set_weighted_interleave(nodes, sysfs_root: str = "/sys") -> None:
    """The calling thread's future pages interleave over ``nodes`` by the sysfs weights."""
    set_mempolicy(MPOL_WEIGHTED_INTERLEAVE, nodes, sysfs_root=sysfs_root)


def mbind_weighted_interleave(addr: int, length: int, nodes, move: bool = False,
                              sysfs_root: str = "/sys") -> None:
    """Weighted interleave for a range of the calling process; ``move`` re-spreads its
    existing pages too (MPOL_MF_MOVE)."""
    mbind(addr, length, MPOL_WEIGHTED_INTERLEAVE, nodes, MPOL_MF_MOVE if move else 0,
          sysfs_root=sysfs_root)


# --- where a process' pages are ---------------------------------------------------------------
def stride_samples(first, npages, k: int, seed: int = 0) -> np.ndarray:
    """``(len(first), k)`` page numbers: for range ``[first[i], first[i] + npages[i])``, one
    page at a uniformly random offset in each of ``k`` equal strides (jittered sampling)."""
    first = np.asarray(first, dtype=np.uint64)
    npages = np.asarray(npages, dtype=np.int64)
    rng = np.random.default_rng(seed)
    pos = (np.arange(k)[None, :] + rng.random((len(first), k))) / k
    off = np.minimum(np.floor(pos * npages[:, None]), np.maximum(npages - 1, 0)[:, None])
    return first[:, None] + off.astype(np.uint64)


def sample_node_bytes(pid: int, starts, ends, nr_nodes: int, samples_per_range: int = 16,
                      page_size: int = PAGE_SIZE, max_exact_pages: int = 1 << 16,
                      seed: int = 0) -> np.ndarray:
    """Estimated bytes of each ``[start, end)`` (bytes, of ``pid``) on each node:
    ``(len(starts), nr_nodes)`` float array.

    Pages are looked up with move_pages(2) query mode (one batched call): every page when
    the ranges hold at most ``max_exact_pages`` pages in all, else ``samples_per_range`` per
    range, one at a random offset in each of that many equal strides (seeded by ``seed``).
    Evenly spaced samples would alias with an interleave (a stride that is a multiple of the
    interleave period puts every sample on one node).  Each range's size is split by the
    nodes of its present looked-up pages (absent pages are not counted; a range with none
    present gets zeros).
    """
    from damoncore.linux.migrate import pages_of_ranges, query_pages

    s = np.asarray(starts, dtype=np.uint64)
    e = np.asarray(ends, dtype=np.uint64)
    out = np.zeros((len(s), nr_nodes))
    if len(s) == 0:
        return out
    pg = np.uint64(page_size)
    first, last = s // pg, (e + pg - np.uint64(1)) // pg
    npg = (last - first).astype(np.int64)
    if int(npg.sum()) <= max_exact_pages:
        addrs, rows = pages_of_ranges(s, e, page_size)
    else:
        k = int(samples_per_range)
        addrs = stride_samples(first, npg, k, seed).ravel() * pg
        rows = np.repeat(np.arange(len(s)), k)
    status = query_pages(pid, addrs)
    ok = (status >= 0) & (status < nr_nodes)
    np.add.at(out, (rows[ok], status[ok]), 1.0)
    present = out.sum(axis=1, keepdims=True)
    size = (e - s).astype(np.float64)
    return np.divide(out * size[:, None], present, out=np.zeros_like(out), where=present > 0)
