"""A monitoring target: an address space (a process, or a set of physical ranges)."""

from __future__ import annotations

from .regions import Regions, even_regions


class Target:
    """One monitored address space and its regions.

    ``pid``: the process for virtual address spaces (None for physical ones).
    ``ranges``: initial [start, end) byte ranges the user asked for (may be empty for vaddr:
    the ops backend then derives them from the process' mappings).
    ``regions``: the adaptive regions (:class:`Regions`), owned by the core after ``init``.
    ``obsolete``: set when the target went away (process exit); monitoring of it stops.
    """

    def __init__(self, pid=None, ranges=(), name=None):
        self.pid = pid
        self.ranges = [(int(a), int(b)) for a, b in ranges]
        for a, b in self.ranges:
            if b <= a:
                raise ValueError(f"empty or inverted target range [{a:#x}, {b:#x})")
        self.name = name
        self.regions = Regions()
        self.obsolete = False

    def set_regions(self, ranges, min_nr_regions: int, min_region: int) -> None:
        """(Re)start the target's regions evenly split over ``ranges``."""
        self.ranges = [(int(a), int(b)) for a, b in ranges]
        self.regions = even_regions(self.ranges, min_nr_regions, min_region)

    def __repr__(self):
        what = f"pid={self.pid}" if self.pid is not None else f"ranges={len(self.ranges)}"
        return f"Target({what}, nr_regions={self.regions.nr})"
