"""Holistic NUMA migration vs. first touch, interleaving, single-path TPP and an oracle.

The workloads, policies, oracle and metrics live in
:mod:`damoncore.policies.evaluation.holistic` (the tests use them too); this runs them,
prints one table per workload (mean access cost, local share, bytes moved against the
minimum needed, the most moves of a page, cost against the oracle) and the holistic
policy's moves per range, and checks the claims: holistic within 10% of the oracle's cost,
at most 1.3x the minimum bytes moved, no page moved more than twice (and, on the
two-socket workload, 15% below single-path TPP).  Exit status 1 if a claim fails.

    PYTHONPATH=src python benchmarks/eval_holistic.py [--scenario NAME] [--phase_s S]
                                                      [--write docs/holistic.md]
"""

from __future__ import annotations

import argparse
import sys

from damoncore.policies.evaluation import holistic as ev

#: virtual seconds per phase of each workload (a phase change at that time, run for twice)
PHASE_S = {"two-socket": 20.0, "two-socket+gpu": 20.0, "three-accessor": 12.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", action="append", choices=ev.SCENARIOS,
                   help="workload to run (repeat for several; default: all)")
    p.add_argument("--phase_s", type=float, help="virtual seconds per phase (default: 20, "
                   "12 for three-accessor)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", metavar="<file>", help="replace the results section of this "
                   "markdown file (between the eval markers)")
    a = p.parse_args(argv)
    names = a.scenario or list(ev.SCENARIOS)
    cmd = "PYTHONPATH=src python benchmarks/eval_holistic.py" + "".join(
        f" --scenario {n}" for n in (a.scenario or ())) + (
        f" --phase_s {a.phase_s:g}" if a.phase_s else "") + (
        f" --seed {a.seed}" if a.seed else "")
    out, bad = [], []
    for name in names:
        phase_s = a.phase_s or PHASE_S[name]
        r = ev.evaluate(name, int(phase_s * 1e6), seed=a.seed)
        out.append(ev.table(r, f"**{name}** ({2 * phase_s:g} s virtual, phase change at "
                               f"{phase_s:g} s, seed {a.seed})"))
        out.append(ev.range_table(r))
        print(out[-2] + "\n\n" + out[-1] + "\n", flush=True)
        print("wall s: " + ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in r.items()
                                     if "wall_s" in v) + "\n", file=sys.stderr)
        bad += [f"{name}: {b}" for b in ev.check(
            r, tpp_margin=0.85 if name == "two-socket" else None)]
    text = f"Command: `{cmd}`\n\n" + "\n\n".join(out)
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        begin, end = "<!-- eval:begin -->", "<!-- eval:end -->"
        i, j = doc.index(begin) + len(begin), doc.index(end)
        with open(a.write, "w") as f:
            f.write(doc[:i] + "\n" + text + "\n" + doc[j:])
    for b in bad:
        print(f"CLAIM FAILED: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
