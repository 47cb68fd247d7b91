"""The kernel's text formats, one parser each: cpulists/nodelists and meminfo.

``/sys/devices/system/{cpu,node}/*`` lists (``"0-3,8,10-11"``), the cpumasks of damo's
sample filters, ``/proc/meminfo`` and ``/sys/devices/system/node/nodeN/meminfo`` (the same
lines behind a ``Node N`` prefix).
"""

from __future__ import annotations

import re

from damoncore.errors import InvalidConfig

_RANGE = re.compile(r"([0-9]{1,10})(?:-([0-9]{1,10}))?")
_MEMINFO = re.compile(r"(?:Node\s+\d+\s+)?([^\s:]+):\s+(\d+)(\s*kB)?")


class CpulistError(InvalidConfig):
    """A malformed or too large id list; ``problem`` says what is wrong with it."""

    def __init__(self, what, text, problem):
        self.problem = problem
        super().__init__(f"{what}: {problem} ({str(text)[:80]!r})")


def parse_cpulist(text, what: str = "cpu list", max_id: int | None = None,
                  max_len: int | None = None) -> list[int]:
    """``"0-3,8,10-11"`` -> sorted distinct ints; whitespace is ignored, an empty list (a
    memory-only node's cpulist) is ``[]``.  ``max_id``/``max_len`` bound the ids and how
    many there are (checked before any range is expanded).  CpulistError (an InvalidConfig
    naming ``what``) for anything else."""
    s = re.sub(r"\s+", "", str(text))
    out = set()
    for part in s.split(",") if s else ():
        m = _RANGE.fullmatch(part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (1, 0)
        if hi < lo:
            raise CpulistError(what, text, "not an id list (e.g. 0-4,7)")
        if (max_id is not None and hi > max_id) or \
                (max_len is not None and len(out) + hi - lo >= max_len):
            raise CpulistError(what, text, f"ids must be at most {max_id}, and at most "
                                           f"{max_len} of them")
        out.update(range(lo, hi + 1))
    return sorted(out)


def parse_meminfo(text: str) -> dict[str, int]:
    """meminfo lines (``MemTotal:  123 kB``, or ``Node 0 MemTotal: 123 kB``) -> ``{name:
    bytes}``; fields without a unit (``HugePages_Total``) are plain counts."""
    out = {}
    for line in text.splitlines():
        m = _MEMINFO.match(line.strip())
        if m:
            out[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return out
