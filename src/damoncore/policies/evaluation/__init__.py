"""Evaluations of the placement policies on the simulated machine (virtual time, seeded).

Each module builds its workloads, runs the policies and the baselines, and returns the
figures the docs quote; ``benchmarks/eval_*.py`` are thin command-line wrappers and the
tests under ``tests/policies`` call the same functions on smaller runs.

- :mod:`.holistic`: per-accessor (holistic) migration vs first touch, interleaving,
  single-path TPP and a min-cost oracle;
- :mod:`.interleave`: dynamic weighted interleaving vs static weights;
- :mod:`.tpp`: TPP tiering convergence.

Every run reports its migrations with :class:`damoncore.sim.moves.MoveLedger`: bytes moved
against the minimum needed, and per-range move counts.
"""
