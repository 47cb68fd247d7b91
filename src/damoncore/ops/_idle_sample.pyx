# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The native sample path of the idle-bitmap backends: whole samples in C, GIL released.

One sample of the kernel's kdamond_fn(), for page-table access checks through the idle page
bitmap, done here without a Python object per sample:

    begin:  damon_rand() a sampling address per region (_regions.pick_sampling_addrs_c);
            vaddr: translate them through /proc/PID/pagemap (one pread per span of pages);
            mark the present frames idle (one pwrite per span of bitmap words)
    wait:   ppoll() until the sample's deadline on the wake fd and the targets' pidfds
    end:    read the frames back (one pread per span of adjacent words); paddr: an accessed
            frame counts only if it is on an LRU list (/proc/kpageflags), as
            PageFilters.on_lru does; update nr_accesses and nr_accesses_bp
            (_regions.update_accesses_c); with an adaptation's rows, append the sampling
            addresses and the accessed flags to them (what Adaptation.sampled would see)

:meth:`IdleSampler.run` does ``begin`` and then ``(wait, end, begin)`` up to ``max_ends``
times: the caller (core/context.py) computes how many sample ends need nothing Python-side
(aggregation, a scheme's apply, an ops update, pending access reports); with ``end_due`` it
then waits and ends the next sample too and returns ENDED, for the caller to do that end's
Python-side work.  Otherwise it returns with a sample begun and not ended, so the generic
path (the backend's check_accesses) can end it: the backend takes over the sampled frames
(``entries``).  It returns early, before a wait, when the next deadline lies after
``until_us``, and during a wait when the wake fd or a pidfd becomes readable (stop request,
access report, a target exited) or a signal arrives.  When translating or marking fails (an
exited process, a syscall error), the begun sample is left ``INCOMPLETE``: the addresses are
picked, and the backend's prepare_access_checks() redoes the rest in Python, raising or
marking targets obsolete exactly as the generic path does.  The same RNG stream and the same
kernel answers give the same results as the generic path (tests/ops/test_native_sample.py).
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from damoncore._regions cimport pick_sampling_addrs_c, update_accesses_c
from damoncore.linux._frames cimport idle_mark_c, idle_read_c, pagemap_at_c
from damoncore.linux._wait cimport POLLIN, monotonic_us, pollfd, wait_readable

from damoncore.errors import SyscallError

# run() statuses
DONE = 0            # max_ends samples ended, the next one begun
UNTIL = 1           # the next deadline lies after until_us
WOKEN = 2           # the wake fd or a pidfd became readable, or a signal came
INCOMPLETE = 3      # the last begin picked its addresses but could not translate/mark
END_FAILED = 4      # reading the bitmap back failed; the begun sample is still to be ended
ENDED = 5           # the run ended with a sample ended and none begun (``end_due``)

cdef enum:
    S_DONE = 0
    S_UNTIL = 1
    S_WOKEN = 2
    S_INCOMPLETE = 3
    S_END_FAILED = 4
    S_ENDED = 5


cdef struct target_t:
    int pagemap_fd              # -1: physical addresses (paddr), no translation
    Py_ssize_t n
    const uint64_t *start
    const uint64_t *end
    uint64_t *sampling_addr
    uint32_t *nr_accesses
    uint32_t *nr_accesses_bp
    const uint32_t *last_nr_accesses
    uint64_t *entries           # vaddr: pagemap entry per region; paddr: PFN per region
    uint64_t *row_addrs         # NULL, or the adaptation's rows: [row_cap, n] addresses
    uint8_t *row_acc            # ... and [row_cap, n] accessed flags
    Py_ssize_t row_k, row_cap   # next row to write, rows in the buffer


cdef inline int64_t now_us() noexcept nogil:
    """time.monotonic_ns() // 1000: the core's RealClock."""
    return monotonic_us()


cdef class IdleSampler:
    """Runs samples of one context's targets in C; one per backend instance.

    Args:
        bitmap_fd: the idle page bitmap, open read-write.
        page_shift: log2 of the page size.
        present, pfn_mask: pagemap's present bit and PFN field (linux/pagemap.py).
        pagemap_gap: pages bridged within one pagemap pread (Pagemap.entries_at's rule).
        mark_gap, read_gap: bitmap words bridged within one pwrite / pread (PageIdle's).
        kpageflags_fd: paddr only (-1 otherwise): count an accessed frame only if its
            ``lru_bit`` is set in /proc/kpageflags, read with ``kpageflags_gap``.
    Attributes (counters since creation): ``nr_runs``, ``nr_ends`` (samples ended here),
    ``nr_begins``, ``nr_pagemap_reads``, ``nr_bitmap_writes``, ``nr_bitmap_reads``,
    ``nr_kpageflags_reads``, ``nr_waits`` (ppoll calls).
    """

    cdef int bitmap_fd, kpageflags_fd
    cdef uint64_t page_shift, present, pfn_mask, lru_bit
    cdef uint64_t pagemap_gap, mark_gap, read_gap, kpageflags_gap
    cdef public Py_ssize_t nr_runs, nr_ends, nr_begins, nr_pagemap_reads, nr_bitmap_writes
    cdef public Py_ssize_t nr_bitmap_reads, nr_kpageflags_reads, nr_waits

    def __init__(self, int bitmap_fd, int page_shift, uint64_t present, uint64_t pfn_mask,
                 Py_ssize_t pagemap_gap=0, Py_ssize_t mark_gap=0, Py_ssize_t read_gap=0,
                 int kpageflags_fd=-1, int lru_bit=0, Py_ssize_t kpageflags_gap=0):
        self.bitmap_fd = bitmap_fd
        self.page_shift = page_shift
        self.present, self.pfn_mask = present, pfn_mask
        self.pagemap_gap = max(pagemap_gap, 0)
        self.mark_gap, self.read_gap = max(mark_gap, 0), max(read_gap, 0)
        self.kpageflags_fd, self.lru_bit = kpageflags_fd, lru_bit
        self.kpageflags_gap = max(kpageflags_gap, 0)

    def run(self, list targets, uint64_t[::1] rng, uint32_t len_window, int64_t sample_us,
            Py_ssize_t max_ends, int64_t until_us, int wake_fd, const int[::1] pid_fds,
            bint end_due=False, int64_t due_us=-1, list rows=None):
        """Begin a sample, then wait, end and begin again up to ``max_ends`` times; with
        ``end_due``, then wait and end one more sample (whose end has Python-side work due)
        and return ENDED with no sample begun.  ``due_us`` >= 0: Python-side work comes due
        by the clock then; an end at or after it (checked after the end, as the generic
        path's schemes check the clock) returns ENDED as well.

        ``targets``: one tuple per active target, ``(pagemap_fd, start, end, sampling_addr,
        nr_accesses, nr_accesses_bp, last_nr_accesses, entries)`` (the region columns and a
        uint64 buffer of one entry per region).  ``until_us`` < 0: no limit.  ``wake_fd`` and
        ``pid_fds`` (-1 entries ignored) end a wait when readable.

        ``rows``: None, or per target ``(addrs, accessed, k)``: C-contiguous uint64 and
        uint8 arrays of shape ``(cap, n)`` (n: the target's regions) and the next row; every
        sample ended here writes its sampling addresses and accessed flags into row k, k+1,
        ... while under ``cap`` (the caller advances its row counter by ``nr_ends``).

        Returns ``(status, nr_ends, begin_us, deadline_us, check_us, max_nr_accesses)``:
        ``begin_us``/``deadline_us`` of the sample left begun (unset when INCOMPLETE; of the
        last sample ended when ENDED),
        ``check_us`` when the last end started (its wait's end), ``max_nr_accesses`` over the
        targets after the last end.
        """
        cdef Py_ssize_t nt = len(targets), i, total = 0, nfds = 0
        cdef target_t *tg = <target_t *>malloc((nt if nt else 1) * sizeof(target_t))
        cdef pollfd *fds = <pollfd *>malloc((pid_fds.shape[0] + 1) * sizeof(pollfd))
        cdef uint64_t *pages = NULL
        cdef uint64_t *pfns = NULL
        cdef uint8_t *idle = NULL
        cdef uint8_t *acc = NULL
        cdef uint64_t *flags = NULL
        cdef uint64_t[::1] u64
        cdef uint32_t[::1] u32
        cdef const uint64_t[::1] cu64
        cdef const uint32_t[::1] cu32
        cdef uint64_t[:, ::1] ra
        cdef uint8_t[:, ::1] rc
        cdef int status = S_DONE, err = 0, r
        cdef Py_ssize_t ends = 0, m = 0
        cdef int64_t begin_us = 0, deadline = 0, check_us = 0, t
        cdef uint32_t mx = 0
        keep = []
        if rows is not None and len(rows) != nt:
            free(tg)
            free(fds)
            raise ValueError("one row buffer per target")
        if tg == NULL or fds == NULL:
            free(tg)
            free(fds)
            raise MemoryError()
        try:
            for i in range(nt):
                pm_fd, start, end, sa, nr, bp, last, ent = targets[i]
                tg[i].pagemap_fd = pm_fd
                cu64 = start
                tg[i].n = cu64.shape[0]
                tg[i].start = &cu64[0] if tg[i].n else NULL
                cu64 = end
                if cu64.shape[0] != tg[i].n:
                    raise ValueError("region columns of different lengths")
                tg[i].end = &cu64[0] if tg[i].n else NULL
                for col in (sa, ent):
                    u64 = col
                    if u64.shape[0] != tg[i].n:
                        raise ValueError("region columns of different lengths")
                u64 = sa
                tg[i].sampling_addr = &u64[0] if tg[i].n else NULL
                u64 = ent
                tg[i].entries = &u64[0] if tg[i].n else NULL
                for col in (nr, bp):
                    u32 = col
                    if u32.shape[0] != tg[i].n:
                        raise ValueError("region columns of different lengths")
                u32 = nr
                tg[i].nr_accesses = &u32[0] if tg[i].n else NULL
                u32 = bp
                tg[i].nr_accesses_bp = &u32[0] if tg[i].n else NULL
                cu32 = last
                if cu32.shape[0] != tg[i].n:
                    raise ValueError("region columns of different lengths")
                tg[i].last_nr_accesses = &cu32[0] if tg[i].n else NULL
                tg[i].row_addrs, tg[i].row_acc, tg[i].row_k, tg[i].row_cap = NULL, NULL, 0, 0
                if rows is not None:
                    ra, rc, k = rows[i]
                    if ra.shape[1] != tg[i].n or rc.shape[1] != tg[i].n \
                            or ra.shape[0] != rc.shape[0]:
                        raise ValueError("row buffers do not match the regions")
                    if tg[i].n and ra.shape[0]:
                        tg[i].row_addrs, tg[i].row_acc = &ra[0, 0], &rc[0, 0]
                        tg[i].row_k, tg[i].row_cap = k, ra.shape[0]
                    keep.append(rows[i])
                keep.append(targets[i])
                total += tg[i].n
            fds[0].fd, fds[0].events, fds[0].revents = wake_fd, POLLIN, 0
            nfds = 1
            for i in range(pid_fds.shape[0]):
                if pid_fds[i] >= 0:
                    fds[nfds].fd, fds[nfds].events, fds[nfds].revents = pid_fds[i], POLLIN, 0
                    nfds += 1
            pages = <uint64_t *>malloc((total + 1) * sizeof(uint64_t))
            pfns = <uint64_t *>malloc((total + 1) * sizeof(uint64_t))
            flags = <uint64_t *>malloc((total + 1) * sizeof(uint64_t))
            idle = <uint8_t *>malloc(total + 1)
            acc = <uint8_t *>malloc(total + 1)
            if pages == NULL or pfns == NULL or flags == NULL or idle == NULL or acc == NULL:
                raise MemoryError()
            self.nr_runs += 1
            with nogil:
                status = self._begin(tg, nt, &rng[0], pages, pfns, &m)
                if status != S_INCOMPLETE:
                    begin_us = now_us()
                    deadline = begin_us + sample_us
                    while ends < max_ends + end_due:
                        if until_us >= 0 and deadline > until_us:
                            status = S_UNTIL
                            break
                        t = deadline - now_us()
                        if t < 0:
                            t = 0
                        r = wait_readable(fds, nfds, t)
                        self.nr_waits += 1
                        if r != 0:
                            if r < 0 and errno != EINTR:
                                err = errno
                            status = S_WOKEN
                            break
                        check_us = now_us()
                        if self._end(tg, nt, pfns, m, idle, acc, pages, flags, len_window,
                                     &mx) != 0:
                            status = S_END_FAILED
                            break
                        ends += 1
                        if ends > max_ends or (due_us >= 0 and now_us() >= due_us):
                            status = S_ENDED        # work is due at this end: nothing begun
                            break
                        status = self._begin(tg, nt, &rng[0], pages, pfns, &m)
                        if status == S_INCOMPLETE:
                            break
                        begin_us = now_us()
                        deadline = begin_us + sample_us
            if err:
                raise SyscallError(err, "ppoll")
            return status, ends, begin_us, deadline, check_us, mx
        finally:
            free(tg)
            free(fds)
            free(pages)
            free(pfns)
            free(flags)
            free(idle)
            free(acc)

    cdef int _begin(self, target_t *tg, Py_ssize_t nt, uint64_t *rng, uint64_t *pages,
                    uint64_t *pfns, Py_ssize_t *nr_pfns) noexcept nogil:
        """Pick, translate, mark; the marked frames in ``pfns[0:nr_pfns]``."""
        cdef Py_ssize_t i, k, m = 0, nr_calls, nr_empty
        cdef target_t *t
        cdef uint64_t e
        self.nr_begins += 1
        for i in range(nt):
            pick_sampling_addrs_c(tg[i].start, tg[i].end, tg[i].sampling_addr, tg[i].n, rng)
        for i in range(nt):
            t = &tg[i]
            if t.pagemap_fd < 0:
                for k in range(t.n):
                    t.entries[k] = t.sampling_addr[k] >> self.page_shift
                    pfns[m] = t.entries[k]
                    m += 1
                continue
            for k in range(t.n):
                pages[k] = t.sampling_addr[k] >> self.page_shift
            nr_calls = nr_empty = 0
            if pagemap_at_c(t.pagemap_fd, pages, t.n, t.entries, self.pagemap_gap,
                            &nr_calls, &nr_empty) != 0 or nr_empty:
                # an error or a read that returned nothing (the process may have exited):
                # Python redoes it and tells which
                self.nr_pagemap_reads += nr_calls
                return S_INCOMPLETE
            self.nr_pagemap_reads += nr_calls
            for k in range(t.n):
                e = t.entries[k]
                if e & self.present:
                    pfns[m] = e & self.pfn_mask
                    m += 1
        nr_calls = 0
        if idle_mark_c(self.bitmap_fd, pfns, m, self.mark_gap, &nr_calls) != 0:
            self.nr_bitmap_writes += nr_calls
            return S_INCOMPLETE
        self.nr_bitmap_writes += nr_calls
        nr_pfns[0] = m
        return S_DONE

    cdef int _end(self, target_t *tg, Py_ssize_t nt, const uint64_t *pfns, Py_ssize_t m,
                  uint8_t *idle, uint8_t *acc, uint64_t *hits, uint64_t *flags,
                  uint32_t len_window, uint32_t *mx) noexcept nogil:
        """Read back, count, update the counters; 0, or -1 when a syscall failed."""
        cdef Py_ssize_t i, k, j = 0, nr_calls = 0, nr_empty = 0, h = 0
        cdef target_t *t
        cdef uint32_t got, best = 0
        if idle_read_c(self.bitmap_fd, pfns, m, idle, self.read_gap, &nr_calls) != 0:
            self.nr_bitmap_reads += nr_calls
            return -1
        self.nr_bitmap_reads += nr_calls
        if self.kpageflags_fd >= 0:
            # only frames that read "accessed" need the LRU check (one batched read)
            for k in range(m):
                if not idle[k]:
                    hits[h] = pfns[k]
                    h += 1
            if h:
                nr_calls = 0
                if pagemap_at_c(self.kpageflags_fd, hits, h, flags, self.kpageflags_gap,
                                &nr_calls, &nr_empty) != 0:
                    self.nr_kpageflags_reads += nr_calls
                    return -1
                self.nr_kpageflags_reads += nr_calls
            h = 0
            for k in range(m):
                if not idle[k]:
                    # not on an LRU list: the kernel finds no folio, so no access
                    idle[k] = ((flags[h] >> self.lru_bit) & 1) == 0
                    h += 1
        for i in range(nt):
            t = &tg[i]
            for k in range(t.n):
                if t.pagemap_fd < 0 or t.entries[k] & self.present:
                    acc[k] = not idle[j]
                    j += 1
                else:
                    acc[k] = 0      # absent at begin: not accessed (as VaddrOps.check_accesses)
            if t.row_addrs != NULL and t.row_k < t.row_cap:
                # the adaptation's row of this sample (Adaptation.sample_rows)
                memcpy(t.row_addrs + t.row_k * t.n, t.sampling_addr, t.n * sizeof(uint64_t))
                memcpy(t.row_acc + t.row_k * t.n, acc, t.n)
                t.row_k += 1
            got = update_accesses_c(t.nr_accesses, t.nr_accesses_bp, t.last_nr_accesses, acc,
                                    t.n, len_window)
            if got > best:
                best = got
        mx[0] = best
        self.nr_ends += 1
        return 0
