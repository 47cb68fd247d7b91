"""The host's kernel settings that no test may change, read (never written) in one place.

Tests that must write system state (interleave weights, NUMA balancing, DAMON) run in the
4-node guest (tests/vm); :func:`snapshot` is taken when the session starts and again when it
ends (``tests/conftest.py``), and any difference fails the run.  Only reads: nothing under
``/sys/kernel/mm/damon`` is ever written on this machine.
"""

from __future__ import annotations

import os

#: single-value files: NUMA balancing, reclaim/demotion knobs, THP
FILES = (
    "proc/sys/kernel/numa_balancing",
    "proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
    "proc/sys/vm/zone_reclaim_mode",
    "sys/kernel/mm/numa/demotion_enabled",
    "sys/kernel/mm/transparent_hugepage/enabled",
)
#: directories whose every regular file is a setting (weighted-interleave weights, auto)
DIRS = ("sys/kernel/mm/mempolicy/weighted_interleave",)
DAMON_KDAMONDS = "sys/kernel/mm/damon/admin/kdamonds"


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        return f"<{type(err).__name__}>"


def _damon(root):
    """The DAMON sysfs state a test could disturb: kdamond count, each one's state and its
    contexts' operations (read-only)."""
    base = os.path.join(root, DAMON_KDAMONDS)
    out = {"nr_kdamonds": _read(os.path.join(base, "nr_kdamonds"))}
    if not out["nr_kdamonds"].isdigit():
        return out
    for k in range(int(out["nr_kdamonds"])):
        kd = os.path.join(base, str(k))
        out[f"{k}/state"] = _read(os.path.join(kd, "state"))
        nr = _read(os.path.join(kd, "contexts", "nr_contexts"))
        out[f"{k}/nr_contexts"] = nr
        for c in range(int(nr) if nr.isdigit() else 0):
            out[f"{k}/{c}/operations"] = _read(os.path.join(kd, "contexts", str(c),
                                                            "operations"))
    return out


def _own_mempolicy():
    """This process' memory policy: a test that calls set_mempolicy must restore it."""
    try:
        from damoncore.linux.mempolicy import get_mempolicy
        return list(get_mempolicy())
    except Exception as err:          # no NUMA syscalls here: nothing a test could change
        return f"<{type(err).__name__}>"


def snapshot(root: str = "/") -> dict:
    """{setting: value} of every setting above under ``root`` (a fixture tree in tests of
    this reader); unreadable or absent settings read as ``<ErrorName>``."""
    out = {p: _read(os.path.join(root, p)) for p in FILES}
    for d in DIRS:
        full = os.path.join(root, d)
        names = sorted(os.listdir(full)) if os.path.isdir(full) else []
        for name in names:
            if os.path.isfile(os.path.join(full, name)):
                out[f"{d}/{name}"] = _read(os.path.join(full, name))
    out.update({f"damon:{k}": v for k, v in _damon(root).items()})
    if root == "/":
        out["mempolicy of the test process"] = _own_mempolicy()
    return out


def differences(before: dict, after: dict) -> list:
    """Lines naming each setting whose value changed."""
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
