"""Percentile tables shared by the wss and footprints reports (damo's layout)."""

from __future__ import annotations

from ..kdamonds import fmt_sz as _fmt_sz
from .damo_options import ArgsError, int_arg


def fmt_sz(n, raw=False):
    return _fmt_sz(n, raw, exact=False)


def percentile(values, pct):
    """The sorted-order value at ``pct`` percent (damo: index pct/100*len, clamped)."""
    idx = min(int(pct / 100.0 * len(values)), len(values) - 1)
    return values[idx]


def fmt_dist(metric, values, pcts, raw=False, nr_cols_bar=59, all_values=False) -> str:
    """'# <percentile> <metric>', '# avr:', then one line per percentile with a bar."""
    lines = [f"# <percentile> <{metric}>"]
    if not values:
        return "\n".join(lines + ["# no snapshot"])
    lines.append(f"# avr:\t{fmt_sz(sum(values) // len(values), raw)}")
    if all_values:
        return "\n".join(lines + [f"{i} {fmt_sz(v, raw)}" for i, v in enumerate(values)])
    top = max(percentile(values, p) for p in pcts)
    per_col = top / nr_cols_bar if top > 0 and nr_cols_bar > 0 else 1
    for p in pcts:
        v = percentile(values, p)
        line = f"{p:3d} {fmt_sz(v, raw)!s:>15}"
        if nr_cols_bar > 0:
            cols = int(v / per_col)
            line += f" |{'*' * cols}{' ' * (nr_cols_bar - cols)}|"
        lines.append(line)
    return "\n".join(lines)


def add_dist_args(p, default_input):
    p.add_argument("--input", "-i", metavar="<file>", default=default_input,
                   help="input file name")
    p.add_argument("--range", "-r", type=int_arg(-1, 1000), nargs=3,
                   metavar=("<start>", "<stop>", "<step>"),
                   default=[0, 101, 25], help="range of percentiles to print")
    p.add_argument("--sortby", "-s", choices=["time", "size"], default="size",
                   help="sort the values by size (percentiles) or keep time order")
    p.add_argument("--nr_cols_bar", type=int_arg(0, 1000), metavar="<num>", default=59,
                   help="number of columns for the bar")
    p.add_argument("--raw_number", action="store_true", help="machine-friendly raw numbers")


def percentiles(rng) -> range:
    """``--range start stop step`` as the percentiles to print (each 0..100)."""
    start, stop, step = rng
    if step == 0:
        raise ArgsError(f"--range {start} {stop} {step}: the step must not be 0")
    pcts = range(start, stop, step)
    if not pcts:
        raise ArgsError(f"--range {start} {stop} {step}: no percentile in it")
    if min(pcts) < 0 or max(pcts) > 100:
        raise ArgsError(f"--range {start} {stop} {step}: percentiles must be within 0..100")
    return pcts
