"""No syscall number, page-size or basis-point literal outside the one place that defines it.

- Syscall numbers come from the platform's ``<sys/syscall.h>`` through
  ``linux/_syscalls.pyx``: no ``SYS_x = <number>`` / ``__NR_x = <number>`` anywhere (package,
  tests, benchmarks), no ctypes ``CDLL`` or ``syscall()`` in the package; ctypes, ioctl,
  pidfd and a Cython module's own system calls (``cdef extern``, pread/pwrite/ppoll) only
  in ``linux/`` (compiled loops elsewhere cimport linux's nogil entry points).
- The page size is read once (``sysconf`` in ``linux/_syscalls.pyx``): no 4096 number in the
  package's code (strings and comments are prose and may say "4 KiB"), and no other
  ``sysconf``/``PAGESIZE`` read.  The one exception is the simulated machine's page, a
  model parameter (``sim/machine.py: SIM_PAGE_SIZE``).
- One whole in basis points (10000) and DAMOS_MAX_SCORE (99) are defined in ``_regions.pxd``
  (Cython modules cimport them) and named for Python in ``damoncore.units``: no 10000 or 99
  number elsewhere in the package.
"""

import io
import pathlib
import re
import tokenize

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "damoncore"
LINUX = PKG / "linux"

SYSCALL_NUMBER = re.compile(r"\b(SYS|__NR)_\w+\s*=\s*\d")
PAGE_SIZE_READ = re.compile(r"sysconf|PAGESIZE|getpagesize|SC_PAGE")
#: (file, code on the line) allowed to stand, with why: numbers that are not the page size
#: or basis points although they are spelled alike
ALLOWED = {
    ("sim/machine.py", "SIM_PAGE_SIZE = 4096"),     # the simulated machines' page: a model
    ("cli/eval_sampling.py", "1 <= n <= 10_000"),   # at most 10,000 seeds
    ("cli/report_heatmap.py", "RESOL_MAX = 10_000"),   # heatmap resolution cap
    ("cli/numa_migrate.py", "max_reports_per_accessor=4096"),   # a report count
    ("policies/evaluation/holistic.py", "REPORTS = 4096"),      # a report count
}


def _py_files(root):
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _numbers(path):
    """(line, number, code) of every number token of a Python file (not strings, not
    comments)."""
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(t.start[0], t.string.replace("_", "").lower(), t.line) for t in toks
            if t.type == tokenize.NUMBER]


def _code_lines(path):
    """(line, code) of a Python or Cython file, strings and comments blanked: Python's
    tokenizer reads Cython's declarations well enough for these patterns."""
    text = path.read_text()
    lines = text.splitlines()
    out = {i: line for i, line in enumerate(lines, 1)}
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if t.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = t.start, t.end
            for r in range(r0, r1 + 1):
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(out[r])
                out[r] = out[r][:a] + " " * (b - a) + out[r][b:]
    return sorted(out.items())


def test_no_syscall_number_literal_anywhere():
    bad = []
    for root in (PKG, ROOT / "tests", ROOT / "benchmarks"):
        for p in sorted(root.rglob("*.py*")):
            if p.suffix not in (".py", ".pyx") or "__pycache__" in p.parts:
                continue
            for i, line in _code_lines(p):
                if SYSCALL_NUMBER.search(line):
                    bad.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "syscall numbers written out:\n" + "\n".join(bad)


def test_raw_syscalls_only_in_linux():
    bad = []
    for p in sorted(PKG.rglob("*.py*")):
        if p.suffix not in (".py", ".pyx") or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(PKG).as_posix()
        for i, line in _code_lines(p):
            if "CDLL" in line or re.search(r"\.syscall\(", line):
                bad.append(f"{rel}:{i}: {line.strip()}")
            if LINUX not in p.parents and re.search(
                    r"\bimport ctypes\b|\bioctl\(|pidfd_open|_syscalls", line):
                bad.append(f"{rel}:{i}: {line.strip()}")
            # a compiled loop's own system calls (Python's os file I/O is not meant here)
            if LINUX not in p.parents and p.suffix == ".pyx" and re.search(
                    r"cdef extern from|posix\.|\bppoll\(|\bpread\(|\bpwrite\(", line):
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert not bad, "system interface outside linux/:\n" + "\n".join(bad)


def test_page_size_is_read_once():
    bad = []
    for p in sorted(PKG.rglob("*.py*")):
        if p.suffix not in (".py", ".pyx") or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(PKG).as_posix()
        if rel == "linux/_syscalls.pyx":
            continue
        for i, line in _code_lines(p):
            if PAGE_SIZE_READ.search(line):
                bad.append(f"{rel}:{i}: {line.strip()}")
        # os.sysconf("SC_PAGE_SIZE"): the name is a string
        if re.search(r"""["']SC_PAGE_?SIZE["']""", p.read_text()):
            bad.append(f"{rel}: sysconf name")
    assert not bad, "page size read outside linux/_syscalls.pyx:\n" + "\n".join(bad)


def test_no_page_size_basis_point_or_score_literal_in_the_package():
    bad = []
    for p in _py_files(PKG):
        rel = p.relative_to(PKG).as_posix()
        for line, num, code in _numbers(p):
            if num in ("4096", "0x1000", "10000", "99") and not any(
                    rel == f and snippet in code for f, snippet in ALLOWED):
                bad.append(f"{rel}:{line}: {num}")
    for p in sorted(PKG.rglob("*.px[dy]")):
        rel = p.relative_to(PKG).as_posix()
        for i, line in _code_lines(p):
            for num in re.findall(r"(?<![\w.])(4096|0x1000|10000|99)(?![\w.])", line):
                # the one definition: _regions.pxd's cdef enum
                if not (rel == "_regions.pxd" and re.match(r"\s*(BP_ONE|MAX_SCORE_C) = ", line)):
                    bad.append(f"{rel}:{i}: {num}")
    assert not bad, ("literals that must be named (linux.system.PAGE_SIZE / ops.page_size, "
                     "units.BP, units.MAX_SCORE):\n" + "\n".join(bad))


def test_the_checks_see_what_they_look_for(tmp_path):
    f = tmp_path / "x.py"
    sys_name = "SYS" + "_move_pages"        # spelled apart: this file is checked too
    f.write_text(f'{sys_name} = 279\nPAGE = 4096  # "4096" in a comment is fine\n'
                 'x = "4096"\n')
    assert [n for _, n, _ in _numbers(f)] == ["279", "4096"]
    code = dict(_code_lines(f))
    assert SYSCALL_NUMBER.search(code[1]) and "4096" not in code[3]
