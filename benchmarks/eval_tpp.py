"""TPP tiering on the simulated seed tiering topology: convergence curve.

The scenario and the run live in :mod:`damoncore.policies.evaluation.tpp` (the tests use
them too); this prints one row per second: node 0 used %, share of the hot set on node 0,
bytes promoted and demoted in that second; then the migration accounting (bytes moved
against the minimum needed to go from the initial to the final placement, the most times
one page moved, per range).

    PYTHONPATH=src python benchmarks/eval_tpp.py [--seconds 120] [--tuner distance|consist]
"""

from __future__ import annotations

import argparse

from damoncore.policies.evaluation import tpp

MiB = 1 << 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--tuner", default="distance", choices=["distance", "consist"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    print("| t (s) | node0 used % | hot set on node0 % | promoted MiB/s | demoted MiB/s |")
    print("|---|---|---|---|---|")
    rep = {}
    for t, used, share, p, d in tpp.run(a.seconds, a.tuner, a.seed, report=rep):
        print(f"| {t} | {used:.2f} | {share * 100:.1f} | {p / MiB:.1f} | {d / MiB:.1f} |")
    print()
    print("| range | moved (MiB) | minimum (MiB) | most moves of a page |")
    print("|---|---:|---:|---:|")
    for k, v in rep.items():
        print(f"| {k} | {v.moved / MiB:.0f} | {v.minimum / MiB:.0f} | {v.max_moves} |")


if __name__ == "__main__":
    main()
