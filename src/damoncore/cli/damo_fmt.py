"""damo's display formats for reports (its ``_damo_fmt_str``: what ``damo report`` prints),
on top of :mod:`damoncore.kdamonds`' formatters: sizes with three decimals in binary units,
times in the largest unit, frequencies in hz, ratios in percent.  ``raw`` (damo's
``--raw_number``) prints plain numbers instead.  Inputs may be floats (rates, averages),
which damo truncates where it prints integers.
"""

from __future__ import annotations

from .. import kdamonds as kd
from ..units import BP


def nr(n, raw=False) -> str:
    """An integer with thousands separators (a float is truncated first)."""
    n = int(n)
    return f"{n:d}" if raw else f"{'-' if n < 0 else ''}{abs(n):,}"


def sz(n, raw=False) -> str:
    if raw:
        return f"{int(n):d}"
    return str(kd.fmt_sz(n if n > 1024 else int(n), exact=False))


def sz_accurate(n, raw=False) -> str:
    if raw:
        return f"{int(n):d}"
    for shift, name in ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"),
                        (10, "KiB")):
        if n > 1 << shift:
            return f"{n / (1 << shift):f} {name}"
    return f"{int(n):d} B"


def time_ns(ns, raw=False) -> str:
    """The largest unit with up to three decimals ('2.900 s', '1 m 30 s')."""
    if raw:
        return f"{int(ns):d}"
    return ("-" if ns < 0 else "") + kd.fmt_ns(int(round(abs(ns))))


def time_us(us, raw=False) -> str:
    return f"{int(us):d}" if raw else time_ns(us * 1000)


def time_us_exact(us, raw=False) -> str:
    return str(kd.fmt_time_us_exact(int(us), raw))


def hz(v, raw=False, suffix=True) -> str:
    if raw:
        return f"{v:f}"
    if v < 10 and v != 0:
        return f"{v:.3f}" + (" hz" if suffix else "")
    return nr(v) + (" hz" if suffix else "")


def ratio(v, raw=False) -> str:
    """``v`` (1.0 = 100%) as damo's '12.5 %'."""
    if raw:
        return f"{v:f}"
    over = int(v * 100)
    under = f"{v * 100 % 1:.7f}".rstrip("0")[2:]
    return f"{nr(over)}.{under} %" if under else f"{nr(over)} %"


def percent(p, raw=False) -> str:
    return f"{p:f}" if raw else ratio(float(p) / 100)


def bp(v, raw=False) -> str:
    return f"{v:f}" if raw else ratio(float(v) / BP)
