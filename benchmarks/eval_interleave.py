"""Dynamic weighted interleaving vs. static weights on the simulated four-node machines.

The scenarios, runs and figures live in :mod:`damoncore.policies.evaluation.interleave`
(the tests use them too); this runs them and prints, per scenario, the stream's throughput
per second (equal weights, HMAT weights, dynamic; the dynamic weights and the bytes it
moved), the per-phase means, every weight change's bytes moved against the minimum that
reaches the new ratio, and how long after each phase change the dynamic run is back at
98% of the best static choice.  It checks the claims: a re-weighting moves at most 1.2x the
minimum bytes, recovery within one re-tune interval (``InterleaveConfig.reset_ms``, 1 s),
every phase at least 0.98x the best static choice.  Exit status 1 if a claim fails.

    PYTHONPATH=src python benchmarks/eval_interleave.py [--scenario NAME] [--phase-s 20]
                                                        [--write docs/interleave.md]
"""

from __future__ import annotations

import argparse
import sys

from damoncore.policies.evaluation import interleave as ev
from damoncore.policies.interleave import InterleaveConfig
from damoncore.sim.bandwidth import GB

MiB, GiB = 1 << 20, 1 << 30


def report(name, r, phase_s, curve=True) -> tuple:
    """(markdown text, failed claims) of one scenario's run."""
    lines, bad = [f"**{name}** ({phase_s} s phases)", ""], []
    if curve:
        lines += ["| t (s) | equal 1:1:1:1 GB/s | HMAT GB/s | dynamic GB/s | dynamic weights "
                  "| migrated MiB |", "|---|---|---|---|---|---|"]
        lines += [f"| {t} | {eq / GB:.1f} | {hm / GB:.1f} | {dy / GB:.1f} | {w} | {mv / MiB:.0f} |"
                  for t, eq, hm, dy, w, mv in r.rows]
        lines.append("")
    lines += ["| phase | equal GB/s | HMAT GB/s | dynamic GB/s | dynamic / best static |",
              "|---|---|---|---|---|"]
    for ph, eq, hm, dy in ev.phase_means(r.rows, phase_s, len(r.rows) // phase_s):
        ratio = dy / max(eq, hm)
        lines.append(f"| {ph} | {eq / GB:.1f} | {hm / GB:.1f} | {dy / GB:.1f} | {ratio:.3f} |")
        if ratio < 0.98:
            bad.append(f"{name}: phase {ph} at {ratio:.3f} of the best static choice")
    lines += ["", "| weight change at (s) | new weights | moved (MiB) | minimum (MiB) "
              "| moved / minimum |", "|---|---|---|---|---|"]
    for x in r.retunes:
        w = ":".join(str(v) for _, v in sorted(x["weights"].items()))
        ratio = x["moved"] / x["minimum"] if x["minimum"] else float("nan")
        lines.append(f"| {x['t_s']:.1f} | {w} | {x['moved'] / MiB:.0f} | "
                     f"{x['minimum'] / MiB:.0f} | {ratio:.2f} |")
        if x["moved"] > 1.2 * x["minimum"]:
            bad.append(f"{name}: the change at {x['t_s']:.1f} s moved {ratio:.2f}x the minimum")
    rec = ev.recovery_s(r.points, phase_s)
    limit = InterleaveConfig(nodes=[0, 1]).reset_ms / 1000
    lines += ["", "Back at 98% of the best static choice after each phase change: "
              + ", ".join("never" if x is None else f"{x:.1f} s" for x in rec)
              + f" (re-tune interval {limit:g} s)."]
    bad += [f"{name}: recovery after phase {i + 2} took {x} s" for i, x in enumerate(rec)
            if x is None or x > limit]
    a = r.moves["all"]
    lines.append(f"All run: moved {a.moved / MiB:.0f} MiB, minimum {a.minimum / MiB:.0f} MiB "
                 f"(from the initial placement through each phase change), the most moves of "
                 f"a page {a.max_moves}.")
    return "\n".join(lines), bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=list(ev.SCENARIOS),
                    help="scenario to run (repeat for several; default: all)")
    ap.add_argument("--phase-s", type=int, default=20)
    ap.add_argument("--max-gib-per-s", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-curve", action="store_true", help="phase tables only")
    ap.add_argument("--write", metavar="<file>", help="replace the results section of this "
                    "markdown file (between the eval markers)")
    a = ap.parse_args(argv)
    cmd = "PYTHONPATH=src python benchmarks/eval_interleave.py" + "".join(
        f" --scenario '{n}'" for n in (a.scenario or ())) + (
        f" --phase-s {a.phase_s}" if a.phase_s != 20 else "") + (
        " --no-curve" if a.no_curve else "")
    texts, bad = [], []
    for name in a.scenario or list(ev.SCENARIOS):
        r = ev.run_scenario(name, a.phase_s, max_bytes_per_s=int(a.max_gib_per_s * GiB),
                            seed=a.seed)
        text, b = report(name, r, a.phase_s, curve=not a.no_curve)
        print(text + "\n", flush=True)
        texts.append(text)
        bad += b
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        begin, end = "<!-- eval:begin -->", "<!-- eval:end -->"
        i, j = doc.index(begin) + len(begin), doc.index(end)
        with open(a.write, "w") as f:
            f.write(doc[:i] + f"\nCommand: `{cmd}`\n\n" + "\n\n".join(texts) + "\n" + doc[j:])
    for b in bad:
        print(f"CLAIM FAILED: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
