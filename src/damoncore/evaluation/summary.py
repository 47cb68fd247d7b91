"""The tidy table -> per algorithm and workload figures, and their markdown.

Rows are tuples in :data:`~damoncore.evaluation.run.COLUMNS` order (one per aggregation).
Steady state is from the 5th aggregation of each phase on (:data:`STEADY_FROM`); a phase
change is found at the first aggregation of the new phase with coverage >= :data:`FOUND`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .run import COLUMNS

STEADY_FROM = 5
FOUND = 0.9
FOUND_WITHIN = 3
_C = {c: i for i, c in enumerate(COLUMNS)}


def _col(rows, name, dtype=float):
    return np.array([r[_C[name]] for r in rows], dtype=dtype)


def summarize(rows) -> "OrderedDict[tuple, dict]":
    """``{(workload, algorithm): figures}`` in first-seen order.

    Figures: ``cov_med``/``cov_min`` (steady aggregations with truly hot bytes),
    ``fh_med``/``fh_max`` (steady), ``found_med``/``found_max`` (aggregations into a new
    phase until coverage >= 0.9, over every phase change of every seed; ``inf`` when never),
    ``found_share`` (share of phase changes found within :data:`FOUND_WITHIN`),
    ``nr_moves``, ``regions`` (mean per snapshot), ``checks`` (mean access checks per
    sample), ``cpu_us`` (mean monitor CPU per sample), ``seeds``.
    """
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r[_C["workload"]], r[_C["algorithm"]]), []).append(r)
    out = OrderedDict()
    for key, rs in groups.items():
        cov, fh = _col(rs, "coverage"), _col(rs, "false_hot")
        k = _col(rs, "aggr_in_phase", int)
        steady = k >= STEADY_FROM
        sc = cov[steady & ~np.isnan(cov)]
        sf = fh[steady & ~np.isnan(fh)]
        found = []
        seeds, phases = _col(rs, "seed", int), _col(rs, "phase", int)
        for s in np.unique(seeds):
            for ph in np.unique(phases[seeds == s]):
                if ph == 0:
                    continue
                sel = (seeds == s) & (phases == ph)
                ok = np.flatnonzero(cov[sel] >= FOUND)
                found.append(float(k[sel][ok[0]]) if len(ok) else math.inf)
        found = np.array(found)
        out[key] = {
            "cov_med": float(np.median(sc)) if len(sc) else math.nan,
            "cov_min": float(sc.min()) if len(sc) else math.nan,
            "fh_med": float(np.median(sf)) if len(sf) else math.nan,
            "fh_max": float(sf.max()) if len(sf) else math.nan,
            "found_med": float(np.median(found)) if len(found) else math.nan,
            "found_max": float(found.max()) if len(found) else math.nan,
            "found_share": float((found <= FOUND_WITHIN).mean()) if len(found) else math.nan,
            "nr_moves": len(found),
            "regions": float(_col(rs, "nr_regions").mean()),
            "checks": float(_col(rs, "checks_per_sample").mean()),
            "cpu_us": float(_col(rs, "cpu_us_per_sample").mean()),
            "seeds": len(np.unique(seeds)),
        }
    return out


def _f(x, fmt):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return format(x, fmt)


def markdown(summary, baseline: str | None = None, descriptions=None) -> str:
    """One table per workload; ``baseline``: the algorithm whose CPU per sample the others
    are divided by (default: the first one of each workload)."""
    by_wl = OrderedDict()
    for (wl, alg), s in summary.items():
        by_wl.setdefault(wl, OrderedDict())[alg] = s
    out = []
    for wl, algs in by_wl.items():
        base = algs.get(baseline) if baseline else next(iter(algs.values()))
        desc = (descriptions or {}).get(wl)
        out.append(f"**{wl}**" + (f": {desc}" if desc else ""))
        out.append("")
        out.append("| algorithm | coverage median / worst | found (aggr) median / max "
                   f"| found <= {FOUND_WITHIN} | false-hot median / max | regions "
                   "| checks/sample | CPU us/sample (x base) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for alg, s in algs.items():
            found = (f"{_f(s['found_med'], '.0f')} / {_f(s['found_max'], '.0f')}"
                     if s["nr_moves"] else "-")
            share = f"{s['found_share']:.0%} of {s['nr_moves']}" if s["nr_moves"] else "-"
            ratio = s["cpu_us"] / base["cpu_us"] if base and base["cpu_us"] else math.nan
            out.append(f"| {alg} | {_f(s['cov_med'], '.3f')} / {_f(s['cov_min'], '.3f')} "
                       f"| {found} | {share} "
                       f"| {_f(100 * s['fh_med'], '.2f')}% / {_f(100 * s['fh_max'], '.2f')}% "
                       f"| {s['regions']:.0f} | {s['checks']:.0f} "
                       f"| {s['cpu_us']:.1f} ({_f(ratio, '.2f')}) |")
        out.append("")
    return "\n".join(out)
