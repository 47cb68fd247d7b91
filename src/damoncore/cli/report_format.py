"""The templates of ``report access`` (damo's ``--format``/``--style`` machinery): a record
head, a snapshot head, a line per region, a snapshot tail and a record tail, each a string
whose ``<keyword>``s are replaced by values (``damo help access_format_options`` lists the
same keywords).  Unknown words in angle brackets stay as they are, as damo leaves them.

Values follow damo's definitions: a region's access rate is ``nr_accesses`` in percent of
the snapshot's maximum (truncated), its age in microseconds is ``age`` times the
aggregation interval, its *temperature* is ``size * w_sz + rate * w_rate + age_us * w_age``,
negated when the region was not accessed; its *idle time* is 0 if accessed, else its age
plus one aggregation interval.  Unlike damo, the intervals are each snapshot's own (our
records carry them), not the record's first.  Colors (the snapshot heatmap, region boxes)
are ANSI codes only when ``color`` is set (the command sets it for a terminal).
"""

from __future__ import annotations

import math

from . import damo_fmt as f

MAX_DOTS = 20
#: damo's percentiles when none are asked for: the extremes, quartiles and the tails
DEFAULT_PERCENTILES = [0, 1, 25, 50, 75, 100 - 1, 100]
MAX_LEVEL = 9
# damo's default minimum widths (spaces appended)
MIN_CHARS = {"<index>": 3, "<start address>": 12, "<end address>": 11, "<size>": 11,
             "<access rate>": 5, "<access hz>": 6, "<age>": 13, "<filters passed type>": 10}
COLORSETS = {   # (background, foreground) 256-color codes per level 0..9
    "gray": ([232] * 10, [237, 239, 241, 243, 245, 247, 249, 251, 253, 255]),
    "flame": ([232, 1, 1, 2, 3, 3, 20, 21, 26, 27],
              [239, 235, 237, 239, 243, 245, 247, 249, 251, 255]),
    "emotion": ([232, 234, 20, 21, 26, 2, 3, 1, 1, 1],
                [239, 235, 237, 239, 243, 245, 247, 249, 251, 255])}


class Region:
    """One region of one snapshot, with damo's derived values."""

    __slots__ = ("start", "end", "samples", "percent", "age_aggrs", "age_us", "hz",
                 "sz_filter_passed")

    def __init__(self, start, end, samples, age, sample_us, aggr_us):
        self.start, self.end, self.samples, self.age_aggrs = start, end, samples, age
        self.percent = int(samples * 100.0 / max(1, aggr_us // sample_us))
        self.age_us = age * aggr_us
        self.hz = samples / (aggr_us / 1e6)
        self.sz_filter_passed = 0

    def size(self) -> int:
        return self.end - self.start


def regions_of(snap) -> list:
    t = snap.targets[0]
    return [Region(int(s), int(e), int(n), int(a), snap.sample_us, snap.aggr_us)
            for s, e, n, a in zip(t.start, t.end, t.nr_accesses, t.age)]


def temperature(r: Region, weights) -> float:
    w_sz, w_rate, w_age = weights
    score = r.size() * w_sz + r.percent * w_rate + r.age_us * w_age
    return score if r.percent > 0 else -score


def idle_time(r: Region, aggr_us: int) -> int:
    return 0 if r.percent > 0 else r.age_us + aggr_us


class Format:
    """What damo's ReportFormat holds: the five templates and the knobs they use."""

    def __init__(self, raw=False, weights=(0, 100, 100), percentiles=None,
                 hist_logscale=False, hist_cumulate=False, hist_ranges=None,
                 heatmap_width=80, heatmap_static=False, color=False, colorset="gray"):
        self.raw, self.weights = raw, list(weights)
        self.percentiles = percentiles
        self.hist_logscale, self.hist_cumulate, self.hist_ranges = (hist_logscale,
                                                                    hist_cumulate, hist_ranges)
        self.heatmap_width, self.heatmap_static = heatmap_width, heatmap_static
        self.color, self.colorset = color, colorset
        self.record_head = self.snapshot_head = self.region = None
        self.snapshot_tail = self.record_tail = None
        self.sort_by, self.sort_dsc = ["address"], []
        self.box = {"length": ("age", (1, 30), True), "color": ("access_rate", (0, 9), False),
                    "height": ("size", (1, 5), True), "align": "left", "colorset": "gray"}
        self.box_minmax = {}

    def total_sz_only(self) -> bool:
        return (self.snapshot_head, self.region, self.snapshot_tail) == ("", "",
                                                                         "<total bytes>")

    def colored(self, text, level, colorset=None):
        if not self.color:
            return text
        bg, fg = COLORSETS[colorset or self.colorset]
        return f"\x1b[48;5;{bg[level]}m\x1b[38;5;{fg[level]}m{text}\x1b[0m"

    def color_samples(self, colorset=None) -> str:
        return "".join(self.colored(str(i), i, colorset) for i in range(MAX_LEVEL + 1))


# --- histograms and percentiles --------------------------------------------------------
def _hist_ranges(lo, hi, n, logscale, cumulate):
    if logscale:
        step = max(int((hi - lo) / 2 ** n), 1)
        ranges = [[lo, lo + step]]
        while ranges[-1][1] < hi:
            width = ranges[-1][1] - ranges[-1][0]
            ranges.append([lo if cumulate else ranges[-1][1], ranges[-1][1] + width * 2])
        return ranges
    step = max(math.ceil((hi + 1 - lo) / n), 1)
    return [[lo if cumulate else lo + step * i, lo + step * (i + 1)] for i in range(n)]


def histogram(dist: dict, fmt: Format, fmt_x, parse_x) -> str:
    """``dist`` {metric: bytes} as damo's ten-row histogram with '*' bars."""
    keys = sorted(dist)
    if fmt.hist_ranges:
        ranges = [[parse_x(fmt.hist_ranges[i]), parse_x(fmt.hist_ranges[i + 1])]
                  for i in range(0, len(fmt.hist_ranges) - 1, 2)]
    else:
        ranges = _hist_ranges(keys[0], keys[-1], 10, fmt.hist_logscale, fmt.hist_cumulate)
    rows = []
    for lo, hi in ranges:
        y = sum(dist[k] for k in keys if lo <= k < hi)
        rows.append((f"[{fmt_x(lo, fmt.raw)}, {fmt_x(hi, fmt.raw)})", f.sz(y, fmt.raw), y))
    ys = [y for _, _, y in rows]
    per_dot = max(int((max(ys) - min(ys)) / MAX_DOTS), 1)
    wx, wy = max(len(x) for x, _, _ in rows), max(len(y) for _, y, _ in rows)
    out = []
    for x, ys_, y in rows:
        dots = min(math.ceil((y - min(ys)) / per_dot), MAX_DOTS)
        out.append(f"{x.ljust(wx)} {ys_.ljust(wy)} |{'*' * dots}{' ' * (MAX_DOTS - dots)}|")
    return "\n".join(out)


def sz_histogram(regions, fmt, metric, aggr_us, fmt_x, parse_x) -> str:
    if not regions:
        return "no region in snapshot"
    dist = {}
    for r in regions:
        m = metric(r, aggr_us)
        dist[m] = dist.get(m, 0) + r.size()
    return histogram(dist, fmt, fmt_x, parse_x)


def percentiles_to_show(fmt) -> list:
    p = fmt.percentiles
    if p is None:
        return DEFAULT_PERCENTILES
    return list(range(*p)) if len(p) <= 3 else sorted(p)


def percentile_values(regions, metric, aggr_us, wanted) -> list:
    rs = sorted(regions, key=lambda r: metric(r, aggr_us))
    total = sum(r.size() for r in rs)
    out, cum, r = [], 0.0, None
    for r in rs:
        cum += r.size() * 100 / total
        while wanted and cum >= wanted[0]:
            out.append((wanted.pop(0), metric(r, aggr_us)))
        if cum >= 100.0:
            break
    if 100 in wanted and r is not None:
        out.append((100, metric(r, aggr_us)))
    return out


def percentiles_str(regions, fmt, aggr_us, recency: bool) -> str:
    if not regions:
        return "no region in snapshot"
    metric = (lambda r, a: idle_time(r, a)) if recency else \
        (lambda r, a: temperature(r, [0] + fmt.weights[1:]))
    vals = percentile_values(regions, metric, aggr_us, percentiles_to_show(fmt))
    if recency:
        head = "<percentile> <idle time (us)>" if fmt.raw else "<percentile> <idle time>"
        fmt_v = f.time_us
    else:
        head = f"<percentile> <temperature (weights: {fmt.weights})>"
        fmt_v = f.nr
    if not vals:
        return head
    ps = [f"{p:d}" for p, _ in vals]
    vs = [fmt_v(v, fmt.raw) for _, v in vals]
    lo, hi = vals[0][1], vals[-1][1]
    per_dot = (hi - lo) / MAX_DOTS if hi != lo else 1
    wp, wv = max(map(len, ps)), max(map(len, vs))
    lines = [head]
    for p, v, (_, val) in zip(ps, vs, vals):
        n = int((val - lo) / per_dot)
        lines.append(f"{p.rjust(wp)}  {v.rjust(wv)}  |{'*' * n}{' ' * (MAX_DOTS - n)}|")
    return "\n".join(lines)


# --- the snapshot heatmap and region boxes ------------------------------------------------
def heatmap_str(regions, fmt: Format) -> str:
    """One line of temperature digits over the snapshot's space (damo's ``<heatmap>``)."""
    if not regions:
        return "n/a (no region)"
    total = (regions[-1].end - regions[0].start) if fmt.heatmap_static else \
        sum(r.size() for r in regions)
    unit = total / fmt.heatmap_width
    pixels, lo, hi = [], None, None
    start = regions[0].start
    while start < regions[-1].end:
        end = start + unit
        heat, void = 0.0, True
        for r in regions:
            if r.end <= start:
                continue
            if end <= r.start:
                break
            void = False
            s, e = max(r.start, start), min(r.end, end)
            clipped = Region.__new__(Region)
            clipped.start, clipped.end = s, e
            clipped.percent, clipped.age_us = r.percent, r.age_us
            heat += temperature(clipped, fmt.weights) * (e - s)
        if void:
            nxt = next((r for r in regions if r.start > end), None)
            if nxt is None:
                break
            new_start = nxt.start // unit * unit
            pixels.append((start, new_start, None))
            start = new_start
            continue
        t = heat / (end - start)
        pixels.append((start, end, t))
        lo = t if lo is None or t < lo else lo
        hi = t if hi is None or t > hi else hi
        start = end
    step = (hi - lo) / MAX_LEVEL or hi / MAX_LEVEL or 1
    dots = []
    for s, e, t in pixels:
        if t is None:
            n = (e - s) / unit
            dots.append("[...]" if not fmt.heatmap_static and n > 4 else "." * int(n))
            continue
        level = int((t - lo) / step)
        dots.append(fmt.colored(str(level), min(level, MAX_LEVEL)))
    return (f"{''.join(dots)}\n# min/max temperatures: {f.nr(lo, fmt.raw)}, "
            f"{f.nr(hi, fmt.raw)}, column size: {f.sz(unit, fmt.raw)}")


def _box_value(r: Region, what):
    return {"size": r.size(), "access_rate": r.percent, "age": r.age_us}.get(what)


def _rescale(v, src, dst, log):
    if log:
        v = math.log2(v) if v > 0 else 0
        src = [math.log2(x) if x > 0 else 0 for x in src]
    span = src[1] - src[0]
    scale = (dst[1] - dst[0]) / span if span > 0 else 1
    return (v - src[0]) * scale + dst[0]


def box_str(r: Region, fmt: Format) -> str:
    """damo's ``<box>``: length, color digit and height for three of the region's values."""
    b, mm = fmt.box, fmt.box_minmax
    what, span, log = b["length"]
    length = int(_rescale(_box_value(r, what), mm[what], span, log))
    what, span, log = b["color"]
    level = int(_rescale(_box_value(r, what), mm[what], span, log))
    row = "|" + fmt.colored(str(level) * length, min(max(level, 0), MAX_LEVEL),
                            b["colorset"]) + "|"
    if b["align"] == "right":
        row = " " * (b["length"][1][1] - length) + row
    what, span, log = b["height"]
    height = int(_rescale(_box_value(r, what), mm[what], span, log))
    box = "\n".join([row] * max(height, 1))
    return box + "\n" if span[1] > 1 else box


def set_box_minmax(fmt: Format, records) -> None:
    vals = {"size": [], "access_rate": [], "age": []}
    for rec in records:
        for s in rec.snapshots:
            for r in regions_of(s):
                vals["size"].append(r.size())
                vals["access_rate"].append(r.percent)
                vals["age"].append(r.age_us)
    fmt.box_minmax = {k: (min(v), max(v)) if v else (0, 0) for k, v in vals.items()}


# --- the keywords ---------------------------------------------------------------------------
def _rec_duration(rec):
    return (rec.snapshots[-1].end_us - rec.snapshots[0].start_us) * 1000 if rec.snapshots \
        else 0


def record_values(rec, fmt: Format) -> dict:
    iv = rec.intervals or {}
    g = iv.get("intervals_goal") or {}
    raw = fmt.raw
    return {
        "<kdamond index>": lambda: f"{rec.kdamond_idx}",
        "<context index>": lambda: f"{rec.context_idx}",
        "<scheme index>": lambda: "None",
        "<target id>": lambda: f"{rec.target_id}",
        "<abs start time>": lambda: f.time_ns(rec.snapshots[0].start_us * 1000, raw)
        if rec.snapshots else "n/a",
        "<duration>": lambda: f.time_ns(_rec_duration(rec), raw),
        "<intervals>": lambda: f"sample {f.time_us(iv.get('sample_us', 0), raw)}, aggr "
                               f"{f.time_us(iv.get('aggr_us', 0), raw)}",
        "<intervals goal>": lambda: (
            f"target {f.bp(g.get('access_bp', 0), raw)} accesses per "
            f"{f.nr(g.get('aggrs', 0), raw)} aggrs, [{f.time_us(g.get('min_sample_us', 0), raw)}"
            f", {f.time_us(g.get('max_sample_us', 0), raw)}] sampling interval"),
        "<data source>": lambda: "unknown",
        "<format strings>": lambda: "\n".join(
            f'{name}: "{t}"' for name, t in (
                ("record head", fmt.record_head), ("snapshot head", fmt.snapshot_head),
                ("region", fmt.region), ("snapshot tail", fmt.snapshot_tail),
                ("record tail", fmt.record_tail))),
    }


def snapshot_values(snap, rec, regions, fmt: Format) -> dict:
    raw, aggr = fmt.raw, snap.aggr_us
    base = rec.snapshots[0].start_us
    recency = lambda r, a: idle_time(r, a)
    temp = lambda r, a: temperature(r, [0] + fmt.weights[1:])
    max_hz = (aggr // snap.sample_us) / (aggr / 1e6)
    bw = sum(r.size() * r.samples for r in regions) / (aggr / 1e6)
    max_obs = sum(r.size() for r in regions) * (aggr // snap.sample_us)
    obs = sum(r.size() * r.samples for r in regions)
    return {
        "<total bytes>": lambda: f.sz(sum(r.size() for r in regions), raw),
        "<duration>": lambda: f.time_ns((snap.end_us - snap.start_us) * 1000, raw),
        "<start time>": lambda: f.time_ns((snap.start_us - base) * 1000, raw),
        "<end time>": lambda: f.time_ns((snap.end_us - base) * 1000, raw),
        "<abs start time>": lambda: f.time_ns(snap.start_us * 1000, raw),
        "<abs end time>": lambda: f.time_ns(snap.end_us * 1000, raw),
        "<number of regions>": lambda: f.nr(len(regions), raw),
        "<region box colors>": lambda: fmt.color_samples(fmt.box["colorset"]),
        "<temperature-sz histogram>": lambda: sz_histogram(regions, fmt, temp, aggr, f.nr,
                                                           float),
        "<temperature-df-passed-sz histogram>": lambda: sz_histogram([], fmt, temp, aggr,
                                                                     f.nr, float),
        "<recency-sz histogram>": lambda: sz_histogram(regions, fmt, recency, aggr,
                                                       f.time_us, float),
        "<recency-df-passed-sz histogram>": lambda: sz_histogram([], fmt, recency, aggr,
                                                                 f.time_us, float),
        "<recency percentiles>": lambda: percentiles_str(regions, fmt, aggr, True),
        "<df-passed recency percentiles>": lambda: "no region in snapshot",
        "<temperature percentiles>": lambda: percentiles_str(regions, fmt, aggr, False),
        "<df-passed temperature percentiles>": lambda: "no region in snapshot",
        "<heatmap>": lambda: heatmap_str(regions, fmt),
        "<filters passed heatmap>": lambda: "n/a (no region)",
        "<filters passed type>": lambda: "n/a",
        "<filters passed bytes>": lambda: f.sz(0, raw),
        "<positive access samples ratio>": lambda: f.percent(
            sum(r.samples for r in regions) * 100
            / max(1, (aggr // snap.sample_us) * len(regions)), raw),
        "<estimated memory bandwidth>": lambda: f"{f.sz(bw, raw)} per second",
        "<filters passed estimated memory bandwidth>": lambda: f"{f.sz(0, raw)} per second",
        "<intervals tuning status>": lambda: (
            f"{f.percent(obs * 100 / max(max_obs, 1), raw)} ({f.sz(obs, raw)} / "
            f"{f.sz(max_obs, raw)}) {f.time_us(snap.sample_us, raw)} {f.time_us(aggr, raw)}"),
        "<damos stats>": lambda: "none",
        "<snapshot intervals>": lambda: (
            f"sample {f.time_us(snap.sample_us, raw)} aggr {f.time_us(aggr, raw)} "
            f"(max access hz {f.hz(max_hz, raw, suffix=False)})"),
    }


def region_values(idx, r: Region, fmt: Format) -> dict:
    raw = fmt.raw
    return {
        "<index>": lambda: f.nr(idx, raw),
        "<start address>": lambda: f.sz(r.start, raw),
        "<end address>": lambda: f.sz(r.end, raw),
        "<size>": lambda: f.sz(r.size(), raw),
        "<access rate>": lambda: f.percent(r.percent, raw),
        "<access hz>": lambda: f.hz(r.hz, raw),
        "<age>": lambda: f.time_us(r.age_us, raw),
        "<temperature>": lambda: f.nr(temperature(r, fmt.weights), raw),
        "<probe hits>": lambda: "",
        "<filters passed bytes>": lambda: f.sz(r.sz_filter_passed, raw),
        "<box>": lambda: box_str(r, fmt),
    }


def fill(template, values: dict):
    """``template`` with its keywords replaced (None for an empty template)."""
    if not template:
        return None
    for key, value in values.items():
        if key in template:
            text = value()
            width = MIN_CHARS.get(key)
            if width and len(text) < width:
                text += " " * (width - len(text))
            template = template.replace(key, text)
    return template.replace("\\n", "\n")


def sorted_regions(regions, fmt: Format):
    for key in fmt.sort_by:
        dsc = "all" in fmt.sort_dsc or key in fmt.sort_dsc
        by = {"address": lambda r: r.start, "access_rate": lambda r: r.percent,
              "age": lambda r: r.age_us, "size": lambda r: r.size(),
              "temperature": lambda r: temperature(r, fmt.weights)}[key]
        regions = sorted(regions, key=by, reverse=dsc)
    return regions


def render(records, fmt: Format, snapshot_idx=None) -> str:
    """The report, damo's ``fmt_records()`` shape."""
    if any("<box>" in (t or "") for t in (fmt.region,)):
        set_box_minmax(fmt, records)
    out = []
    for rec in records:
        out.append(fill(fmt.record_head, record_values(rec, fmt)))
        snaps = list(enumerate(rec.snapshots))
        if snapshot_idx is not None:
            n = len(snaps)
            snaps = [snaps[snapshot_idx]] if -n <= snapshot_idx < n else []
        for k, (_, snap) in enumerate(snaps):
            regions = regions_of(snap)
            out.append(fill(fmt.snapshot_head, snapshot_values(snap, rec, regions, fmt)))
            for i, r in enumerate(sorted_regions(regions, fmt)):
                out.append(fill(fmt.region, region_values(i, r, fmt)))
            out.append(fill(fmt.snapshot_tail, snapshot_values(snap, rec, regions, fmt)))
            if k < len(snaps) - 1 and not fmt.total_sz_only():
                out.append("")
        out.append(fill(fmt.record_tail, record_values(rec, fmt)))
    return "\n".join(o for o in out if o is not None)
