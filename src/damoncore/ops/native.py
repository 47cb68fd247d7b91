"""The native sample path of the idle-bitmap backends (vaddr, paddr): the Python side.

:class:`IdleNative` drives one :class:`damoncore.ops._idle_sample.IdleSampler` for its
backend: per run it hands the C loop the region columns of the active targets (no copies),
the backend's file descriptors, and the number of sample ends nothing Python-side needs; after
the run it hands the sample left begun back to the backend, in the form the backend's own
``prepare_access_checks`` leaves it, so the generic ``check_accesses`` can end it.  The
backend provides:

- ``native_fds(target)``: ``(pagemap_fd, pid_fd)``; -1 for none (paddr: physical addresses,
  targets that never exit); may raise TargetGone (the run is then skipped);
- ``native_handoff(targets, entries)``: take over the begun sample (``entries[i]``: per region
  of ``targets[i]``, the raw pagemap entry (vaddr) or the PFN (paddr) sampled);
- ``prepare_access_checks(ctx)``: finishes a begin the C loop left INCOMPLETE.

With ``rows`` (an adaptation's :class:`~damoncore.core.adaptation.SampleRows`, one per target),
the C loop also writes every ended sample's sampling addresses and accessed flags into them.

Per run this costs a few numpy calls per target; per sample, nothing in Python.
"""

from __future__ import annotations

import numpy as np

from ..errors import TargetGone
from ..linux import pagemap as pmap
from . import _idle_sample
from .base import NativeRun


def page_shift(page_size: int) -> int:
    shift = page_size.bit_length() - 1
    if page_size != 1 << shift:
        raise ValueError(f"page size {page_size} is not a power of two")
    return shift


class IdleNative:
    """One backend's native sample path over the idle page bitmap.

    ``page_idle``: the backend's :class:`damoncore.linux.page_idle.PageIdle` (its fd, its
    write and read gaps).  ``pagemap_gap``: pages bridged within one pagemap pread.
    ``kpageflags``: paddr's LRU check: ``(fd, lru_bit, gap)``, or None.
    """

    def __init__(self, ops, page_idle, page_size: int, pagemap_gap: int = 0, kpageflags=None):
        kfd, lru_bit, kgap = kpageflags if kpageflags is not None else (-1, 0, 0)
        self.ops = ops
        self.sampler = _idle_sample.IdleSampler(
            page_idle.raw_fd, page_shift(page_size), int(pmap.PRESENT), int(pmap.PFN_MASK),
            pagemap_gap=pagemap_gap, mark_gap=page_idle.max_gap_words,
            read_gap=page_idle.max_read_gap_words, kpageflags_fd=kfd, lru_bit=lru_bit,
            kpageflags_gap=kgap)
        self._entries = {}            # id(target) -> uint64 buffer, one entry per region

    def run(self, ctx, targets, max_ends: int, until_us, wake_fd: int,
            end_due: bool = False, due_us=None, rows=None) -> NativeRun | None:
        cols, pid_fds = [], []
        try:
            for t in targets:
                pm_fd, pid_fd = self.ops.native_fds(t)
                r = t.regions
                ent = self._entries.get(id(t))
                if ent is None or len(ent) != r.nr:
                    ent = self._entries[id(t)] = np.empty(r.nr, np.uint64)
                cols.append((pm_fd, r.start, r.end, r.sampling_addr, r.nr_accesses,
                             r.nr_accesses_bp, r.last_nr_accesses, ent))
                pid_fds.append(pid_fd)
        except TargetGone:
            return None               # the generic begin marks it obsolete
        a = ctx.attrs
        status, ends, begin_us, deadline_us, check_us, mx = self.sampler.run(
            cols, ctx.rng, a.aggr_samples, a.sample_us, max_ends,
            -1 if until_us is None else int(until_us), wake_fd, np.array(pid_fds, np.intc),
            end_due, -1 if due_us is None else int(due_us),
            None if rows is None else [(s.addrs, s.accessed, s.k) for s in rows])
        if rows is not None:          # the C loop wrote rows k.. of every target's buffer
            for s in rows:
                s.k = min(len(s.addrs), s.k + ends)
        if status == _idle_sample.ENDED:
            return NativeRun(ends, begin_us, deadline_us, check_us, mx, ended=True)
        if status == _idle_sample.INCOMPLETE:
            self.ops.prepare_access_checks(ctx)
            begin_us = ctx.clock.now_us()
            deadline_us = begin_us + a.sample_us
        else:
            self.ops.native_handoff(targets, [c[-1] for c in cols])
        return NativeRun(ends, begin_us, deadline_us, check_us, mx)
