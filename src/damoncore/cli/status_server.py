"""The running ``start``'s control socket: a Unix socket that answers every connection
with one JSON status document and closes.

Only the starting user (and root) can reach it: the directory is 0700 and the socket 0600.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import threading

from ..errors import InvalidConfig


def socket_dir() -> str:
    """$XDG_RUNTIME_DIR/damoncore, /run/damoncore for root, else /tmp/damoncore-<uid>."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return os.path.join(base, "damoncore")
    if os.geteuid() == 0:
        return "/run/damoncore"
    return f"/tmp/damoncore-{os.geteuid()}"


def ensure_private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise InvalidConfig(f"status directory {path} is not a directory owned by uid "
                            f"{os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def scheme_status(s) -> dict:
    st = dataclasses.asdict(s.stats)
    st["migrated"] = [{"src": a, "dst": b, "bytes": v} for (a, b), v in s.stats.migrated.items()]
    return {"action": s.action, "target_nid": s.target_nid, "dests": s.dests,
            "active": s.active, "effective_sz_bytes": s.quota_state.esz,
            "min_score": s.quota_state.min_score,
            "goals": [{"metric": g.metric, "nid": g.nid, "target_value": g.target_value,
                       "current_value": g.current_value} for g in s.quota.goals],
            "stats": st}


def status_of(kdamonds, started_us=None, clock=None) -> dict:
    """JSON-able status of ``kdamonds`` (a list of context lists)."""
    out = {"pid": os.getpid(), "kdamonds": []}
    for ctxs in kdamonds:
        kd = {"contexts": []}
        for c in ctxs:
            a = c.attrs
            kd["contexts"].append({
                "ops": str(c.ops.space),
                "backend": c.ops.name,
                "sample_us": a.sample_us, "aggr_us": a.aggr_us,
                "ops_update_us": a.ops_update_us,
                "nr_regions": c.nr_regions(),
                "nr_aggregations": c.nr_aggregations,
                "now_us": c.clock.now_us(),
                "schemes": [scheme_status(s) for s in c.schemes]})
        out["kdamonds"].append(kd)
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def socket_pid(path: str) -> int | None:
    """The pid a ``<pid>.sock`` in the socket directory belongs to."""
    stem = os.path.basename(path)[:-len(".sock")] if path.endswith(".sock") else ""
    return int(stem) if stem.isascii() and stem.isdigit() and len(stem) < 10 else None


def remove_stale(path: str) -> bool:
    """Unlink ``path`` if it is a dead run's socket (its pid is gone, or nobody listens on
    it: a run killed by SIGKILL leaves one behind); True if it was removed."""
    pid = socket_pid(path)
    try:
        if pid is None or not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False            # never anything but a <pid>.sock socket
    except OSError:
        return False
    if pid_alive(pid):
        for _ in range(2):          # a run between bind() and listen() refuses briefly
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    s.connect(path)
                return False
            except ConnectionRefusedError:
                threading.Event().wait(0.2)
            except OSError:
                return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def sweep(directory: str) -> int:
    """Remove the dead runs' sockets in ``directory``; how many were removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    return sum(remove_stale(os.path.join(directory, n)) for n in names
               if n.endswith(".sock") and socket_pid(n) != os.getpid())


class StatusServer:
    """Serves ``status_fn()`` as JSON on ``path`` from a daemon thread."""

    def __init__(self, status_fn, path: str | None = None):
        if path is None:
            d = socket_dir()
            ensure_private_dir(d)
            sweep(d)
            path = os.path.join(d, f"{os.getpid()}.sock")
        self.path = path
        self.status_fn = status_fn
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.sock.settimeout(0.5)   # so close() is noticed without a connection
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="damoncore-status",
                                       daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = json.dumps(self.status_fn()).encode() + b"\n"
                except Exception as e:  # a status must never kill the monitor
                    data = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode() + b"\n"
                try:
                    conn.sendall(data)
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        finally:
            if os.path.exists(self.path):
                os.unlink(self.path)


def query(path: str, timeout: float = 5.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)
