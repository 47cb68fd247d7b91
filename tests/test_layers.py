"""The package's layers point down only, with no import cycle (docs: ARCHITECTURE.md).

Every ``import`` statement in ``src/damoncore`` (read with ``ast``; the imports a module
makes inside functions count too) is an edge from its module to the one it names.  Layers,
bottom first; a module may import from its own unit and from lower layers only:

    8 cli            cli/, __main__
    7 policies       policies/              (the public API only, see POLICY_MAY_IMPORT)
      policy evals   policies/evaluation/   (the policies on the simulator; -> policies)
      evaluation     evaluation/            (region algorithms on the simulator: sim, ops.sim)
    6 api, records   damoncore (__init__), kdamonds, records   (records -> kdamonds);
                     replay and damon_stat, which read records (-> records, kdamonds)
    5 ops backends   ops/ except ops/base   (sim, paddr, vaddr, perf, common)
    4 core           core/, ops/base (the ops contract: the kernel's damon.h, which the
                     core calls; it imports nothing of the backends)
    3 schemes        schemes/               (the core calls the apply step; never back)
    2 sim, numa      sim/, numa/            (not each other)
    1 linux          linux/                 (every syscall)
    0 base           _regions, _adapt, _version, errors, units, vocab, feedback, arrays

So the forbidden edges are every import from a layer to one at or above it, except within
a unit (one folder) and ``records -> kdamonds``: e.g. core -> ops backends, cli, policies,
records; schemes -> core or ops; linux -> numa, sim, schemes, core, ops; numa <-> sim;
kdamonds -> records; policies <-> evaluation; any module -> cli.  Policies may import only the public API
(POLICY_MAY_IMPORT).  And no cycle among modules, inside a unit or across units.
"""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PKG = "damoncore"

LAYERS = [
    ("base", 0, ("_regions", "_adapt", "_version", "errors", "units", "vocab", "feedback",
                 "arrays")),
    ("linux", 1, ("linux",)),
    ("sim", 2, ("sim",)),
    ("numa", 2, ("numa",)),
    ("schemes", 3, ("schemes",)),
    ("core", 4, ("core", "ops.base")),
    ("ops", 5, ("ops",)),
    ("api", 6, ("",)),
    ("kdamonds", 6, ("kdamonds",)),
    ("records", 6, ("records",)),
    ("replay", 6, ("replay", "damon_stat")),
    ("policies", 7, ("policies",)),
    ("policy-evaluations", 7, ("policies.evaluation",)),
    ("evaluation", 7, ("evaluation",)),
    ("cli", 8, ("cli", "__main__")),
]
#: edges allowed between different units of one layer
SAME_LAYER_OK = {("records", "kdamonds"), ("policy-evaluations", "policies"),
                 ("replay", "records"), ("replay", "kdamonds")}
#: what policies may use: the public API (the package, the core, the schemes model, the
#: NUMA topology and settings, the ops contract, the vocabulary and units)
POLICY_MAY_IMPORT = {"api", "core", "schemes", "numa", "base", "policies"}
POLICY_MAY_NOT_IMPORT_MODULES = {f"{PKG}._regions", f"{PKG}._adapt", f"{PKG}.feedback"}


def modules():
    """{module name: path} of every module of the package (.py and .pyx)."""
    out = {}
    for p in (SRC / PKG).rglob("*"):
        if p.suffix not in (".py", ".pyx") or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def unit_of(module):
    """(unit name, rank) of a module: the most specific prefix in LAYERS."""
    rel = module[len(PKG) + 1:] if module != PKG else ""
    best = None
    for name, rank, prefixes in LAYERS:
        for pre in prefixes:
            if rel == pre or (pre and rel.startswith(pre + ".")) or (pre == "" and rel == ""):
                if best is None or len(pre) > best[2]:
                    best = (name, rank, len(pre))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0], best[1]


def _pyx_imports(text):
    """Import lines of a Cython file (ast cannot read it): plain ones and cimports."""
    out = []
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] in ("import", "cimport"):
            out.append((w[1], None, 0))
        elif len(w) >= 4 and w[0] == "from" and w[2] in ("import", "cimport"):
            mod = w[1]
            level = len(mod) - len(mod.lstrip("."))
            out.append((mod.lstrip(".") or None, [n.strip(",") for n in w[3:]], level))
    return out


def imports_of(module, path, known):
    """Package modules ``module`` imports (a ``from X import y`` names X.y if that is a
    module, else X)."""
    text = path.read_text()
    is_pkg = path.stem == "__init__"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    if path.suffix == ".pyx":
        raw = _pyx_imports(text)
    else:
        raw = []
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                raw += [(a.name, None, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                raw.append((node.module, [a.name for a in node.names], node.level))
    out = set()
    for mod, names, level in raw:
        base = ".".join(here[:len(here) - level + 1]) if level else ""
        full = ".".join(x for x in (base, mod) if x) if level else mod
        if not full or not (full == PKG or full.startswith(PKG + ".")):
            continue
        for n in names or [None]:
            sub = f"{full}.{n}" if n else None
            out.add(sub if sub in known else full)
    out.discard(module)
    return out


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {m: imports_of(m, p, known) & set(known) for m, p in known.items()}


def test_every_module_is_in_a_layer(graph):
    for m in graph:
        unit_of(m)


def test_imports_point_down(graph):
    bad = []
    for a, targets in graph.items():
        ua, ra = unit_of(a)
        for b in targets:
            ub, rb = unit_of(b)
            if ua == ub or rb < ra or (ua, ub) in SAME_LAYER_OK:
                continue
            bad.append(f"{a} ({ua}) -> {b} ({ub})")
    assert not bad, "imports pointing up or sideways:\n" + "\n".join(sorted(bad))


def test_policies_use_the_public_api_only(graph):
    bad = []
    for a, targets in graph.items():
        if unit_of(a)[0] != "policies":
            continue
        for b in targets:
            if unit_of(b)[0] not in POLICY_MAY_IMPORT or b in POLICY_MAY_NOT_IMPORT_MODULES:
                bad.append(f"{a} -> {b}")
    assert not bad, "policies reaching past the public API:\n" + "\n".join(sorted(bad))


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, on, stack, sccs, n = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = n[0]
        n[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = n[0]
                    n[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        sccs.append(sorted(comp))
    return sccs


def test_no_import_cycle_between_modules(graph):
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_no_import_cycle_between_units(graph):
    """Folders (units) too: a lazy import inside a function still counts."""
    units = {}
    for a, targets in graph.items():
        ua = unit_of(a)[0]
        units.setdefault(ua, set()).update(unit_of(b)[0] for b in targets)
    for u, targets in units.items():
        targets.discard(u)
    assert not cycles(units), f"cycles between units: {cycles(units)}"


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_checker_sees_an_upward_edge(tmp_path):
    """The walker itself: a core module importing cli is caught, and resolved by name."""
    core = tmp_path / PKG / "core"
    core.mkdir(parents=True)
    (tmp_path / PKG / "__init__.py").write_text("")
    (tmp_path / PKG / "cli").mkdir()
    (tmp_path / PKG / "cli" / "__init__.py").write_text("")
    (tmp_path / PKG / "cli" / "main.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "x.py").write_text("def f():\n    from ..cli import main\n")
    known = {f"{PKG}": None, f"{PKG}.core": None, f"{PKG}.core.x": None, f"{PKG}.cli": None,
             f"{PKG}.cli.main": None}
    got = imports_of(f"{PKG}.core.x", core / "x.py", known)
    assert got == {f"{PKG}.cli.main"}
    assert unit_of(f"{PKG}.cli.main")[1] > unit_of(f"{PKG}.core.x")[1]
