"""A running ``damoncore start``/``record``/``numa-migrate`` as a real process, for the live
control and metrics tests: started with a private socket directory, its socket awaited,
and stopped (and reaped) whatever the test did."""

import os
import re
import signal
import subprocess
import sys
import time

from damoncore.cli.status_server import query

from cli_helpers import SRC, run_cli

MiB = 1 << 20


class Run:
    def __init__(self, tmp_path, *argv, command="start", read_stderr_until=None):
        self.env = dict(os.environ, PYTHONPATH=SRC, XDG_RUNTIME_DIR=str(tmp_path))
        self.proc = subprocess.Popen([sys.executable, "-m", "damoncore", command, *argv],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.sock = tmp_path / "damoncore" / f"{self.proc.pid}.sock"
        self.lines = []
        if read_stderr_until:
            for line in self.proc.stderr:
                self.lines.append(line)
                if re.search(read_stderr_until, line):
                    break
        deadline = time.time() + 60
        while not self.sock.exists() and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert self.sock.exists(), self.finish()[1]

    def cli(self, *argv, timeout=120):
        return run_cli(*argv, env={"XDG_RUNTIME_DIR": self.env["XDG_RUNTIME_DIR"]},
                       timeout=timeout)

    def status(self) -> dict:
        return query(str(self.sock), timeout=30)

    def wait_for(self, pred, timeout=60, every=0.01):
        """Poll the status until ``pred(status)``; the status documents seen."""
        seen, deadline = [], time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if not seen or st["generation"] != seen[-1]["generation"]:
                seen.append(st)
            if pred(st):
                return seen
            time.sleep(every)
        raise AssertionError(f"timed out waiting; last status {seen[-1] if seen else None}")

    def finish(self, timeout=60):
        """(exit status, stderr) once the run ended; SIGTERM first if it still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, "".join(self.lines) + err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()


def scheme0(st, kdamond=0, context=0):
    return st["kdamonds"][kdamond]["contexts"][context]["schemes"][0]
