"""Plain-Python reference implementations of every Cython kernel in damoncore._regions.

Written region by region, the way mm/damon/core.c reads, with Python ints and lists, so a
differential test can compare the vectorized kernels against an independent statement of
the same semantics (including the exact random choices: same splitmix64 stream).
"""

M64 = (1 << 64) - 1


class Rng:
    """splitmix64, the generator the Cython kernels use (state = one uint64)."""

    def __init__(self, state):
        self.state = int(state) & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def rand(self, lo, hi):
        if hi <= lo:
            return lo
        return lo + self.next() % (hi - lo)


def pick_sampling_addrs(regions, rng):
    for r in regions:
        r["sampling_addr"] = rng.rand(r["start"], r["end"])


def update_accesses(regions, accessed, len_window):
    mx = 0
    len_window = len_window or 1
    for r, acc in zip(regions, accessed):
        sub = r["last_nr_accesses"] * 10000 // len_window
        r["nr_accesses_bp"] = max(0, r["nr_accesses_bp"] - sub)
        if acc:
            r["nr_accesses_bp"] += 10000
            r["nr_accesses"] += 1
        mx = max(mx, r["nr_accesses"])
    return mx


def reset_aggregated(regions):
    for r in regions:
        r["last_nr_accesses"] = r["nr_accesses"]
        r["nr_accesses"] = 0


def merge_regions_of(regions, thres, sz_limit, mixed_sz_limit=0, nr_samples=0):
    def mixed(nr):                      # edge-split's rule, off without nr_samples
        return nr_samples and 4 * nr >= nr_samples and 8 * nr <= 7 * nr_samples

    out = []
    for r in regions:
        r = dict(r)
        if abs(r["nr_accesses"] - r["last_nr_accesses"]) > thres:
            r["age"] = 0
        else:
            r["age"] += 1
        r["nr_accesses_bp"] = r["nr_accesses"] * 10000
        prev = out[-1] if out else None
        lim = sz_limit
        if prev is not None and (mixed(prev["nr_accesses"]) or mixed(r["nr_accesses"])):
            lim = mixed_sz_limit
        if (prev is not None and prev["end"] == r["start"]
                and abs(prev["nr_accesses"] - r["nr_accesses"]) <= thres
                and (prev["end"] - prev["start"]) + (r["end"] - r["start"]) <= lim):
            sl, sr = prev["end"] - prev["start"], r["end"] - r["start"]
            prev["nr_accesses"] = (prev["nr_accesses"] * sl + r["nr_accesses"] * sr) // (sl + sr)
            prev["nr_accesses_bp"] = prev["nr_accesses"] * 10000
            prev["age"] = (prev["age"] * sl + r["age"] * sr) // (sl + sr)
            prev["end"] = r["end"]
        else:
            out.append(r)
    return out


def split_regions_of(regions, nr_subs, min_region, rng):
    out = []
    for r in regions:
        pieces = [dict(r)]
        sz_region = r["end"] - r["start"]
        i = 0
        while i < nr_subs - 1 and sz_region > 2 * min_region:
            i += 1
            sz_sub = rng.rand(1, 10) * sz_region // 10
            sz_sub -= sz_sub % min_region
            if sz_sub == 0 or sz_sub >= sz_region:
                continue
            left = pieces[0]
            right = dict(left)
            right["start"] = left["start"] + sz_sub
            left["end"] = right["start"]
            pieces.insert(1, right)
            sz_region = sz_sub
        out.extend(pieces)
    return out


def hot_score(r, max_nr_accesses, aggr_us, freq_weight, age_weight):
    freq = (r["nr_accesses_bp"] // 10000) * 100 // max(1, max_nr_accesses)
    age_sec = r["age"] * aggr_us // 1_000_000
    age_log = 0
    while age_log < 32 and age_sec:
        age_log += 1
        age_sec >>= 1
    if freq == 0:
        age_log = -age_log
    age_log += 32
    age_sub = age_log * 100 // 32 // 2
    hot = freq_weight * freq + age_weight * age_sub
    if freq_weight + age_weight:
        hot //= freq_weight + age_weight
    return min(99, hot * 99 // 100)


def pattern_match(r, min_sz, max_sz, min_nr, max_nr, min_age, max_age):
    sz = r["end"] - r["start"]
    nr = r["nr_accesses_bp"] // 10000
    return (min_sz <= sz <= max_sz and min_nr <= nr <= max_nr
            and min_age <= r["age"] <= max_age)


def score_histogram(regions, scores, mask):
    h = [0] * 100
    for r, s, m in zip(regions, scores, mask):
        if m:
            h[s] += r["end"] - r["start"]
    return h


def min_score_for(hist, esz):
    cum = 0
    score = 99
    while True:
        cum += hist[score]
        if cum >= esz or score == 0:
            return score
        score -= 1


def mark_reported(regions, reports):
    """reports: list of (addr, size, keep)."""
    acc = [0] * len(regions)
    for a, sz, keep in reports:
        if not keep:
            continue
        e = a + (sz or 1)
        for i, r in enumerate(regions):
            if r["start"] <= a < r["end"]:
                if e <= r["end"]:
                    acc[i] = 1
                break
    return acc


def feed_loop_next_input(last_input, score):
    goal, min_input = 10000, 10000
    if score == goal:
        return last_input
    if score >= 2 * goal:
        return min_input
    # next = last * ((goal - score) / goal + 1), never below the minimum input
    if score > goal:
        return max(last_input - last_input * (score - goal) // goal, min_input)
    return min(M64, last_input + last_input * (goal - score) // goal)


def effective_quota(esz_bp, goals_scores, sz, ms, total_charged_sz, total_charged_ns,
                    page_size=4096):
    """damos_set_effective_quota() restated: returns (esz, esz_bp).

    goals_scores: list of current*10000//target per goal (empty when no goals).
    """
    if not ms and not goals_scores:
        return sz, esz_bp
    esz = M64
    if goals_scores:
        esz_bp = feed_loop_next_input(max(esz_bp, 10000), max(goals_scores))
        if sz:
            esz_bp = min(esz_bp, sz * 10000)    # damoncore's anti-windup cap (documented)
        esz = esz_bp // 10000
    if ms:
        tp = (total_charged_sz * 1_000_000 // total_charged_ns) if total_charged_ns else page_size * 1024
        esz = min(tp * ms, esz)
    if sz and sz < esz:
        esz = sz
    return esz, esz_bp
