"""The reader behind the session check that no test changes the host's kernel settings
(tests/conftest.py): it sees every setting it lists, in a fixture tree and on this host."""

import host_settings as hs


def _tree(tmp_path, balancing="0", weight="1"):
    for p, v in (("proc/sys/kernel/numa_balancing", balancing),
                 ("sys/kernel/mm/mempolicy/weighted_interleave/node0", weight),
                 ("sys/kernel/mm/mempolicy/weighted_interleave/auto", "true"),
                 ("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "1"),
                 ("sys/kernel/mm/damon/admin/kdamonds/0/state", "on"),
                 ("sys/kernel/mm/damon/admin/kdamonds/0/contexts/nr_contexts", "1"),
                 ("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/operations", "paddr")):
        f = tmp_path / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(v + "\n")
    return str(tmp_path)


def test_snapshot_reads_each_setting_of_a_fixture_tree(tmp_path):
    s = hs.snapshot(_tree(tmp_path))
    assert s["proc/sys/kernel/numa_balancing"] == "0"
    assert s["sys/kernel/mm/mempolicy/weighted_interleave/node0"] == "1"
    assert s["sys/kernel/mm/mempolicy/weighted_interleave/auto"] == "true"
    assert s["damon:0/state"] == "on" and s["damon:0/0/operations"] == "paddr"
    assert s["proc/sys/vm/zone_reclaim_mode"] == "<FileNotFoundError>"


def test_a_changed_setting_is_named(tmp_path):
    a = hs.snapshot(_tree(tmp_path / "a"))
    b = hs.snapshot(_tree(tmp_path / "b", balancing="1", weight="3"))
    got = hs.differences(a, b)
    assert got == ["proc/sys/kernel/numa_balancing: '0' -> '1'",
                   "sys/kernel/mm/mempolicy/weighted_interleave/node0: '1' -> '3'"]
    assert hs.differences(a, hs.snapshot(_tree(tmp_path / "c"))) == []


def test_this_host_reads_the_same_twice():
    assert hs.differences(hs.snapshot(), hs.snapshot()) == []
