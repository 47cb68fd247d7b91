"""The migration accounting every policy evaluation reports (damoncore.sim.moves)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damoncore.sim import Accessor, Mapping, Process, Stream, Workload
from damoncore.sim.moves import MoveCounts, MoveLedger, placement, placement_distance
from damoncore.sim.presets import seed_machine

MiB = 1 << 20
BASE = 1 << 40
PID = 7


def machine():
    m = seed_machine(64 * MiB, 64 * MiB)
    a = Accessor("cpu0", 0, cpu=0, tid=1)
    m.add_workload(Workload([Process(PID, (Mapping(BASE, BASE + 16 * MiB, node=0),))],
                            [(0, [Stream(a, PID, BASE, BASE + 16 * MiB, 1.0)])]))
    return m


def test_a_page_moved_there_and_back_costs_two_moves_and_no_minimum():
    m = machine()
    led = MoveLedger(m)
    m.migrate(PID, BASE, BASE + 4 * MiB, 2)
    m.migrate(PID, BASE, BASE + 4 * MiB, 0)           # back: needed nothing
    m.migrate(PID, BASE + 8 * MiB, BASE + 10 * MiB, 1)
    m.migrate(PID, BASE + 8 * MiB, BASE + 10 * MiB, 1)  # already there: not a move
    rep = led.report({"a": (PID, BASE, BASE + 4 * MiB), "b": (PID, BASE + 8 * MiB,
                                                             BASE + 12 * MiB)})
    assert rep["all"].moved == 10 * MiB == sum(m.stats()["migrated"].values())
    assert rep["all"].minimum == 2 * MiB and rep["all"].ratio == pytest.approx(5.0)
    assert rep["all"].max_moves == 2 and rep["all"].by_count == {1: 2 * MiB, 2: 4 * MiB}
    assert (rep["a"].moved, rep["a"].minimum, rep["a"].max_moves) == (8 * MiB, 0, 2)
    assert (rep["b"].moved, rep["b"].minimum, rep["b"].max_moves) == (2 * MiB, 2 * MiB, 1)


def test_a_checkpoint_makes_the_way_there_needed():
    """A move away and back across a phase change is what the phases asked for."""
    m = machine()
    led = MoveLedger(m)
    m.migrate(PID, BASE, BASE + 4 * MiB, 2)
    led.checkpoint()
    m.migrate(PID, BASE, BASE + 4 * MiB, 0)
    rep = led.report()["all"]
    assert rep.moved == rep.minimum == 8 * MiB and rep.ratio == 1.0


def test_ledger_counts_only_moves_after_its_creation():
    m = machine()
    m.migrate(PID, BASE, BASE + MiB, 1)
    led = MoveLedger(m)
    m.migrate(PID, BASE, BASE + MiB, 0)
    rep = led.report()["all"]
    assert (rep.moved, rep.minimum, rep.max_moves) == (MiB, MiB, 1)
    assert MoveLedger(m).report()["all"].ratio == 1.0          # nothing moved, none needed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 16), st.integers(0, 3)),
                max_size=12))
def test_counts_and_distance_match_a_per_page_model(moves):
    """Against a plain per-page array: counts add up, the distance is the pages whose node
    differs, and the ledger never reports less moved than the minimum."""
    m = machine()
    led = MoveLedger(m)
    p0 = placement(m)
    pages = 16 * MiB // 4096
    node = np.zeros(pages, int)
    count = np.zeros(pages, int)
    for start, n, dst in moves:
        s, e = start * 64, min(pages, start * 64 + n * 16)
        moving = node[s:e] != dst
        count[s:e] += moving
        node[s:e] = dst
        m.migrate(PID, BASE + s * 4096, BASE + e * 4096, dst)
    rep = led.report()["all"]
    assert rep.moved == count.sum() * 4096
    assert rep.max_moves == count.max(initial=0)
    assert rep.minimum == (node != 0).sum() * 4096 == placement_distance(p0, placement(m))
    assert rep.moved >= rep.minimum


def test_move_counts_coalesce():
    c = MoveCounts()
    c.add([0, 8192], [4096, 12288])
    c.add([4096], [8192])
    assert c.b.tolist()[:2] == [0, 12288] and c.c.tolist() == [1, 0] and c.max_count == 1
