"""Plain-Python reference implementations of the kernels in damoncore._adapt (edge-split).

Region by region, with Python ints, lists and math.log, so the differential tests in
tests/core/test_edge_split.py compare the Cython against an independent statement of the
same rules (including the exact random draws: the splitmix64 of tests/reference.py).  The
merge's mixed-region rule lives in reference.merge_regions_of, as it does in
_regions.merge_regions.
"""

import math



def _ll(a, n):
    """Log-likelihood of a successes in n trials at their own rate."""
    if n <= 0:
        return 0.0
    out = 0.0
    for x in (a, n - a):
        if x > 0:
            out += x * math.log(x / n)
    return out


def _edge_cut(left, right, min_region):
    """left/right: (addr, accessed); a quarter of the way from the idle one."""
    (la, lacc), (ra, _) = left, right
    c = ra - (ra - la) // 4 if lacc else la + (ra - la) // 4
    return c - c % min_region


def sample_edges(regions, samples, min_region, min_gain=6.0, min_gain_accessed=6.0,
                 min_piece_div=16):
    """regions: [(start, end)]; samples: per region a list of (addr, accessed)."""
    min_region = min_region or 1
    cuts = []
    for (start, end), smp in zip(regions, samples):
        m = len(smp)
        hits = sum(1 for _, acc in smp if acc)
        if m == 0 or hits == 0 or hits == m:
            continue
        minority_accessed = 2 * hits <= m
        probes = sorted((addr, 1 if bool(acc) == minority_accessed else -1, bool(acc))
                        for addr, acc in smp)
        best, best_lo, best_hi, run, lo = 0, -1, -1, 0, 0
        for j, (_, w, _) in enumerate(probes):
            if run <= 0:
                run, lo = 0, j
            run += w
            if run > best:
                best, best_lo, best_hi = run, lo, j
        if best_lo < 0 or (best_lo == 0 and best_hi == m - 1):
            continue
        n_in = best_hi - best_lo + 1
        a_in = (n_in + best) // 2
        minority = hits if minority_accessed else m - hits
        gain = _ll(a_in, n_in) + _ll(minority - a_in, m - n_in) - _ll(minority, m)
        if gain < (min_gain if not minority_accessed else min_gain_accessed):
            continue
        min_piece = max(min_region, (end - start) // min_piece_div)
        last = start
        pairs = []
        if best_lo > 0:
            pairs.append((probes[best_lo - 1], probes[best_lo]))
        if best_hi < m - 1:
            pairs.append((probes[best_hi], probes[best_hi + 1]))
        for left, right in pairs:
            c = _edge_cut((left[0], left[2]), (right[0], right[2]), min_region)
            if c >= last + min_piece and c + min_piece <= end:
                cuts.append(c)
                last = c
    return cuts


def split_at(regions, cuts, pieces, min_region, rng):
    """Explicit cuts plus near-equal pieces (one rng draw per region with pieces > 1)."""
    min_region = min_region or 1
    out = []
    for r, k in zip(regions, pieces):
        start, end = r["start"], r["end"]
        at = {c for c in cuts if start < c < end}
        k = max(1, k)
        if k > 1:
            piece = (end - start) // k
            u = rng.rand(0, 1024)
            for j in range(k - 1):
                c = start + j * piece + piece * (512 + u) // 1024
                c -= c % min_region
                if start < c < end:
                    at.add(c)
        bounds = [start] + sorted(at) + [end]
        for a, b in zip(bounds, bounds[1:]):
            out.append(dict(r, start=a, end=b))
    return out


def flanks_and_cuts(regions, count, nr_samples, min_region, cuts, min_host=0):
    """_adapt.flanks: the flanks merged with ``cuts``, once each, and how many are strictly
    inside a region larger than min_host."""
    out = sorted(set(cuts) | set(flanks(regions, count, nr_samples, min_region)))
    large = sum(1 for c in out for s, e in regions if s < c < e and e - s > min_host)
    return out, large


def flanks(regions, count, nr_samples, min_region):
    """Cuts beside sharp boundaries (counts apart by over a quarter of nr_samples): into
    the colder region at a quarter of the hotter side's run, at most half the colder."""
    min_region = min_region or 1
    n = len(regions)
    out = []
    for k in range(n - 1):
        (s0, e0), (s1, e1) = regions[k], regions[k + 1]
        if e0 != s1:
            continue
        d = count[k + 1] - count[k]
        if 4 * abs(d) <= nr_samples:
            continue
        # the hotter side: the adjacent run of regions over the colder one by > 1/4
        hot, cold, step = (k, k + 1, -1) if d < 0 else (k + 1, k, 1)
        cold_sz = regions[cold][1] - regions[cold][0]
        hot_sz, i = 0, hot
        while True:
            hot_sz += regions[i][1] - regions[i][0]
            j = i + step
            if not 0 <= j < n or regions[min(i, j)][1] != regions[max(i, j)][0] \
                    or 4 * (count[j] - count[cold]) <= nr_samples:
                break
            i = j
        w = min(hot_sz // 4, cold_sz // 2)
        w -= w % min_region
        if w:
            out.append(e0 + w if d < 0 else e0 - w)
    return out


def plan_split(regions, last, evidence, room, nr_samples, min_region, boost):
    """regions: [(start, end)]; last: last_nr_accesses per region; -> (cuts, pieces)."""
    min_region = min_region or 1
    n = len(regions)
    pieces = [1] * n
    if room <= 0 or n == 0:
        return [], pieces
    flank = flanks(regions, last, nr_samples, min_region)
    cand = []
    for c in sorted(set(evidence) | set(flank)):
        for s, e in regions:
            if s < c < e:
                cand.append((c, e - s))
                break
    if len(cand) > room:
        cand = sorted(sorted(cand, key=lambda x: (-x[1], x[0]))[:room])
    room -= len(cand)
    if room > 0:
        def weight(i):
            s, e = regions[i]
            return (e - s) * (boost if 0 < last[i] < nr_samples else 1)

        def most(i):
            s, e = regions[i]
            return max(1, (e - s) // min_region)

        def count(per):
            return [min(-(-weight(i) // per), most(i)) for i in range(n)]

        lo, hi = 1, max(1, max(weight(i) for i in range(n)))
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            if sum(p - 1 for p in count(mid)) <= room:
                hi = mid
            else:
                lo = mid
        pieces = count(hi)
    return [c for c, _ in cand], pieces


def rate_learn(hits, trials, regions, samples, bin_size, decay):
    """hits/trials: lists of floats (updated in place); regions: [(start, end)]; samples:
    per region a list of (addr, accessed).  Bins cut the covered bytes, gaps left out."""
    nb = len(hits)
    for b in range(nb):
        hits[b] *= decay
        trials[b] *= decay
    below = 0
    for (start, end), smp in zip(regions, samples):
        for addr, acc in smp:
            b = min((below + max(addr - start, 0)) // max(bin_size, 1), nb - 1)
            trials[b] += 1.0
            if acc:
                hits[b] += 1.0
        below += end - start


def region_rates(regions, hits, trials, bin_size):
    """[(hits, trials)] per region: sums over the bins of the covered bytes it overlaps."""
    nb, bs, out, lo = len(hits), max(bin_size, 1), [], 0
    for start, end in regions:
        hi = lo + end - start
        b0 = min(lo // bs, nb - 1)
        b1 = min(-(-hi // bs), nb)
        b1 = max(b1, b0 + 1)
        h = m = 0.0
        for b in range(b0, b1):
            h += hits[b]
            m += trials[b]
        out.append((h, m))
        lo = hi
    return out


def pool_runs(regions, hm, nr_samples, rate, z, keep, join_z=None, cold_z=None):
    """regions: dicts of the six columns; hm: [(hits, trials)] per region; ``join_z``
    None: no joins (= ``z``); ``cold_z`` None: no cold runs.  Returns (the pooled
    regions, the restored boundaries)."""
    join_z = z if join_z is None else join_z
    bar = rate * nr_samples
    kind, full = [], []
    for r, (h, m) in zip(regions, hm):
        k, f = None, False
        if m >= 2.0 * nr_samples and m > 0:
            p = h / m
            se = math.sqrt(p * (1.0 - p) / m)
            if 8 * r["nr_accesses"] > nr_samples:
                if p - z * se >= rate:
                    k = "sure"
                elif p - join_z * se >= rate:
                    k = "join"
            if (k is None and cold_z is not None and m >= 4.0 * nr_samples
                    and 2 * p >= rate and p + cold_z * se < rate
                    and 4 * r["nr_accesses"] < 3 * nr_samples):
                k = "cold"
            f = p - z * se >= keep and r["nr_accesses"] == nr_samples
        kind.append(k)
        full.append(f)

    def avg(a, b):
        sz = sum(x["end"] - x["start"] for x in regions[a:b])
        return sum(x["nr_accesses"] * (x["end"] - x["start"]) for x in regions[a:b]) // sz

    def side(k):
        return None if k is None else k == "cold"

    groups, i, n = [], 0, len(regions)     # (a, b): regions [a, b) become one
    while i < n:
        j = i + 1
        while (j < n and kind[i] is not None and side(kind[j]) == side(kind[i])
               and regions[j - 1]["end"] == regions[j]["start"]):
            j += 1
        if kind[i] == "cold":
            groups += [(i, j)] if avg(i, j) < bar else [(k, k + 1) for k in range(i, j)]
        elif "sure" in kind[i:j] and avg(i, j) >= bar:
            groups.append((i, j))
        else:
            k = i
            while k < j:
                l = k + 1
                if kind[k] == "sure":
                    while l < j and kind[l] == "sure":
                        l += 1
                if kind[k] == "sure" and avg(k, l) >= bar:
                    groups.append((k, l))
                else:
                    groups += [(x, x + 1) for x in range(k, l)]
                k = l
        i = j
    out, restore = [], []
    for a, b in groups:
        w = dict(regions[a])
        if b - a > 1:
            parts = regions[a:b]
            tot = sum(x["end"] - x["start"] for x in parts)
            w["end"] = parts[-1]["end"]
            for c in ("nr_accesses", "last_nr_accesses", "age"):
                w[c] = sum(x[c] * (x["end"] - x["start"]) for x in parts) // tot
            w["nr_accesses_bp"] = w["nr_accesses"] * 10000
            restore += [regions[k]["start"] for k in range(a + 1, b)
                        if not (full[k] and full[k - 1])]
        out.append(w)
    return out, restore


def edge_pieces(regions, last, cuts, nr_samples, lim):
    """Extra pieces per region (see _adapt.edge_pieces)."""
    lim = lim or 1
    out = []
    for (start, end), lst in zip(regions, last):
        inside = any(start < c < end for c in cuts)
        near = abs(8 * lst - 4 * nr_samples) <= nr_samples
        out.append((end - start - 1) // lim if near and not inside and end - start > lim
                   else 0)
    return out


def report_edges(regions, cuts, pooled, samples, nr_samples, min_taken, room):
    """regions: dicts of the six columns; samples: [(addr, accessed)].  Returns None or
    (the reported regions, cuts applied) (see _adapt.report_edges)."""
    use = []
    for c in cuts:
        if len(use) >= room:
            break
        r = next((r for r in regions if r["start"] < c < r["end"]), None)
        if r is None or 2 * r["nr_accesses"] >= nr_samples:
            continue
        if any(r["start"] < p < r["end"] for p in pooled) or c in use:
            continue
        use.append(c)
    if not use:
        return None
    out = []
    for r in regions:
        inner = sorted(c for c in use if r["start"] < c < r["end"])
        bounds = [r["start"], *inner, r["end"]]
        for a, b in zip(bounds, bounds[1:]):
            p = dict(r, start=a, end=b)
            if inner:
                got = [acc for addr, acc in samples if a <= addr < b]
                if len(got) >= max(1, min_taken):
                    est = min(nr_samples, (2 * nr_samples * sum(1 for x in got if x)
                                           + len(got)) // (2 * len(got)))
                    if 2 * est >= nr_samples:
                        p["nr_accesses"] = est
                        p["nr_accesses_bp"] = est * 10000
            out.append(p)
    return out, len(use)


def merge_small(regions, max_size, k):
    """regions: dicts (COLUMNS of tests/reference.py); merge adjacent ones left to right
    while the union is within max_size, up to k merges; size-weighted counters."""
    out = []
    freed = 0
    for r in regions:
        r = dict(r)
        if out and freed < k and out[-1]["end"] == r["start"] \
                and r["end"] - out[-1]["start"] <= max_size:
            w = out[-1]
            sl, sr = w["end"] - w["start"], r["end"] - r["start"]
            for c in ("nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age"):
                w[c] = (w[c] * sl + r[c] * sr) // (sl + sr)
            w["end"] = r["end"]
            freed += 1
            continue
        out.append(r)
    return out
