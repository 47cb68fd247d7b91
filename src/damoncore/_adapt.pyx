# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot loops of the edge-split region adaptation (:mod:`damoncore.core.edge_split`).

Same conventions as :mod:`damoncore._regions`: typed contiguous region columns, the GIL
released, randomness from the caller's splitmix64 state (so ``tests/reference_adapt.py``
replays the exact choices).
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free, qsort
from libc.math cimport log, sqrt

from damoncore._regions cimport rand_range, move_region, BP_ONE

cnp.import_array()


cdef struct probe_t:
    uint64_t addr
    int64_t w
    bint acc


cdef int cmp_probe(const void *a, const void *b) noexcept nogil:
    """By address, then weight (a total order: qsort is not stable)."""
    cdef probe_t *x = <probe_t *>a
    cdef probe_t *y = <probe_t *>b
    if x.addr != y.addr:
        return -1 if x.addr < y.addr else 1
    return -1 if x.w < y.w else (1 if x.w > y.w else 0)


cdef inline bint probe_lt(probe_t *x, probe_t *y) noexcept nogil:
    return x.addr < y.addr or (x.addr == y.addr and x.w < y.w)


cdef inline void sort_probes(probe_t *p, Py_ssize_t m) noexcept nogil:
    """``cmp_probe``'s order: insertion sort for an aggregation's few samples (no
    comparator call per step), qsort beyond 64."""
    cdef Py_ssize_t j, k
    cdef probe_t t
    if m > 64:
        qsort(p, m, sizeof(probe_t), cmp_probe)
        return
    for j in range(1, m):
        t = p[j]
        k = j - 1
        while k >= 0 and probe_lt(&t, &p[k]):
            p[k + 1] = p[k]
            k -= 1
        p[k + 1] = t


cdef inline double xlogx(double a, double n) noexcept nogil:
    """a * log(a / n), 0 for a == 0."""
    return a * log(a / n) if a > 0 else 0.0


cdef inline double bernoulli_ll(double a, double n) noexcept nogil:
    """Log-likelihood of ``a`` successes in ``n`` trials at their own rate."""
    return xlogx(a, n) + xlogx(n - a, n) if n > 0 else 0.0


cdef inline uint64_t edge_cut(probe_t *l, probe_t *r, bint acc_l,
                              uint64_t min_region) noexcept nogil:
    """Between address-sorted samples ``l`` and ``r`` (one accessed, one idle): a quarter
    of the way from the idle one, so the gap goes mostly to the accessed side (a hot
    piece whole rather than trimmed)."""
    cdef uint64_t c
    if acc_l:
        c = r.addr - (r.addr - l.addr) / 4
    else:
        c = l.addr + (r.addr - l.addr) / 4
    return c - c % min_region


def sample_edges(const uint64_t[::1] start, const uint64_t[::1] end,
                 const uint64_t[:, ::1] addrs, const uint8_t[:, ::1] accessed,
                 uint64_t min_region, uint64_t[::1] cuts, double min_gain=6.0,
                 double min_gain_accessed=6.0, uint64_t min_piece_div=16):
    """Where each region's own samples of one aggregation change between accessed and not.

    ``addrs[k, i]`` / ``accessed[k, i]``: the sampling address of region ``i`` in sample
    ``k`` and whether it was found accessed.  Per region, the samples sorted by address
    weigh +1 if they are the minority outcome (accessed in a mostly idle region, idle in a
    mostly accessed one) and -1 otherwise; the maximum-sum run of consecutive samples
    (Kadane) is the sub-range where the minority outcome wins.  It counts when a rate inside
    and another outside explain the samples better than one rate by ``min_gain`` or more
    (log-likelihood ratio, in nats: 6.5 for two adjacent accessed samples among 18 idle
    ones; runs in evenly mixed samples rarely pass).  Its ends, between the run's outer
    samples and their neighbours a quarter of the way from the idle one (aligned down to
    ``min_region``), are the cuts: none
    when every sample agrees or the run spans the whole region, one when it touches a
    region end, else two; a cut leaving a piece smaller than the region's size /
    ``min_piece_div`` (or ``min_region``) is dropped.  Cuts strictly inside the region are written to
    ``cuts`` in increasing order (room for two per region); returns how many.
    """
    cdef Py_ssize_t n = start.shape[0], m = addrs.shape[0]
    cdef Py_ssize_t i, j, lo, best_lo, best_hi, w = 0
    cdef int64_t hits, hits_all, run, best, a_in, n_in
    cdef uint64_t c, last, min_piece
    cdef double gain
    cdef probe_t *p
    if m == 0 or n == 0:
        return 0
    if addrs.shape[1] != n or accessed.shape[0] != m or accessed.shape[1] != n:
        raise ValueError("addrs and accessed must be (samples, regions)")
    if cuts.shape[0] < 2 * n:
        raise ValueError("cuts needs room for two cuts per region")
    if min_region == 0:
        min_region = 1
    p = <probe_t *>malloc(m * sizeof(probe_t))
    if p == NULL:
        raise MemoryError()
    with nogil:
        for i in range(n):
            hits = 0
            for j in range(m):
                p[j].addr = addrs[j, i]
                p[j].acc = accessed[j, i] != 0
                hits += accessed[j, i] != 0
            if hits == 0 or hits == m:
                continue
            for j in range(m):
                if (accessed[j, i] != 0) == (2 * hits <= m):
                    p[j].w = 1
                else:
                    p[j].w = -1
            sort_probes(p, m)
            best = 0
            best_lo = best_hi = -1
            run = 0
            lo = 0
            for j in range(m):
                if run <= 0:
                    run = 0
                    lo = j
                run += p[j].w
                if run > best:
                    best, best_lo, best_hi = run, lo, j
            if best_lo < 0 or (best_lo == 0 and best_hi == m - 1):
                continue
            n_in = best_hi - best_lo + 1
            a_in = (n_in + best) / 2            # minority samples in the run
            hits_all = hits
            if 2 * hits > m:
                hits = m - hits                 # minority samples overall
            gain = (bernoulli_ll(a_in, n_in) + bernoulli_ll(hits - a_in, m - n_in)
                    - bernoulli_ll(hits, m))
            if gain < (min_gain if 2 * hits_all > m else min_gain_accessed):
                continue
            min_piece = (end[i] - start[i]) / min_piece_div
            if min_piece < min_region:
                min_piece = min_region
            last = start[i]
            if best_lo > 0:
                c = edge_cut(&p[best_lo - 1], &p[best_lo], p[best_lo - 1].acc, min_region)
                if c >= last + min_piece and c + min_piece <= end[i]:
                    cuts[w] = c
                    w += 1
                    last = c
            if best_hi < m - 1:
                c = edge_cut(&p[best_hi], &p[best_hi + 1], p[best_hi].acc, min_region)
                if c >= last + min_piece and c + min_piece <= end[i]:
                    cuts[w] = c
                    w += 1
    free(p)
    return w


cdef inline Py_ssize_t emit(Py_ssize_t w, uint64_t a, uint64_t b, Py_ssize_t i,
                            uint64_t[::1] o_start, uint64_t[::1] o_end,
                            uint32_t[::1] o_nr, uint32_t[::1] o_bp, uint32_t[::1] o_last,
                            uint32_t[::1] o_age, const uint32_t[::1] nr_accesses,
                            const uint32_t[::1] nr_accesses_bp,
                            const uint32_t[::1] last_nr_accesses,
                            const uint32_t[::1] age) noexcept nogil:
    o_start[w] = a
    o_end[w] = b
    o_nr[w] = nr_accesses[i]
    o_bp[w] = nr_accesses_bp[i]
    o_last[w] = last_nr_accesses[i]
    o_age[w] = age[i]
    return w + 1


def split_at(const uint64_t[::1] start, const uint64_t[::1] end,
             const uint32_t[::1] nr_accesses, const uint32_t[::1] nr_accesses_bp,
             const uint32_t[::1] last_nr_accesses, const uint32_t[::1] age,
             const uint64_t[::1] cuts, const uint32_t[::1] pieces, uint64_t min_region,
             uint64_t[::1] rng):
    """Split regions at ``cuts`` (increasing addresses; those outside every region or on a
    boundary are ignored) and into ``pieces[i]`` near-equal pieces where that is 2 or
    more: cuts at ``start + (j + 0.5 + u) * (size // k)`` for j = 0 .. k-2, one uniform
    ``u`` in [0, 1) (in 1/1024ths) per such region, aligned down to ``min_region``, so
    repeated splits do not cut at the same addresses.  Both kinds of cuts of a region
    apply together.  Pieces copy the parent's counters.  Returns the six new columns.
    """
    cdef Py_ssize_t n = start.shape[0], nc = cuts.shape[0]
    cdef Py_ssize_t cap = n + nc, i
    if pieces.shape[0] != n:
        raise ValueError("pieces needs one entry per region")
    for i in range(n):
        cap += pieces[i]
    o_start_a = np.empty(cap, dtype=np.uint64)
    o_end_a = np.empty(cap, dtype=np.uint64)
    o_nr_a = np.empty(cap, dtype=np.uint32)
    o_bp_a = np.empty(cap, dtype=np.uint32)
    o_last_a = np.empty(cap, dtype=np.uint32)
    o_age_a = np.empty(cap, dtype=np.uint32)
    cdef uint64_t[::1] o_start = o_start_a
    cdef uint64_t[::1] o_end = o_end_a
    cdef uint32_t[::1] o_nr = o_nr_a
    cdef uint32_t[::1] o_bp = o_bp_a
    cdef uint32_t[::1] o_last = o_last_a
    cdef uint32_t[::1] o_age = o_age_a
    cdef Py_ssize_t j, k, w = 0, c = 0
    cdef uint64_t prev, u, piece, ecut, cut
    if min_region == 0:
        min_region = 1
    with nogil:
        for i in range(n):
            while c < nc and cuts[c] <= start[i]:
                c += 1
            prev = start[i]
            k = pieces[i] if pieces[i] > 1 else 1
            piece = (end[i] - start[i]) / k
            u = rand_range(&rng[0], 0, 1024) if k > 1 else 0
            j = 0
            while True:
                # the next even cut (if any) and the next explicit cut (if any), in order
                ecut = end[i]
                while j < k - 1:
                    ecut = start[i] + <uint64_t>j * piece + piece * (512 + u) / 1024
                    ecut -= ecut % min_region
                    if ecut > prev:
                        break
                    j += 1
                    ecut = end[i]
                cut = ecut
                if c < nc and cuts[c] < end[i] and cuts[c] < cut:
                    cut = cuts[c]
                if cut >= end[i]:
                    break
                if cut > prev:
                    w = emit(w, prev, cut, i, o_start, o_end, o_nr, o_bp, o_last, o_age,
                             nr_accesses, nr_accesses_bp, last_nr_accesses, age)
                    prev = cut
                if c < nc and cuts[c] == cut:
                    c += 1
                if ecut == cut:
                    j += 1
            while c < nc and cuts[c] < end[i]:
                c += 1
            w = emit(w, prev, end[i], i, o_start, o_end, o_nr, o_bp, o_last, o_age,
                     nr_accesses, nr_accesses_bp, last_nr_accesses, age)
    return (o_start_a[:w], o_end_a[:w], o_nr_a[:w], o_bp_a[:w], o_last_a[:w], o_age_a[:w])


cdef struct cand_t:
    uint64_t addr
    uint64_t size


cdef int cmp_cand_size(const void *a, const void *b) noexcept nogil:
    cdef cand_t *x = <cand_t *>a
    cdef cand_t *y = <cand_t *>b
    if x.size != y.size:
        return -1 if x.size > y.size else 1
    return -1 if x.addr < y.addr else (1 if x.addr > y.addr else 0)


cdef int cmp_cand_addr(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<cand_t *>a).addr
    cdef uint64_t y = (<cand_t *>b).addr
    return -1 if x < y else (1 if x > y else 0)


cdef Py_ssize_t flank_cuts(const uint64_t[::1] start, const uint64_t[::1] end,
                           const uint32_t[::1] count, uint32_t nr_samples,
                           uint64_t min_region, uint64_t *out) noexcept nogil:
    """:func:`plan_split`'s flanks (step 1) of regions read ``count`` times, into ``out``
    (room for one per region) in increasing order; returns how many."""
    cdef Py_ssize_t n = start.shape[0], i, k, nf = 0
    cdef int64_t d
    cdef uint64_t w, hot_sz, cold_sz
    for k in range(n - 1):
        if end[k] != start[k + 1]:
            continue
        d = <int64_t>count[k + 1] - <int64_t>count[k]
        if 4 * (d if d > 0 else -d) <= <int64_t>nr_samples:
            continue
        hot_sz = 0              # the run of regions hotter than the colder one
        if d < 0:               # the left one is hotter
            cold_sz = end[k + 1] - start[k + 1]
            i = k
            while True:
                hot_sz += end[i] - start[i]
                if i == 0 or end[i - 1] != start[i] or 4 * (
                        <int64_t>count[i - 1]
                        - <int64_t>count[k + 1]) <= <int64_t>nr_samples:
                    break
                i -= 1
        else:
            cold_sz = end[k] - start[k]
            i = k + 1
            while True:
                hot_sz += end[i] - start[i]
                if i == n - 1 or end[i] != start[i + 1] or 4 * (
                        <int64_t>count[i + 1]
                        - <int64_t>count[k]) <= <int64_t>nr_samples:
                    break
                i += 1
        w = hot_sz / 4
        if w > cold_sz / 2:
            w = cold_sz / 2
        w -= w % min_region
        if w == 0:
            continue
        out[nf] = end[k] + w if d < 0 else end[k] - w
        nf += 1
    return nf


cdef Py_ssize_t merge_sorted(const uint64_t *a, Py_ssize_t na, const uint64_t *b,
                             Py_ssize_t nb, uint64_t *out) noexcept nogil:
    """The union of two increasing lists into ``out`` (room for na + nb), each address
    once; returns how many."""
    cdef Py_ssize_t e = 0, f = 0, w = 0
    cdef uint64_t c
    while e < na or f < nb:
        if f >= nb or (e < na and a[e] <= b[f]):
            c = a[e]
            e += 1
        else:
            c = b[f]
            f += 1
        if w and out[w - 1] == c:
            continue
        out[w] = c
        w += 1
    return w


def flanks(const uint64_t[::1] start, const uint64_t[::1] end, const uint32_t[::1] count,
           uint32_t nr_samples, uint64_t min_region, const uint64_t[::1] cuts,
           uint64_t min_host=0):
    """The flank cuts :func:`plan_split` makes (its step 1) beside sharp boundaries of
    regions read ``count`` of ``nr_samples`` times, merged with ``cuts`` (increasing):
    ``(all, n_large)``, the increasing addresses once each, and how many of them are
    strictly inside a region larger than ``min_host`` bytes."""
    cdef Py_ssize_t n = start.shape[0], nc = cuts.shape[0], nf = 0, w, k, r = 0
    cdef Py_ssize_t n_large = 0
    cdef const uint64_t *cp = NULL
    if min_region == 0:
        min_region = 1
    fl_a = np.empty(n if n else 1, dtype=np.uint64)
    out_a = np.empty(n + nc if n + nc else 1, dtype=np.uint64)
    cdef uint64_t[::1] fl = fl_a
    cdef uint64_t[::1] out = out_a
    if nc:
        cp = &cuts[0]
    with nogil:
        if n:
            nf = flank_cuts(start, end, count, nr_samples, min_region, &fl[0])
        w = merge_sorted(cp, nc, &fl[0], nf, &out[0])
        for k in range(w):
            while r < n and end[r] <= out[k]:
                r += 1
            if r < n and start[r] < out[k] and end[r] - start[r] > min_host:
                n_large += 1
    return out_a[:w], n_large


def plan_split(const uint64_t[::1] start, const uint64_t[::1] end,
               const uint32_t[::1] last_nr_accesses, const uint64_t[::1] evidence,
               int64_t room, uint32_t nr_samples, uint64_t min_region, uint64_t boost):
    """Where to split one target's regions with at most ``room`` more regions; returns
    ``(cuts, pieces)`` for :func:`split_at`.

    1. Cuts: ``evidence`` (increasing addresses from :func:`sample_edges`) and *flanks*:
       beside each boundary whose two regions' ``last_nr_accesses`` differ by more than a
       quarter of ``nr_samples``, a cut into the colder region at a quarter of the hotter
       side's size (the adjacent run of regions over the colder one's count by that much,
       so a hot range already cut into even pieces still gets a flank its own size would
       give), at most half the colder one's, aligned down to ``min_region``.  Only
       cuts strictly inside a region count; over ``room``, the cuts in the largest regions
       are kept.
    2. Pieces: the room left evens regions out by weight = size, times ``boost`` where
       the samples disagreed (0 < ``last_nr_accesses`` < ``nr_samples``): the smallest
       weight per piece ``S`` whose ``ceil(weight / S)`` pieces (at most size /
       ``min_region``) fit, found by bisection.
    """
    cdef Py_ssize_t n = start.shape[0]
    cdef Py_ssize_t i, e, nm, nc = 0, r
    cdef uint64_t c, s_lo, s_hi, mid, need, x, most
    cdef cand_t *cand
    if min_region == 0:
        min_region = 1
    pieces_a = np.ones(n, dtype=np.uint32)
    cdef uint32_t[::1] pieces = pieces_a
    if room <= 0 or n == 0:
        return np.zeros(0, np.uint64), pieces_a
    # the evidence and the flanks, once each; keep the cuts strictly inside a region
    merged_a, _ = flanks(start, end, last_nr_accesses, nr_samples, min_region, evidence)
    cdef const uint64_t[::1] merged = merged_a
    nm = merged.shape[0]
    cand = <cand_t *>malloc((nm + 1) * sizeof(cand_t))
    if cand == NULL:
        raise MemoryError()
    with nogil:
        r = 0
        for e in range(nm):
            c = merged[e]
            while r < n and end[r] <= c:
                r += 1
            if r >= n or c <= start[r]:
                continue
            cand[nc].addr = c
            cand[nc].size = end[r] - start[r]
            nc += 1
        if nc > room:
            qsort(cand, nc, sizeof(cand_t), cmp_cand_size)
            nc = room
            qsort(cand, nc, sizeof(cand_t), cmp_cand_addr)
        room -= nc
        if room > 0:
            s_hi = 1
            for i in range(n):
                x = end[i] - start[i]
                if last_nr_accesses[i] > 0 and last_nr_accesses[i] < nr_samples:
                    x *= boost
                if x > s_hi:
                    s_hi = x
            s_lo = 1
            while s_hi - s_lo > 1:
                mid = s_lo + (s_hi - s_lo) / 2
                need = 0
                for i in range(n):
                    x = end[i] - start[i]
                    most = x / min_region if x >= min_region else 1
                    if last_nr_accesses[i] > 0 and last_nr_accesses[i] < nr_samples:
                        x *= boost
                    x = (x + mid - 1) / mid
                    need += (x if x < most else most) - 1
                if need <= <uint64_t>room:
                    s_hi = mid
                else:
                    s_lo = mid
            for i in range(n):
                x = end[i] - start[i]
                most = x / min_region if x >= min_region else 1
                if last_nr_accesses[i] > 0 and last_nr_accesses[i] < nr_samples:
                    x *= boost
                x = (x + s_hi - 1) / s_hi
                pieces[i] = <uint32_t>(x if x < most else most)
    cuts_a = np.empty(nc, dtype=np.uint64)
    for i in range(nc):
        cuts_a[i] = cand[i].addr
    free(cand)
    return cuts_a, pieces_a


def rate_learn(double[::1] hits, double[::1] trials, const uint64_t[::1] start,
               const uint64_t[::1] end, const uint64_t[:, ::1] addrs,
               const uint8_t[:, ::1] accessed, uint64_t bin_size, double decay):
    """One aggregation into a long-run access rate map: both maps decay by ``decay``, then
    every sample (``addrs[k, i]``, ``accessed[k, i]`` of region ``i``) adds one trial, and
    one hit if accessed, to its bin.  Bins cut the *covered* bytes (the regions end to end,
    gaps left out) into ``bin_size`` pieces: a sample's bin is (bytes of the regions before
    its own + its offset in its own) / ``bin_size``, the last bin taking any overflow."""
    cdef Py_ssize_t nb = hits.shape[0], n = start.shape[0], m = addrs.shape[0]
    cdef Py_ssize_t b, i, k
    cdef uint64_t below = 0, a
    if trials.shape[0] != nb or nb == 0:
        raise ValueError("hits and trials need the same, non-zero length")
    if m and (addrs.shape[1] != n or accessed.shape[0] != m or accessed.shape[1] != n):
        raise ValueError("addrs and accessed must be (samples, regions)")
    if bin_size == 0:
        bin_size = 1
    with nogil:
        for b in range(nb):
            hits[b] *= decay
            trials[b] *= decay
        for i in range(n):
            for k in range(m):
                a = addrs[k, i]
                a = a - start[i] if a > start[i] else 0
                b = <Py_ssize_t>((below + a) / bin_size)
                if b >= nb:
                    b = nb - 1
                trials[b] += 1.0
                if accessed[k, i]:
                    hits[b] += 1.0
            below += end[i] - start[i]


def region_rates(const uint64_t[::1] start, const uint64_t[::1] end,
                 const double[::1] hits, const double[::1] trials, uint64_t bin_size,
                 double[::1] h_out, double[::1] m_out):
    """Each region's long-run hits and trials from the map of :func:`rate_learn` (same
    covered-bytes bins): the sums over the bins the region overlaps."""
    cdef Py_ssize_t nb = hits.shape[0], n = start.shape[0], i, b, b0, b1
    cdef uint64_t lo = 0, hi
    cdef double h, m
    if h_out.shape[0] < n or m_out.shape[0] < n:
        raise ValueError("h_out and m_out need one entry per region")
    if bin_size == 0:
        bin_size = 1
    with nogil:
        for i in range(n):
            hi = lo + (end[i] - start[i])
            b0 = <Py_ssize_t>(lo / bin_size)
            b1 = <Py_ssize_t>((hi + bin_size - 1) / bin_size)
            if b0 > nb - 1:
                b0 = nb - 1
            if b1 > nb:
                b1 = nb
            if b1 <= b0:
                b1 = b0 + 1
            h = 0.0
            m = 0.0
            for b in range(b0, b1):
                h += hits[b]
                m += trials[b]
            h_out[i] = h
            m_out[i] = m
            lo = hi


cdef inline uint64_t run_avg(const uint64_t[::1] start, const uint64_t[::1] end,
                             const uint32_t[::1] nr_accesses, Py_ssize_t a,
                             Py_ssize_t b) noexcept nogil:
    """Size-weighted ``nr_accesses`` of regions ``[a, b)``, floored (as a merge counts)."""
    cdef uint64_t acc = 0, sz = 0, s
    cdef Py_ssize_t i
    for i in range(a, b):
        s = end[i] - start[i]
        acc += <uint64_t>nr_accesses[i] * s
        sz += s
    return acc / sz if sz else 0


cdef enum:
    HOT_SURE = 1
    HOT_JOIN = 2
    COLD = 3


def pool_runs(uint64_t[::1] start, uint64_t[::1] end, uint32_t[::1] nr_accesses,
              uint32_t[::1] nr_accesses_bp, uint32_t[::1] last_nr_accesses,
              uint32_t[::1] age, const double[::1] hits, const double[::1] trials,
              uint32_t nr_samples, double rate, double z, double keep,
              uint64_t[::1] restore, double join_z, bint cold, double cold_z):
    """Pool runs of adjacent regions that the long-run rate map puts on one side of
    ``rate`` of the samples; compacts the columns in place like ``merge_regions``.

    With ``p = hits[i] / trials[i]`` and ``se = sqrt(p * (1 - p) / trials[i])``, region
    ``i`` (``trials[i] >= 2 * nr_samples``, reading over an eighth of the samples now:
    ``8 * nr_accesses > nr_samples``) is *sure* hot when ``p - z * se >= rate``, and may
    *join* a hot run when ``p - join_z * se >= rate`` (``join_z`` < ``z``: a region beside a
    sure one joins unless it is confidently under ``rate``).  With ``cold``, a region with
    ``trials[i] >= 4 * nr_samples``, ``rate / 2 <= p`` and ``p + cold_z * se < rate``,
    reading under three quarters of the samples now, is *cold*.  A maximal run of adjacent
    hot (sure or join) regions holding a sure one, or of adjacent cold regions, becomes one
    region: size-weighted ``nr_accesses``, ``last_nr_accesses`` and ``age`` (floored),
    ``nr_accesses_bp`` = ``nr_accesses`` x BP; but only if the run's size-weighted
    ``nr_accesses`` stays on its side of ``rate * nr_samples`` (a hot run that would read
    under it pools its runs of sure regions alone, under the same check; a cold run that
    would read over it does not pool).  The run's inner boundaries go to ``restore``
    (room for one per region), except those between two *full* regions (``p - z * se >=
    keep`` and every sample accessed).  Returns ``(new region count, boundaries
    written)``."""
    cdef Py_ssize_t n = start.shape[0], i, j, k, l, m, w = -1, nr_restore = 0
    cdef double p, se, bar = rate * nr_samples
    cdef uint64_t sz_w = 0, sz_i, acc_nr = 0, acc_last = 0, acc_age = 0
    cdef bint has_sure, full_prev = False
    cdef uint8_t *cls
    cdef uint8_t *full
    cdef uint8_t *join
    if hits.shape[0] < n or trials.shape[0] < n or restore.shape[0] < n:
        raise ValueError("hits, trials and restore need one entry per region")
    if n == 0:
        return 0, 0
    cls = <uint8_t *>malloc(3 * n)
    if cls == NULL:
        raise MemoryError()
    full = cls + n
    join = cls + 2 * n
    with nogil:
        for i in range(n):          # each region's side of the bar
            cls[i] = 0
            full[i] = 0
            join[i] = 0
            if trials[i] < 2.0 * nr_samples or trials[i] <= 0:
                continue
            p = hits[i] / trials[i]
            se = sqrt(p * (1.0 - p) / trials[i])
            if 8 * <uint64_t>nr_accesses[i] > nr_samples:
                if p - z * se >= rate:
                    cls[i] = HOT_SURE
                elif p - join_z * se >= rate:
                    cls[i] = HOT_JOIN
            if (cold and cls[i] == 0 and trials[i] >= 4.0 * nr_samples
                    and 2.0 * p >= rate and p + cold_z * se < rate
                    and 4 * <uint64_t>nr_accesses[i] < 3 * <uint64_t>nr_samples):
                cls[i] = COLD
            full[i] = p - z * se >= keep and nr_accesses[i] == nr_samples
        i = 0
        while i < n:                # which regions join the region before them
            j = i + 1
            if cls[i] != 0:
                while (j < n and (cls[j] == COLD) == (cls[i] == COLD) and cls[j] != 0
                       and end[j - 1] == start[j]):
                    j += 1
            if j - i > 1 and cls[i] == COLD:
                if run_avg(start, end, nr_accesses, i, j) < bar:
                    for k in range(i + 1, j):
                        join[k] = 1
            elif j - i > 1:
                has_sure = False
                for k in range(i, j):
                    if cls[k] == HOT_SURE:
                        has_sure = True
                if has_sure and run_avg(start, end, nr_accesses, i, j) >= bar:
                    for k in range(i + 1, j):
                        join[k] = 1
                elif has_sure:
                    k = i
                    while k < j:
                        l = k + 1
                        if cls[k] == HOT_SURE:
                            while l < j and cls[l] == HOT_SURE:
                                l += 1
                            if l - k > 1 and run_avg(start, end, nr_accesses, k, l) >= bar:
                                for m in range(k + 1, l):
                                    join[m] = 1
                        k = l
            i = j
        for i in range(n):
            sz_i = end[i] - start[i]
            if w >= 0 and join[i]:
                if not (full[i] and full_prev):
                    restore[nr_restore] = start[i]
                    nr_restore += 1
                acc_nr += <uint64_t>nr_accesses[i] * sz_i
                acc_last += <uint64_t>last_nr_accesses[i] * sz_i
                acc_age += <uint64_t>age[i] * sz_i
                sz_w += sz_i
                end[w] = end[i]
                nr_accesses[w] = <uint32_t>(acc_nr / sz_w)
                nr_accesses_bp[w] = nr_accesses[w] * BP_ONE
                last_nr_accesses[w] = <uint32_t>(acc_last / sz_w)
                age[w] = <uint32_t>(acc_age / sz_w)
            else:
                w += 1
                move_region(start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age,
                            w, i)
                sz_w = sz_i
                acc_nr = <uint64_t>nr_accesses[i] * sz_i
                acc_last = <uint64_t>last_nr_accesses[i] * sz_i
                acc_age = <uint64_t>age[i] * sz_i
            full_prev = full[i]
    free(cls)
    return w + 1, nr_restore


def merge_small(uint64_t[::1] start, uint64_t[::1] end, uint32_t[::1] nr_accesses,
                uint32_t[::1] nr_accesses_bp, uint32_t[::1] last_nr_accesses,
                uint32_t[::1] age, uint64_t max_size, Py_ssize_t k):
    """Free up to ``k`` regions by merging adjacent ones (no gap between them) whose union
    stays within ``max_size``, left to right; compacts the columns in place and returns the
    new count.  Counters and age are size-weighted as at a merge (``nr_accesses_bp``
    too: at the split it holds the moving sum).  For the split, when the edge cuts
    in large regions need more room than the budget has left: a run of tiny regions
    reading hot and idle in turn costs a region each and shows a few KiB, the cut a hot
    range hidden in a large idle region needs shows MiBs."""
    cdef Py_ssize_t i, w = -1, n = start.shape[0], freed = 0
    cdef uint64_t sz_l, sz_r, sz
    with nogil:
        for i in range(n):
            if w >= 0 and freed < k and end[w] == start[i] and end[i] - start[w] <= max_size:
                sz_l = end[w] - start[w]
                sz_r = end[i] - start[i]
                sz = sz_l + sz_r
                nr_accesses[w] = <uint32_t>((<uint64_t>nr_accesses[w] * sz_l
                                             + <uint64_t>nr_accesses[i] * sz_r) / sz)
                nr_accesses_bp[w] = <uint32_t>((<uint64_t>nr_accesses_bp[w] * sz_l
                                                + <uint64_t>nr_accesses_bp[i] * sz_r) / sz)
                last_nr_accesses[w] = <uint32_t>((<uint64_t>last_nr_accesses[w] * sz_l
                                                  + <uint64_t>last_nr_accesses[i] * sz_r) / sz)
                age[w] = <uint32_t>((<uint64_t>age[w] * sz_l + <uint64_t>age[i] * sz_r) / sz)
                end[w] = end[i]
                freed += 1
                continue
            w += 1
            if w != i:
                move_region(start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age,
                            w, i)
    return w + 1


def edge_pieces(const uint64_t[::1] start, const uint64_t[::1] end,
                const uint32_t[::1] last_nr_accesses, const uint64_t[::1] cuts,
                uint32_t nr_samples, uint64_t lim):
    """Extra pieces per region for the coin-flip edge: ``(size - 1) // lim`` for regions
    larger than ``lim`` that read 3/8 to 5/8 of ``nr_samples`` (``|8 x last - 4 x
    nr_samples| <= nr_samples``) and hold none of ``cuts`` (increasing addresses: an edge
    found in their samples) strictly inside; 0 for the others.  Returns (int64 array,
    total)."""
    cdef Py_ssize_t n = start.shape[0], nc = cuts.shape[0], i, c = 0
    cdef int64_t d, total = 0
    cdef uint64_t sz
    out_a = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] out = out_a
    if lim == 0:
        lim = 1
    with nogil:
        for i in range(n):
            while c < nc and cuts[c] <= start[i]:
                c += 1
            if c < nc and cuts[c] < end[i]:
                continue
            sz = end[i] - start[i]
            if sz <= lim:
                continue
            d = 8 * <int64_t>last_nr_accesses[i] - 4 * <int64_t>nr_samples
            if d > <int64_t>nr_samples or -d > <int64_t>nr_samples:
                continue
            out[i] = <int64_t>((sz - 1) / lim)
            total += out[i]
    return out_a, total


def report_edges(const uint64_t[::1] start, const uint64_t[::1] end,
                 const uint32_t[::1] nr_accesses, const uint32_t[::1] nr_accesses_bp,
                 const uint32_t[::1] last_nr_accesses, const uint32_t[::1] age,
                 const uint64_t[::1] cuts, const uint64_t[::1] pooled,
                 const uint64_t[:, ::1] addrs, const uint8_t[:, ::1] accessed,
                 uint32_t nr_samples, uint32_t min_taken, Py_ssize_t room):
    """The regions as this aggregation's samples show them: regions that read under half
    of ``nr_samples`` are cut at the ``cuts`` strictly inside them (increasing addresses:
    the edges :func:`sample_edges` found), in address order while ``room`` lasts, unless
    one of the ``pooled`` boundaries (increasing: the inner boundaries of pooled runs) is
    strictly inside them.  A piece holding ``min_taken`` or more of the samples
    (``addrs[k, i]`` / ``accessed[k, i]``, any addresses) whose accessed share, scaled to
    ``nr_samples`` and rounded, reads at least half of them gets that count
    (``nr_accesses_bp`` = count x BP); every other piece keeps its region's counters.
    Returns ``None`` when no cut applies, else the six new columns and the cuts applied."""
    cdef Py_ssize_t n = start.shape[0], nc = cuts.shape[0], npool = pooled.shape[0]
    cdef Py_ssize_t ks = addrs.shape[0], ns = addrs.shape[1]
    cdef Py_ssize_t i, j = 0, p = 0, c, w, lo, hi, mid, nu = 0
    cdef uint64_t a, est
    if accessed.shape[0] != ks or accessed.shape[1] != ns:
        raise ValueError("addrs and accessed must have the same shape")
    if room <= 0 or nc == 0 or n == 0:
        return None
    use_a = np.empty(nc, dtype=np.uint64)
    cdef uint64_t[::1] use = use_a
    with nogil:
        for c in range(nc):
            if nu >= room:
                break
            while j < n and end[j] <= cuts[c]:
                j += 1
            if j >= n:
                break
            if not (start[j] < cuts[c] and 2 * <uint64_t>nr_accesses[j] < nr_samples):
                continue
            while p < npool and pooled[p] <= start[j]:
                p += 1
            if p < npool and pooled[p] < end[j]:
                continue
            if nu and use[nu - 1] == cuts[c]:
                continue
            use[nu] = cuts[c]
            nu += 1
    if nu == 0:
        return None
    # the cuts as split_at makes them (one piece per region besides the cuts: no even
    # cuts, so its rng is not drawn from), then the pieces of cut regions re-counted
    cols = split_at(start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age,
                    use_a[:nu], np.ones(n, dtype=np.uint32), 1, np.zeros(1, dtype=np.uint64))
    cdef const uint64_t[::1] o_start = cols[0]
    cdef const uint64_t[::1] o_end = cols[1]
    cdef uint32_t[::1] o_nr = cols[2]
    cdef uint32_t[::1] o_bp = cols[3]
    w = o_start.shape[0]
    taken_a = np.zeros(w, dtype=np.uint64)
    acc_a = np.zeros(w, dtype=np.uint64)
    cut_a = np.zeros(w, dtype=np.uint8)
    cdef uint64_t[::1] taken = taken_a
    cdef uint64_t[::1] acc = acc_a
    cdef uint8_t[::1] was_cut = cut_a
    with nogil:
        c = 0
        for j in range(w):              # a piece of a cut region starts or ends at a cut
            while c < nu and use[c] < o_start[j]:
                c += 1
            was_cut[j] = c < nu and (use[c] == o_start[j] or use[c] == o_end[j])
        for i in range(ks):             # each sample into its piece
            for j in range(ns):
                a = addrs[i, j]
                lo = 0
                hi = w
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if o_start[mid] <= a:
                        lo = mid
                    else:
                        hi = mid
                if was_cut[lo] and o_start[lo] <= a < o_end[lo]:
                    taken[lo] += 1
                    acc[lo] += accessed[i, j] != 0
        for j in range(w):
            if not was_cut[j] or taken[j] < min_taken or taken[j] == 0:
                continue
            est = (2 * <uint64_t>nr_samples * acc[j] + taken[j]) // (2 * taken[j])
            if est > nr_samples:
                est = nr_samples
            if 2 * est >= nr_samples:
                o_nr[j] = <uint32_t>est
                o_bp[j] = o_nr[j] * BP_ONE
    return cols, nu
