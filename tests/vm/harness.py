"""Run code inside the damoncore 4-node NUMA test guest (qemu).

Topology (seed numbering, kept stable by giving CPU-less nodes absent CPU slots):

    node0 = CPU1 + DRAM1      node1 = CXL1 (no CPU, initiator node0)
    node2 = CPU2 + DRAM2      node3 = CXL2 (no CPU, initiator node2)

    distances   0   1   2   3
        0      10  20  50  60
        1      20  10  60  80
        2      50  60  10  20
        3      60  80  20  10

Two online vCPUs: cpu0 on node0, cpu1 on node2.  HMAT latencies/bandwidths
follow the distances (see HMAT_* below), so the kernel puts nodes 1 and 3 in a
lower memory tier.

The host's ``/`` is shared read-only over virtio-9p and is the guest's root, so
the host's python, this repo and its compiled extensions appear at the same
paths; a writable 9p share (a fresh host temp dir per run) carries the job in
and stdout/stderr/exit status/results out.  See vm/README.md.

API:
    ensure_guest()          -> Guest (paths, accel); raises GuestUnavailable
    run_in_guest(script, args=(), timeout=...) -> GuestResult
    run_python(func, *args, **kwargs)          -> JSON-decoded return value

Environment knobs:
    DAMONCORE_VM_ACCEL=kvm|tcg   force the accelerator (default: probe KVM once, cache)
    DAMONCORE_VM_KERNEL=path     use this bzImage instead of building one
    DAMONCORE_VM_NODE_MEM=MiB    memory per node (default 1024)
    DAMONCORE_VM_NO_INSTALL=1    never apt-get install / build; unavailable instead
    DAMONCORE_VM_KEEP=1          keep the per-run results dirs (paths in GuestResult)
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VM_DIR = REPO / "vm"
SRC_DIR = REPO / "src"
GUEST_INIT = VM_DIR / "guest-init.sh"
BUILD_KERNEL = VM_DIR / "build-kernel.sh"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "damoncore-vm"

QEMU = "qemu-system-x86_64"
NODES = 4
CPU_NODES = (0, 2)
CXL_NODES = (1, 3)
INITIATOR = {0: 0, 1: 0, 2: 2, 3: 2}
DISTANCES = (
    (10, 20, 50, 60),
    (20, 10, 60, 80),
    (50, 60, 10, 20),
    (60, 80, 20, 10),
)
# HMAT: latency (ns) and bandwidth (MB/s) from each initiator to each target,
# ordered like the distances (latency = 8 ns * distance; bandwidth falls with it).
HMAT_LATENCY_NS = {
    0: (80, 160, 400, 480),
    2: (400, 480, 80, 160),
}
HMAT_BANDWIDTH_MBS = {
    0: (20480, 10240, 8192, 5120),
    2: (8192, 5120, 20480, 10240),
}
# QEMU makes every node with a CPU slot (even an absent one) its own HMAT
# initiator, so nodes 1 and 3 nominally have initiators 1 and 3.  They get
# the rows of their real initiators (0 and 2), so:
#   access0 (any initiator): node1 -> [1] at 160 ns, node3 -> [3] at 160 ns
#   access1 (CPU initiators, what memory tiering uses): node1 -> [0], node3 -> [2]
HMAT_INITIATORS = (0, 1, 2, 3)
HMAT_LATENCY_NS[1] = HMAT_LATENCY_NS[0]
HMAT_LATENCY_NS[3] = HMAT_LATENCY_NS[2]
HMAT_BANDWIDTH_MBS[1] = HMAT_BANDWIDTH_MBS[0]
HMAT_BANDWIDTH_MBS[3] = HMAT_BANDWIDTH_MBS[2]

_log_lock = threading.Lock()


def _log(msg: str) -> None:
    with _log_lock:
        print(f"[vm-harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class GuestUnavailable(RuntimeError):
    """qemu or the guest kernel cannot be had here; tests should skip with str(exc)."""


class GuestError(RuntimeError):
    """The guest booted (or tried to) but the job did not produce a result."""


@dataclasses.dataclass
class Guest:
    qemu: str
    kernel: Path
    accel: str  # "kvm" or "tcg"
    setup_seconds: dict


@dataclasses.dataclass
class GuestResult:
    returncode: int
    stdout: str
    stderr: str
    results_dir: Path  # deleted after the call unless DAMONCORE_VM_KEEP=1 or keep=True
    boot_seconds: float  # wall time of the whole qemu run
    guest_uptime: float | None  # guest uptime when the job finished
    console: str
    boot_attempts: int = 1  # >1: earlier boots died before the job started (BOOT_FAILURES)

    def check(self) -> "GuestResult":
        if self.returncode != 0:
            raise GuestError(
                f"guest job exited {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}")
        return self


# --------------------------------------------------------------------------- setup

def _apt_install(pkgs: Sequence[str]) -> None:
    if os.environ.get("DAMONCORE_VM_NO_INSTALL") == "1":
        raise GuestUnavailable(f"{' '.join(pkgs)} missing and DAMONCORE_VM_NO_INSTALL=1")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise GuestUnavailable(f"{' '.join(pkgs)} missing and cannot apt-get install (not root/Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", *pkgs]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise GuestUnavailable(f"apt-get install {' '.join(pkgs)} failed: {p.stderr[-500:]}")


def _ensure_qemu() -> str:
    q = shutil.which(QEMU)
    if q:
        return q
    t = time.monotonic()
    _log("installing qemu-system-x86 via apt")
    _apt_install(["qemu-system-x86"])
    q = shutil.which(QEMU)
    if not q:
        raise GuestUnavailable("qemu-system-x86 installed but qemu-system-x86_64 not on PATH")
    _log(f"qemu installed in {time.monotonic() - t:.0f} s")
    return q


def _ensure_kernel() -> Path:
    env_k = os.environ.get("DAMONCORE_VM_KERNEL")
    if env_k:
        if not Path(env_k).is_file():
            raise GuestUnavailable(f"DAMONCORE_VM_KERNEL={env_k} does not exist")
        return Path(env_k)
    p = subprocess.run(["bash", str(BUILD_KERNEL), "--print"], capture_output=True, text=True)
    if p.returncode == 0 and p.stdout.strip():
        return Path(p.stdout.strip().splitlines()[-1])
    if os.environ.get("DAMONCORE_VM_NO_INSTALL") == "1":
        raise GuestUnavailable("no cached guest kernel and DAMONCORE_VM_NO_INSTALL=1 "
                               "(run vm/build-kernel.sh)")
    t = time.monotonic()
    _log("building the guest kernel (vm/build-kernel.sh; ~10 min on 2 cores)")
    p = subprocess.run(["bash", str(BUILD_KERNEL)], stdout=subprocess.PIPE, stderr=None, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        raise GuestUnavailable(f"vm/build-kernel.sh failed (exit {p.returncode}); see its log above")
    _log(f"kernel ready in {time.monotonic() - t:.0f} s")
    return Path(p.stdout.strip().splitlines()[-1])


def _accel_cache_file(qemu: str, kernel: Path) -> Path:
    ver = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = f"{platform.release()}|{ver}|{kernel}|{kernel.stat().st_size}"
    return CACHE_ROOT / f"accel-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _probe_kvm(qemu: str, kernel: Path) -> str:
    """Boot the guest once with KVM and a trivial job; 'kvm' if that works, else 'tcg'."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = _accel_cache_file(qemu, kernel)
    if cache.is_file():
        return cache.read_text().strip()
    t = time.monotonic()
    trivial = "#!/bin/sh\necho guest-ok\n"
    try:
        res = _run(Guest(qemu, kernel, "kvm", {}), trivial, (), timeout=40,
                   abort_on=("KVM internal error", "failed to initialize kvm",
                             "Could not access KVM kernel module", "kvm run failed"))
        ok = res.returncode == 0 and "guest-ok" in res.stdout
    except GuestError as e:
        _log(f"KVM probe failed: {str(e).splitlines()[0]}")
        ok = False
    if not ok:
        # Only blame KVM if the same boot works under TCG; otherwise the guest
        # setup itself is broken and nothing gets cached.
        try:
            res = _run(Guest(qemu, kernel, "tcg", {}), trivial, (), timeout=120)
        except GuestError as e:
            raise GuestUnavailable(f"the guest does not boot under KVM nor TCG: {e}") from e
        if res.returncode != 0 or "guest-ok" not in res.stdout:
            raise GuestUnavailable(f"trivial guest job failed under TCG: {res.stderr[-1000:]}")
    accel = "kvm" if ok else "tcg"
    _log(f"KVM probe ({time.monotonic() - t:.1f} s): using {accel}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(accel + "\n")
    return accel


_GUEST: Guest | None = None
_GUEST_ERR: GuestUnavailable | None = None


def ensure_guest() -> Guest:
    """Install qemu (apt) and build/reuse the guest kernel; pick KVM or TCG.

    Raises GuestUnavailable with a human-readable reason where the guest cannot run.
    The answer (either way) is remembered for the process.
    """
    global _GUEST, _GUEST_ERR
    if _GUEST is not None:
        return _GUEST
    if _GUEST_ERR is not None:
        raise _GUEST_ERR
    try:
        if sys.platform != "linux" or platform.machine() != "x86_64":
            raise GuestUnavailable(f"needs an x86_64 Linux host (have {sys.platform}/{platform.machine()})")
        times = {}
        t = time.monotonic()
        qemu = _ensure_qemu()
        times["qemu"] = time.monotonic() - t
        t = time.monotonic()
        kernel = _ensure_kernel()
        times["kernel"] = time.monotonic() - t
        t = time.monotonic()
        forced = os.environ.get("DAMONCORE_VM_ACCEL")
        accel = forced if forced in ("kvm", "tcg") else _probe_kvm(qemu, kernel)
        times["accel_probe"] = time.monotonic() - t
        _GUEST = Guest(qemu, kernel, accel, times)
        return _GUEST
    except GuestUnavailable as e:
        _GUEST_ERR = e
        raise


# --------------------------------------------------------------------------- qemu

def _node_mem_mib() -> int:
    return int(os.environ.get("DAMONCORE_VM_NODE_MEM", "1024"))


def qemu_topology_args(node_mem_mib: int | None = None) -> list[str]:
    """-machine/-smp/-numa arguments for the 4-node topology described above."""
    mem = node_mem_mib or _node_mem_mib()
    a = ["-machine", "q35,hmat=on", "-m", f"{mem * NODES}M",
         # 4 CPU slots, one socket each; sockets 0 and 2 are plugged (below),
         # 1 and 3 stay absent.  ACPI SRAT lists all four in socket order, so
         # Linux numbers proximity domains 0,1,2,3 as nodes 0,1,2,3.
         "-smp", f"1,maxcpus={NODES},sockets={NODES},cores=1,threads=1"]
    for n in range(NODES):
        a += ["-object", f"memory-backend-ram,id=mem{n},size={mem}M"]
        # No initiator= for the CXL nodes: QEMU insists a node with (even absent)
        # CPU slots is its own initiator; Linux then picks the best initiator
        # from the hmat-lb tables below (node0 for node1, node2 for node3).
        a += ["-numa", f"node,nodeid={n},memdev=mem{n}"]
    for n in range(NODES):
        a += ["-numa", f"cpu,node-id={n},socket-id={n},core-id=0,thread-id=0"]
    for i in range(NODES):
        for j in range(i + 1, NODES):
            a += ["-numa", f"dist,src={i},dst={j},val={DISTANCES[i][j]}"]
    for ini in HMAT_INITIATORS:
        for tgt in range(NODES):
            a += ["-numa", f"hmat-lb,initiator={ini},target={tgt},hierarchy=memory,"
                           f"data-type=access-latency,latency={HMAT_LATENCY_NS[ini][tgt]}"]
            a += ["-numa", f"hmat-lb,initiator={ini},target={tgt},hierarchy=memory,"
                           f"data-type=access-bandwidth,bandwidth={HMAT_BANDWIDTH_MBS[ini][tgt]}M"]
    return a


def _cpu_args(accel: str) -> list[str]:
    model = "host" if accel == "kvm" else "max"
    # cold-plug the second online vCPU into socket 2 (node2)
    return ["-cpu", model, "-device", f"{model}-x86_64-cpu,socket-id=2,core-id=0,thread-id=0"]


def _qemu_cmd(g: Guest, results: Path) -> list[str]:
    accel = ["-accel", "kvm"] if g.accel == "kvm" else ["-accel", "tcg,thread=multi,tb-size=256"]
    append = " ".join([
        "console=ttyS0", "root=root", "rootfstype=9p",
        "rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose", "ro",
        f"init={GUEST_INIT}", "panic=-1", "loglevel=4", "mitigations=off",
        "tsc=reliable", "no_timer_check",
    ])
    return [g.qemu, *accel, *qemu_topology_args(), *_cpu_args(g.accel),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{results / 'console.log'}",
            "-kernel", str(g.kernel), "-append", append,
            "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={results},mount_tag=results,security_model=none"]


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _run(g: Guest, script: str, args: Sequence[str], timeout: float,
         env: dict | None = None, files: dict | None = None, keep: bool = False,
         abort_on: Sequence[str] = ()) -> GuestResult:
    results = Path(tempfile.mkdtemp(prefix="damoncore-vm-"))
    os.chmod(results, 0o777)
    try:
        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        if args:
            # the job re-execs itself with its arguments
            inner = results / "job.main"
            inner.write_text(script)
            inner.chmod(0o755)
            script = "#!/bin/sh\nexec \"$DC_RESULTS/job.main\" " + " ".join(shlex.quote(a) for a in args) + "\n"
        (results / "job").write_text(script)
        (results / "job").chmod(0o755)
        envlines = {"DC_CWD": str(REPO), **(env or {})}
        (results / "job.env").write_text(
            "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in envlines.items()))
        for name, content in (files or {}).items():
            (results / name).write_text(content)
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                return _boot_once(g, results, timeout, abort_on, attempt)
            except _BootFailed as e:
                # the kernel died before guest-init ran the job: nothing of the job's ran,
                # so booting again retries nothing the test asserts on
                BOOT_FAILURES.append(str(e))
                print(f"harness: guest boot {attempt}/{BOOT_ATTEMPTS} died before the job "
                      f"started; booting again\n{str(e)[-1500:]}", file=sys.stderr)
                if attempt == BOOT_ATTEMPTS:
                    raise GuestError(f"guest boot failed {BOOT_ATTEMPTS} times before the job "
                                     f"started; last:\n{e}") from None
                (results / "console.log").unlink(missing_ok=True)
        raise AssertionError("unreachable")
    finally:
        if not (keep or os.environ.get("DAMONCORE_VM_KEEP") == "1"):
            shutil.rmtree(results, ignore_errors=True)


# Under TCG the guest kernel's boot sometimes dies in its own code patching (an "Oops: int3"
# where a static key was just flipped on another vCPU: qemu's multi-threaded TCG ran a stale
# translation of the int3 byte; CI saw it once, in kernel init before /sbin/init; 0 of 60
# boots here reproduced it).
BOOT_ATTEMPTS = 3
BOOT_FAILURES: list[str] = []  # every boot that died before its job started, this process
JOB_STARTED = "guest-init: running job"


class _BootFailed(Exception):
    pass


def _boot_once(g: Guest, results: Path, timeout: float, abort_on: Sequence[str],
               attempt: int) -> GuestResult:
    cmd = _qemu_cmd(g, results)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.extend(proc.stdout), daemon=True)
    reader.start()
    reason = None
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout:
            reason = f"timed out after {timeout:.0f} s"
            break
        joined = "".join(out_chunks)
        hit = next((s for s in abort_on if s in joined), None)
        if hit:
            reason = f"qemu reported {hit!r}"
            break
        time.sleep(0.1)
    if reason:
        proc.kill()
    proc.wait()
    reader.join(timeout=5)
    elapsed = time.monotonic() - t0
    qemu_out = "".join(out_chunks)
    console = _read(results / "console.log")
    rc_text = _read(results / "rc").strip()
    if reason or not rc_text:
        why = reason or f"qemu exited {proc.returncode} without a job exit status"
        msg = (f"guest run failed: {why} ({g.accel}, {elapsed:.1f} s, boot {attempt})\n"
               f"--- qemu ---\n{qemu_out[-2000:]}\n--- console tail ---\n{console[-3000:]}\n"
               f"--- job stderr ---\n{_read(results / 'stderr')[-2000:]}")
        if not reason and JOB_STARTED not in console:
            raise _BootFailed(msg)
        raise GuestError(msg)
    up = _read(results / "uptime").strip()
    return GuestResult(
        returncode=int(rc_text), stdout=_read(results / "stdout"),
        stderr=_read(results / "stderr"), results_dir=results, boot_seconds=elapsed,
        guest_uptime=float(up) if up else None, console=console, boot_attempts=attempt)


def run_in_guest(script: str | os.PathLike, args: Sequence[str] = (), timeout: float = 300,
                 env: dict | None = None, files: dict | None = None,
                 keep: bool = False) -> GuestResult:
    """Boot the guest, run `script` (text, or a path to an executable file) and power off.

    Text without a shebang runs under /bin/sh.  The job's cwd is the repo, $DC_RESULTS is
    the writable results dir (the host's GuestResult.results_dir; extra files the job writes
    there are readable on the host while it exists: pass keep=True).  PYTHONPATH holds the
    repo's src/ and tests/vm/; $DC_PYTHON is the host interpreter running this harness.
    `env` entries go to job.env: DC_NUMA_BALANCING=1 (default 0), DC_THP=never|madvise,
    DC_TICKER_CPUS="0 1" (1 ms tickers pinned to those CPUs: keeps accessed bits honest
    under TCG for migration/tiering runs; see vm/README.md), or anything the job reads.
    """
    g = ensure_guest()
    if isinstance(script, os.PathLike) or (isinstance(script, str) and "\n" not in script
                                           and Path(script).is_file()):
        p = Path(script).resolve()
        script = f"#!/bin/sh\nexec {shlex.quote(str(p))} \"$@\"\n"
    py = _host_python()
    keep_paths = {str(REPO), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
            str(Path(py).parent)}
    base_env = {
        "PYTHONPATH": f"{SRC_DIR}:{HERE}",
        "DC_PYTHON": py,
        # host paths under /tmp that must stay visible over the guest's tmpfs /tmp
        "DC_KEEP_PATHS": " ".join(sorted(k for k in keep_paths if k.startswith("/tmp/") and " " not in k)),
    }
    return _run(g, script, args, timeout, env={**base_env, **(env or {})}, files=files, keep=keep)


def _host_python() -> str:
    # sys.executable may be a shim (pyenv); the real binary avoids a shell round trip
    return os.path.realpath(sys.executable)


_PY_DRIVER = r'''
import importlib, json, os, sys, traceback
R = os.environ["DC_RESULTS"]
spec = json.load(open(os.path.join(R, "call.json")))
try:
    if spec.get("source") is not None:
        ns = {"__name__": "__guest__"}
        exec(compile(spec["source"], "<guest-func>", "exec"), ns)
        fn = ns[spec["func"]]
    else:
        fn = getattr(importlib.import_module(spec["module"]), spec["func"])
    value = fn(*spec["args"], **spec["kwargs"])
    with open(os.path.join(R, "result.json.tmp"), "w") as f:
        json.dump({"ok": True, "value": value}, f)
except BaseException as e:
    with open(os.path.join(R, "result.json.tmp"), "w") as f:
        json.dump({"ok": False, "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()}, f)
    traceback.print_exc()
os.rename(os.path.join(R, "result.json.tmp"), os.path.join(R, "result.json"))
'''


class GuestPythonError(GuestError):
    def __init__(self, msg: str, traceback_text: str, result: GuestResult):
        super().__init__(f"{msg}\n--- guest traceback ---\n{traceback_text}")
        self.guest_traceback = traceback_text
        self.result = result


def run_python(func: str | Callable, *args: Any, timeout: float = 300,
               env: dict | None = None, with_result: bool = False, **kwargs: Any) -> Any:
    """Run a Python function in the guest and return its JSON-decoded return value.

    `func` is "package.module:function" (importable from src/ or tests/vm/ in the guest),
    a module-level function object (its module must be importable there, e.g.
    tests/vm/guest_checks.py), or a self-contained function's source text whose last
    top-level `def` is called.  Arguments and the return value must be JSON-serialisable.
    A guest exception is re-raised here as GuestPythonError with the guest traceback.
    With with_result=True returns (value, GuestResult).
    """
    spec: dict = {"args": list(args), "kwargs": kwargs, "source": None}
    if callable(func):
        spec["func"] = func.__name__
        f = _source_file(func)
        if f is not None and f.parent == HERE:
            spec["module"] = f.stem  # tests/vm is on the guest's PYTHONPATH
        elif f is not None and SRC_DIR in f.parents and func.__module__ != "__main__":
            spec["module"] = func.__module__
        else:
            spec["source"] = textwrap.dedent(inspect.getsource(func))
    elif ":" in func and "\n" not in func:
        spec["module"], spec["func"] = func.split(":", 1)
    else:
        src = textwrap.dedent(func)
        defs = [ln.split("(")[0][4:].strip() for ln in src.splitlines() if ln.startswith("def ")]
        if not defs:
            raise ValueError("source text has no top-level def")
        spec["source"], spec["func"] = src, defs[-1]
    script = "#!/bin/sh\nexec \"$DC_PYTHON\" \"$DC_RESULTS/driver.py\"\n"
    res = run_in_guest(script, timeout=timeout, env=env, keep=True,
                       files={"driver.py": _PY_DRIVER, "call.json": json.dumps(spec)})
    try:
        out = _read(res.results_dir / "result.json")
    finally:
        if os.environ.get("DAMONCORE_VM_KEEP") != "1":
            shutil.rmtree(res.results_dir, ignore_errors=True)
    if not out:
        raise GuestError(f"guest python produced no result (exit {res.returncode})\n"
                         f"--- stderr ---\n{res.stderr[-4000:]}\n--- console ---\n{res.console[-2000:]}")
    data = json.loads(out)
    if not data["ok"]:
        raise GuestPythonError(f"guest raised {data['error']}", data["traceback"], res)
    return (data["value"], res) if with_result else data["value"]


def _source_file(func: Callable) -> Path | None:
    try:
        return Path(inspect.getfile(func)).resolve()
    except TypeError:
        return None


if __name__ == "__main__":  # python tests/vm/harness.py [script args...]: quick manual run
    g = ensure_guest()
    print(f"guest: {g}", file=sys.stderr)
    s = sys.argv[1] if len(sys.argv) > 1 else "cat /sys/devices/system/node/online; nproc; uname -r"
    r = run_in_guest(s, sys.argv[2:])
    print(f"rc={r.returncode} boot={r.boot_seconds:.1f}s uptime={r.guest_uptime}", file=sys.stderr)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
