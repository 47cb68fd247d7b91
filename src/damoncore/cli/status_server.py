"""The running ``start``'s control socket: a Unix socket that answers one JSON request
per connection (status, and the commands of :mod:`damoncore.cli.live`) and closes.

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
    st["max_nr_snapshots"] = s.max_nr_snapshots
    q = s.quota
    return {"action": s.action, "target_nid": s.target_nid, "dests": s.dests,
            "active": s.active and not s.snapshots_done,
            "effective_sz_bytes": s.quota_state.esz,
            "min_score": s.quota_state.min_score,
            "quota": {"sz_bytes": q.sz_bytes, "time_ms": q.time_ms,
                      "reset_interval_ms": q.reset_interval_ms, "goal_tuner": q.goal_tuner,
                      "window_start_us": s.quota_state.charged_from_us
                      if s.quota_state.window_started else None,
                      "charged_bytes": s.quota_state.charged_sz},
            "apply_interval_us": s.apply_interval_us or None,
            "goals": [{"metric": g.metric, "nid": g.nid, "target_value": g.target_value,
                       "current_value": g.current_value} for g in q.goals],
            "stats": st}


def _perf_counts(ops) -> dict | None:
    """The perf backend's lost and throttled sample counts (None for other backends)."""
    try:
        from ..ops.perf import PerfOps
    except ImportError:
        return None
    if not isinstance(ops, PerfOps):
        return None
    return {"lost": int(ops.lost), "throttled": int(ops.throttled)}


def context_status(c) -> dict:
    """One context's part of the status document (call it in the monitoring thread, or
    while nothing runs, for a consistent picture)."""
    a = c.attrs
    out = {"ops": str(c.ops.space),
           "backend": c.ops.name,
           "sample_us": a.sample_us, "aggr_us": a.aggr_us,
           "ops_update_us": a.ops_update_us,
           "pause": c.pause,
           "nr_targets": len(c.active_targets),
           "nr_regions": c.nr_regions(),
           "nr_aggregations": c.nr_aggregations,
           "now_us": c.clock.now_us(),
           "schemes": [scheme_status(s) for s in c.schemes]}
    perf = _perf_counts(c.ops)
    if perf is not None:
        out["perf"] = perf
    return out


def status_of(kdamonds, started_us=None, clock=None) -> dict:
    """JSON-able status of ``kdamonds`` (a list of context lists), read now."""
    return {"pid": os.getpid(),
            "kdamonds": [{"contexts": [context_status(c) for c in ctxs]}
                         for ctxs in kdamonds]}


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


MAX_REQUEST = 64 << 20       # a tune's inline kdamonds JSON fits many times over
FIRST_BYTE_S = 0.5           # a client that sends nothing in this long asks for the status


def _read_request(conn) -> dict:
    """The request line of a connection: {} (status) from a client that sends nothing
    (the status protocol before requests existed) or half-closes at once."""
    buf = b""
    conn.settimeout(FIRST_BYTE_S)
    try:
        while b"\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
            conn.settimeout(10)
            if len(buf) > MAX_REQUEST:
                raise ValueError(f"request larger than {MAX_REQUEST >> 20} MiB")
    except TimeoutError:
        if buf:
            raise ValueError("request line cut short") from None
    line = buf.split(b"\n", 1)[0].strip()
    if not line:
        return {}
    req = json.loads(line)
    if not isinstance(req, dict):
        raise ValueError("a request is a JSON object")
    return req


class StatusServer:
    """The control socket: serves each connection from its own daemon thread.

    A connection sends one JSON request line (``{"cmd": ...}``) and gets one JSON reply,
    then the server closes it.  ``status_fn()`` answers ``status`` (and a connection that
    sends nothing); ``handlers`` maps other commands to ``fn(request) -> reply``.  A reply
    to a failed request is ``{"error": "<one line>", "status": 1 or 2}``.
    """

    def __init__(self, status_fn, path: str | None = None, handlers=None):
        if path is None:
            d = socket_dir()
            ensure_private_dir(d)
            sweep(d)
            path = os.path.join(d, f"{os.getpid()}.sock")
        self.path = path
        self.status_fn = status_fn
        self.handlers = dict(handlers or {})
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
            threading.Thread(target=self._answer, args=(conn,), daemon=True,
                             name="damoncore-control").start()

    def _reply(self, conn) -> dict:
        try:
            req = _read_request(conn)
        except (OSError, ValueError) as e:
            return {"error": f"bad request: {e}", "status": 2}
        cmd = req.get("cmd", "status")
        try:
            if cmd == "status":
                return self.status_fn()
            if cmd not in self.handlers:
                return {"error": f"this run does not take {cmd!r} requests", "status": 2}
            return self.handlers[cmd](req)
        except Exception as e:  # a request must never kill the monitor
            return {"error": f"{type(e).__name__}: {e}", "status": 1}

    def _answer(self, conn):
        with conn:
            data = json.dumps(self._reply(conn)).encode() + b"\n"
            try:
                conn.settimeout(5)
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


def request(path: str, req: dict | None = None, timeout: float = 5.0) -> dict:
    """Send ``req`` (default: a status request) to the socket at ``path``; its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req or {"cmd": "status"}).encode() + b"\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def query(path: str, timeout: float = 5.0) -> dict:
    """The status document of the run at ``path``."""
    return request(path, {"cmd": "status"}, timeout)
