"""Peak RSS of ``damoncore record`` on simulated memory: a short and a long run.

Streaming keeps the record's memory flat: the long run's peak RSS should match the short
one's (before streaming: 86 MB for 100 s, 447 MB for 900 s, ~1.7 GB an hour).  Each run is
measured by /usr/bin/time -v (the kernel's accounting of the finished process); the long
run's file is then read by ``report wss``.

    PYTHONPATH=src python benchmarks/record_memory.py [--short 5m] [--long 1h]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def measured(argv):
    """(peak RSS KiB, wall seconds) of ``python -m damoncore.cli.main argv``."""
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "damoncore.cli.main",
                        *argv], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(p.stderr)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    secs = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return rss, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", default="5m")
    ap.add_argument("--long", default="1h")
    ap.add_argument("--sim_preset", default="seed")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = {}
        for name, dur in (("short", a.short), ("long", a.long)):
            out = os.path.join(d, f"{name}.data")
            rss, secs = measured(["record", "--backend", "sim", "--sim_preset", a.sim_preset,
                                  "--duration", dur, "--quiet", "--no_status_socket",
                                  "-o", out])
            rows[name] = rss
            print(f"record {dur:>4}: peak RSS {rss / 1024:7.1f} MiB, {secs:6.1f} s wall, "
                  f"file {os.path.getsize(out) / 2**20:6.2f} MiB")
        rss, secs = measured(["report", "wss", "-i", os.path.join(d, "long.data")])
        print(f"report wss of the {a.long} file: peak RSS {rss / 1024:.1f} MiB, {secs:.1f} s")
        print(f"long/short peak RSS: {rows['long'] / rows['short']:.3f}")


if __name__ == "__main__":
    main()
