"""``report heatmap``: access frequency over time (rows) and address (columns).

A pixel's heat is the time- and space-weighted average access frequency (Hz) of the
regions that overlap it, as damo computes it; the terminal map prints 0 (coldest seen) to
9 (hottest), a blank where nothing was monitored.
"""

from __future__ import annotations

import numpy as np

from ..kdamonds import fmt_sz as _fmt_sz
from ..kdamonds import fmt_time_us as _fmt_time_us
from .checks import PackageMissing, output_file
from .damo_options import COUNT_MAX, ArgsError, int_arg
from .report_input import load_records


def fmt_sz(n, raw=False):
    return _fmt_sz(n, raw, exact=False)


def fmt_time_us(us, raw=False):
    return _fmt_time_us(us, raw, exact=False)


def heat_grid(record, time_resol=40, addr_resol=80, addr_range=None, time_range=None):
    """(heat[time_resol, addr_resol] with NaN where unmonitored, t0_us, t1_us, a0, a1)."""
    snaps = [s for s in record.snapshots if len(s.targets[0].start)]
    if not snaps:
        return None
    a0 = min(int(s.targets[0].start.min()) for s in snaps if len(s.targets[0].start))
    a1 = max(int(s.targets[0].end.max()) for s in snaps if len(s.targets[0].end))
    if addr_range:
        a0, a1 = addr_range
    t0, t1 = snaps[0].start_us, snaps[-1].end_us
    if time_range:
        t0, t1 = time_range
    tu = max(1, (t1 - t0) // time_resol)
    au = max(1, (a1 - a0) // addr_resol)
    heat = np.zeros((time_resol, addr_resol))
    cover = np.zeros((time_resol, addr_resol))
    tb = t0 + tu * np.arange(time_resol + 1)
    ab = a0 + au * np.arange(addr_resol + 1, dtype=np.float64)
    for s in snaps:
        t = s.targets[0]
        dt = np.clip(np.minimum(tb[1:], s.end_us) - np.maximum(tb[:-1], s.start_us), 0, None)
        if not dt.any():
            continue
        hz = t.nr_accesses.astype(float) * 1e6 / s.aggr_us
        st, en = t.start.astype(np.float64), t.end.astype(np.float64)
        ov = np.clip(np.minimum(ab[1:][None, :], en[:, None])
                     - np.maximum(ab[:-1][None, :], st[:, None]), 0, None)
        heat += np.outer(dt, hz @ ov)
        cover += np.outer(dt, ov.sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(cover > 0, heat / cover, np.nan)
    return grid, t0, t0 + tu * time_resol, a0, a0 + au * addr_resol


def ascii_map(grid) -> list:
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    span = hi - lo
    lines = []
    for row in grid:
        chars = []
        for v in row:
            if np.isnan(v):
                chars.append(" ")
            else:
                chars.append(str(min(9, int(9 * (v - lo) / span)) if span > 0 else 0))
        lines.append("".join(chars))
    return lines


def render(record, resol=(40, 80), output="stdout", addr_range=None, time_range=None) -> str:
    g = heat_grid(record, resol[0], resol[1], addr_range, time_range)
    if g is None:
        return "# no snapshot"
    grid, t0, t1, a0, a1 = g
    if output == "raw":
        tu, au = (t1 - t0) // resol[0], (a1 - a0) // resol[1]
        return "\n".join(f"{(t0 + i * tu) * 1000}\t{a0 + j * au}\t"
                         f"{'NaN' if np.isnan(v) else f'{v:.3f}'}"
                         for i, row in enumerate(grid) for j, v in enumerate(row))
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    return "\n".join(ascii_map(grid) + [
        f"# access_frequency: 0-9 ({lo:.3f}-{hi:.3f} hz)",
        f"# x-axis: space [{a0}, {a1}) ({fmt_sz(a1 - a0)})",
        f"# y-axis: time [{fmt_time_us(t0)}, {fmt_time_us(t1)}) ({fmt_time_us(t1 - t0)})",
        f"# resolution: {resol[1]}x{resol[0]} ({fmt_sz((a1 - a0) // resol[1])} and "
        f"{fmt_time_us((t1 - t0) // resol[0])} for each character)"])


IMAGE_EXTS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")
RESOL_MAX = 10_000


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PackageMissing("matplotlib", "an image heatmap (--output <file>)",
                             "pip install 'damoncore[plot]'") from None
    return plt


def plot_png(record, path, resol=(500, 500)) -> None:
    plt = _pyplot()
    grid, t0, t1, a0, a1 = heat_grid(record, resol[0], resol[1])
    fig, ax = plt.subplots()
    im = ax.imshow(grid.T, aspect="auto", origin="lower", cmap="gray",
                   extent=[0, (t1 - t0) / 1e6, 0, a1 - a0])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("address offset (bytes)")
    fig.colorbar(im, label="access frequency (hz)")
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
    p.add_argument("--address_range", metavar="<address>", nargs=2, type=int_arg(),
                   help="start and end address of the heatmap")
    p.add_argument("--time_range", metavar="<nanoseconds>", nargs=2, type=int_arg(),
                   help="start and end time of the heatmap (ns)")
    p.description = "Show when which address ranges were how frequently accessed"


def check_args(args) -> None:
    """Every option, before the record is read; nothing is written on failure."""
    for name in ("address_range", "time_range"):
        v = getattr(args, name)
        if v and v[0] >= v[1]:
            raise ArgsError(f"--{name} {v[0]} {v[1]}: start must be below end")
    if args.time_range and args.time_range[1] // 1000 == args.time_range[0] // 1000:
        raise ArgsError(f"--time_range {args.time_range[0]} {args.time_range[1]}: shorter "
                        f"than the 1 us resolution of records")
    if args.output not in ("stdout", "raw"):
        output_file(args.output, "--output", IMAGE_EXTS)
        _pyplot()


def main(args):
    check_args(args)
    recs = [r for r in load_records(args.input)
            if (args.kdamond_idx is None or r.kdamond_idx == args.kdamond_idx)
            and (args.context_idx is None or r.context_idx == args.context_idx)
            and (args.tid is None or r.target_id == args.tid)]
    if not recs and (args.kdamond_idx, args.context_idx, args.tid) != (None, None, None):
        raise ArgsError(f"--kdamond_idx/--context_idx/--tid: no record of "
                        f"{args.input} matches")
    tr = tuple(x // 1000 for x in args.time_range) if args.time_range else None
    for r in recs[:1]:
        if args.output not in ("stdout", "raw"):
            if heat_grid(r, 1, 1) is None:
                raise ArgsError(f"--input {args.input}: no snapshot to draw")
            plot_png(r, args.output, tuple(args.resol or (500, 500)))
            return
        print(render(r, tuple(args.resol or (40, 80)), args.output, args.address_range, tr))
