"""``report heatmap``: access frequency over time (rows) and address (columns), damo's way.

A pixel's heat is the sum over the regions that overlap it of their access frequency (Hz)
times the overlap's time and size, divided by the pixel's time and size (damo's
``add_pixel_heat``); a region of the first snapshot is taken to have had its frequency
for its whole age (so the map starts at the oldest monitored time), later ones from the
previous snapshot's end.  The terminal map prints 0 (lowest heat) to 9, a blank where
nothing was monitored; ``--output raw`` prints ``<time> <address> <heat>`` per pixel,
relative to the map's start unless ``--abs_time``/``--abs_addr``.

Like damo, the address range defaults to a *guide*: the record's address space cut at the
gaps every snapshot has, and ``--draw_range hottest`` (default) draws the contiguous range
with the most accesses per byte, ``all`` draws each.  ``--guide`` prints the guide.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import kdamonds as kd
from . import damo_fmt as f
from .checks import PackageMissing, output_file
from .damo_options import COUNT_MAX, ArgsError, int_arg
from .report_input import load_records

IMAGE_EXTS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")
RESOL_MAX = 10_000
MAX_RANGES = 64


# --- the guide ------------------------------------------------------------------------------
class Guide:
    """damo's GuideInfo for one record: times (ns), contiguous ranges and their heats."""

    def __init__(self, rec):
        self.kdamond_idx, self.context_idx, self.tid = (rec.kdamond_idx, rec.context_idx,
                                                        rec.target_id)
        snaps = [s for s in rec.snapshots if len(s.targets[0].start)]
        first = snaps[0]
        aggr = rec.intervals.get("aggr_us", first.aggr_us) if rec.intervals else first.aggr_us
        t = first.targets[0]
        self.start_ns = first.start_us * 1000 - int(t.age.max()) * aggr * 1000
        self.end_ns = snaps[-1].end_us * 1000
        lo = min(int(s.targets[0].start[0]) for s in snaps)
        hi = max(int(s.targets[0].end[-1]) for s in snaps)
        # the gaps every snapshot has: intersect each snapshot's gaps
        gaps = None
        for s in snaps:
            st, en = s.targets[0].start, s.targets[0].end
            brk = np.flatnonzero(en[:-1] != st[1:])
            g = [(int(en[i]), int(st[i + 1])) for i in brk]
            gaps = g if gaps is None else _intersect(gaps, g)
        bounds = [lo] + [x for gap in gaps for x in gap] + [hi]
        self.ranges = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
        heats = [0] * len(self.ranges)
        for s in snaps:
            t = s.targets[0]
            weight = (t.end - t.start) * t.nr_accesses.astype(np.uint64)
            for k, (ga, gb) in enumerate(self.ranges):
                touch = (t.start < np.uint64(gb)) & (t.end > np.uint64(ga))
                heats[k] += int(weight[touch].sum())
        self.heats = heats

    def hottest(self):
        k = max(range(len(self.ranges)),
                key=lambda i: self.heats[i] / max(1, self.ranges[i][1] - self.ranges[i][0]))
        return self.ranges[k]

    def space(self) -> int:
        return sum(b - a for a, b in self.ranges)

    def text(self, raw=True) -> str:
        lines = [f"kdamond_idx: {self.kdamond_idx}", f"context_idx: {self.context_idx}",
                 f"target_id: {self.tid}",
                 f"time: [{f.time_ns(self.start_ns, raw)}, {f.time_ns(self.end_ns, raw)}) "
                 f"({f.time_ns(self.end_ns - self.start_ns, raw)})"]
        for i, (a, b) in enumerate(self.ranges):
            lines.append(f"region\t{i:2d}: [{f.sz_accurate(a, raw)}, {f.sz_accurate(b, raw)})"
                         f" ({f.sz(b - a, raw)})")
        return "\n".join(lines)


def _intersect(g1, g2):
    out = []
    for a, b in g1:
        for c, d in g2:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return sorted(out)


def guides(records) -> list:
    """One guide per record with a snapshot, largest address space first."""
    out = [Guide(r) for r in records if any(len(s.targets[0].start) for s in r.snapshots)]
    return sorted(out, key=lambda g: g.space(), reverse=True)


# --- the map --------------------------------------------------------------------------------
class HeatMap:
    """Pixels of one record over ``[t0, t0 + tu * tres)`` ns x ``[a0, a0 + au * ares)``."""

    def __init__(self, rec, t0, t1, a0, a1, tres, ares):
        self.t0, self.a0, self.tres, self.ares = t0, a0, tres, ares
        self.tu, self.au = (t1 - t0) // tres, (a1 - a0) // ares
        self.unit = "hz"
        heat = np.zeros((tres, ares))
        cover = np.zeros((tres, ares))
        tb = (t0 + self.tu * np.arange(tres + 1)).astype(np.float64)
        ab = (a0 + self.au * np.arange(ares + 1)).astype(np.float64)
        aggr = rec.intervals.get("aggr_us", 0) if rec.intervals else 0
        prev_end = None
        for s in rec.snapshots:
            t = s.targets[0]
            if not len(t.start):
                continue
            end = float(s.end_us * 1000)
            ages = t.age.astype(np.float64) * (aggr or s.aggr_us) * 1000
            start = s.start_us * 1000 - ages
            if prev_end is not None:
                start = np.maximum(start, prev_end)
            prev_end = end
            dt = np.clip(np.minimum(tb[1:][None, :], end)
                         - np.maximum(tb[:-1][None, :], start[:, None]), 0, None)
            if not dt.any():
                continue
            st, en = t.start.astype(np.float64), t.end.astype(np.float64)
            da = np.clip(np.minimum(ab[1:][None, :], en[:, None])
                         - np.maximum(ab[:-1][None, :], st[:, None]), 0, None)
            hz = t.nr_accesses.astype(np.float64) / (s.aggr_us / 1e6)
            heat += (dt * hz[:, None]).T @ da
            cover += dt.T @ da
        with np.errstate(invalid="ignore", divide="ignore"):
            self.grid = np.where(cover > 0, heat / float(self.tu * self.au), np.nan)

    def lowest_highest(self):
        if np.isnan(self.grid).all():
            return None, None
        return float(np.nanmin(self.grid)), float(np.nanmax(self.grid))

    def ascii(self, color=False) -> str:
        lo, hi = self.lowest_highest()
        lines = []
        if lo is not None:
            unit = (hi + 1 - lo) / 9
            for row in self.grid:
                chars = []
                for v in row:
                    if np.isnan(v):
                        chars.append(" ")
                        continue
                    level = min(int((v - lo) / unit), 9)
                    chars.append(_colored(str(level), level) if color else str(level))
                lines.append("".join(chars))
        samples = "".join(_colored(str(i), i) for i in range(10)) if color else "0123456789"
        alen, tlen = self.au * self.ares, self.tu * self.tres
        if lo is not None:
            lines.append(f"# access_frequency: {samples} ({lo:.3f}-{hi:.3f} {self.unit})")
        lines += [
            f"# x-axis: space [{f.sz_accurate(self.a0)}, {f.sz_accurate(self.a0 + alen)}) "
            f"({f.sz(alen)})",
            f"# y-axis: time [{f.time_ns(self.t0)}, {f.time_ns(self.t0 + tlen)}) "
            f"({f.time_ns(tlen)})",
            f"# resolution: {self.ares}x{self.tres} ({f.sz(alen / self.ares)} and "
            f"{f.time_ns(tlen / self.tres)} for each character)"]
        return "\n".join(lines)

    def raw(self, abs_time=False, abs_addr=False) -> str:
        out = []
        for i, row in enumerate(self.grid):
            t = self.t0 + i * self.tu - (0 if abs_time else self.t0)
            for j, v in enumerate(row):
                a = self.a0 + j * self.au - (0 if abs_addr else self.a0)
                out.append(f"{t}\t{a}\t{'NaN' if np.isnan(v) else repr(float(v))}")
        return "\n".join(out)


def _colored(text, level):
    from .report_format import COLORSETS
    bg, fg = COLORSETS["gray"]
    return f"\x1b[48;5;{bg[level]}m\x1b[38;5;{fg[level]}m{text}\x1b[0m"


# --- API used by the golden tests and other reports -------------------------------------------
def heat_grid(record, time_resol=40, addr_resol=80, addr_range=None, time_range=None):
    """(heat[time_resol, addr_resol] with NaN where unmonitored, t0_ns, t1_ns, a0, a1), over
    the record's guided hottest range unless ranges are given (ns, bytes)."""
    gs = guides([record])
    if not gs:
        return None
    g = gs[0]
    t0, t1 = time_range or (g.start_ns, g.end_ns)
    a0, a1 = addr_range or g.hottest()
    m = HeatMap(record, t0, t1, a0, a1, time_resol, addr_resol)
    return m.grid, m.t0, m.t0 + m.tu * time_resol, m.a0, m.a0 + m.au * addr_resol


def ascii_map(grid) -> list:
    m = HeatMap.__new__(HeatMap)
    m.grid = grid
    lo, hi = m.lowest_highest()
    unit = (hi + 1 - lo) / 9
    return ["".join(" " if np.isnan(v) else str(min(int((v - lo) / unit), 9)) for v in row)
            for row in grid]


def render(record, resol=(40, 80), output="stdout", addr_range=None, time_range=None,
           abs_time=False, abs_addr=False, color=False) -> str:
    gs = guides([record])
    if not gs:
        return "# no snapshot"
    g = gs[0]
    t0, t1 = time_range or (g.start_ns, g.end_ns)
    a0, a1 = addr_range or g.hottest()
    m = HeatMap(record, t0, t1, a0, a1, *resol)
    return m.raw(abs_time, abs_addr) if output == "raw" else m.ascii(color)


# --- the command ----------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PackageMissing("matplotlib", "an image heatmap (--output <file>)",
                             "pip install 'damoncore[plot]'") from None
    return plt


def plot_image(maps, path, abs_time=False, abs_addr=False) -> None:
    """One panel per address range, into one image file."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(maps), 1, squeeze=False, figsize=(8, 4 * len(maps)))
    for ax, m in zip(axes[:, 0], maps):
        t0 = m.t0 if abs_time else 0
        a0 = m.a0 if abs_addr else 0
        im = ax.imshow(m.grid.T, aspect="auto", origin="lower", cmap="gray",
                       extent=[t0, t0 + m.tu * m.tres, a0, a0 + m.au * m.ares])
        ax.set_xlabel("Time (ns)")
        ax.set_ylabel("Address (bytes)")
        fig.colorbar(im, ax=ax, label=f"Access frequency ({m.unit})")
    fig.savefig(path)
    plt.close(fig)


def set_argparser(p):
    p.add_argument("--output", metavar="<output>", default="stdout",
                   help="'stdout', 'raw', or an image file (.png, .pdf, .svg, .jpg; needs "
                        "matplotlib: pip install 'damoncore[plot]')")
    p.add_argument("--input", "-i", metavar="<file>", default="damon.data", help="record file")
    p.add_argument("--kdamond_idx", type=int_arg(0, COUNT_MAX), default=None, metavar="<int>")
    p.add_argument("--context_idx", type=int_arg(0, COUNT_MAX), default=None, metavar="<int>")
    p.add_argument("--tid", type=int_arg(0, COUNT_MAX), default=None, metavar="<id>",
                   help="target id")
    p.add_argument("--resol", metavar="<resolution>", type=int_arg(1, RESOL_MAX), nargs=2,
                   help=f"resolutions for time and address axes (1..{RESOL_MAX} each)")
    p.add_argument("--time_range", metavar="<nanoseconds>", nargs="+",
                   help="<start> <end> [base] of the heatmap's time (ns, or with a unit); "
                        "base: a time, 'guided' or 'guided_end'")
    p.add_argument("--address_range", metavar="<address>", nargs="+", action="append",
                   help="<start> <end> [base] of an address range (repeat for more); base: "
                        "an address or 'guided' (the guided range's start)")
    p.add_argument("--draw_range", choices=["hottest", "all"], default="hottest",
                   help="which guided address ranges to draw (default: the hottest)")
    p.add_argument("--abs_time", action="store_true", help="absolute time in the output")
    p.add_argument("--abs_addr", action="store_true", help="absolute address in the output")
    p.add_argument("--guide", action="store_true",
                   help="print the guide for the ranges and resolution settings")
    p.add_argument("--guide_human", action="store_true",
                   help="print the guide in human-friendly numbers")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="ANSI colors on the terminal map (auto: on a terminal)")
    p.description = "Show when which address ranges were how frequently accessed"


def _range(words, what, guided, parse):
    if len(words) not in (2, 3):
        raise ArgsError(f"{what} {kd.show(' '.join(words))}: expected <start> <end> [base]")
    try:
        lo, hi = (parse(w, f"{what} {kd.show(w)}") for w in words[:2])
    except ArgsError:
        raise
    except Exception as e:
        raise ArgsError(str(e)) from None
    base = 0
    if len(words) == 3:
        if words[2] in ("guided", "guided_end"):
            if guided is None:
                raise ArgsError(f"{what} {' '.join(words)}: no guided range to base it on")
            base = guided[1] if words[2] == "guided_end" else guided[0]
        else:
            base = parse(words[2], f"{what} base {kd.show(words[2])}")
    if lo >= hi:
        raise ArgsError(f"{what} {' '.join(words)}: start must be below end")
    return lo + base, hi + base


def check_args(args) -> None:
    """Every option that needs no record, before the record is read; nothing is written on
    failure."""
    if args.address_range and len(args.address_range) > MAX_RANGES:
        raise ArgsError(f"--address_range: more than {MAX_RANGES} ranges")
    for words in args.address_range or []:
        if len(words) == 2:
            _range(words, "--address_range", None, kd.parse_bytes)
    if args.time_range and len(args.time_range) == 2:
        _range(args.time_range, "--time_range", None, kd.parse_time_ns)
    if args.output not in ("stdout", "raw"):
        output_file(args.output, "--output", IMAGE_EXTS)
        _pyplot()


def main(args):
    check_args(args)
    recs = load_records(args.input)
    if args.guide or args.guide_human:
        print("\n".join(g.text(raw=not args.guide_human) for g in guides(recs)))
        return
    gs = guides(recs)
    if not gs:
        raise ArgsError(f"--input {args.input}: no snapshot to draw")
    g = gs[0]
    want = (args.kdamond_idx, args.context_idx, args.tid)
    kdi = g.kdamond_idx if args.kdamond_idx is None else args.kdamond_idx
    cti = g.context_idx if args.context_idx is None else args.context_idx
    tid = g.tid if args.tid is None else args.tid
    rec = next((r for r in recs if (r.kdamond_idx, r.context_idx, r.target_id)
                == (kdi, cti, tid)), None)
    gsel = next((x for x in gs if (x.kdamond_idx, x.context_idx, x.tid) == (kdi, cti, tid)),
                None)
    if rec is None or gsel is None:
        raise ArgsError(f"--kdamond_idx/--context_idx/--tid {' '.join(map(str, want))}: no "
                        f"record of {args.input} matches")
    t0, t1 = (_range(args.time_range, "--time_range", (gsel.start_ns, gsel.end_ns),
                     kd.parse_time_ns) if args.time_range else (gsel.start_ns, gsel.end_ns))
    guided = [gsel.hottest()] if args.draw_range == "hottest" else list(gsel.ranges)
    if args.address_range:
        ranges = [_range(w, "--address_range", guided[i] if i < len(guided) else None,
                         kd.parse_bytes) for i, w in enumerate(args.address_range)]
    else:
        ranges = guided
    image = args.output not in ("stdout", "raw")
    tres, ares = args.resol or ((500, 500) if image else (40, 80))
    for a0, a1 in ranges:
        if (t1 - t0) // tres == 0 or (a1 - a0) // ares == 0:
            raise ArgsError(f"--resol {tres} {ares}: finer than the time range "
                            f"({t1 - t0} ns) or the address range ({a1 - a0} bytes) allows")
    maps = [HeatMap(rec, t0, t1, a0, a1, tres, ares) for a0, a1 in ranges]
    if image:
        plot_image(maps, args.output, args.abs_time, args.abs_addr)
        return
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print("\n".join(m.raw(args.abs_time, args.abs_addr) if args.output == "raw"
                    else m.ascii(color) for m in maps))
