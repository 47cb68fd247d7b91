"""The Prometheus endpoint (``--metrics_port``), scraped over HTTP and parsed with
prometheus_client's own parser: every value equals the ``status --json`` of the same
snapshot (the status generation tells which)."""

import json
import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from cli_helpers import SEED, SRC, run_cli
from live_helpers import Run

parser = pytest.importorskip("prometheus_client.parser")

SIM = ["--backend", "sim", "--sim_preset", "tiering", "--progress_interval", "1h",
       "--metrics_port", "0"]
CTX = ("kdamond", "context")
SCHEME_COUNTERS = {"sz_tried": "damoncore_scheme_tried_bytes_total",
                   "nr_tried": "damoncore_scheme_tried_regions_total",
                   "sz_applied": "damoncore_scheme_applied_bytes_total",
                   "nr_applied": "damoncore_scheme_applied_regions_total",
                   "sz_ops_filter_passed": "damoncore_scheme_ops_filter_passed_bytes_total",
                   "qt_exceeds": "damoncore_scheme_quota_exceeds_total",
                   "nr_snapshots": "damoncore_scheme_snapshots_total",
                   "sz_promoted": "damoncore_scheme_promoted_bytes_total",
                   "sz_demoted": "damoncore_scheme_demoted_bytes_total"}


def scrape(url) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("damoncore_"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def expected(st) -> dict:
    """What the metrics must say for the status document ``st``."""
    out = {("damoncore_status_generation", frozenset()): st["generation"],
           ("damoncore_monitor_cpu_seconds_total", frozenset()): st["monitor_cpu_s"]}
    for i, kd in enumerate(st["kdamonds"]):
        for j, c in enumerate(kd["contexts"]):
            cl = {"kdamond": str(i), "context": str(j)}
            key = lambda name, **more: (name, frozenset({**cl, **more}.items()))
            out[key("damoncore_sample_interval_seconds")] = c["sample_us"] / 1e6
            out[key("damoncore_aggregation_interval_seconds")] = c["aggr_us"] / 1e6
            out[key("damoncore_ops_update_interval_seconds")] = c["ops_update_us"] / 1e6
            out[key("damoncore_regions")] = c["nr_regions"]
            out[key("damoncore_targets")] = c["nr_targets"]
            out[key("damoncore_context_paused")] = int(c["pause"])
            out[key("damoncore_aggregations_total")] = c["nr_aggregations"]
            if "perf" in c:
                out[key("damoncore_perf_lost_samples_total")] = c["perf"]["lost"]
                out[key("damoncore_perf_throttled_total")] = c["perf"]["throttled"]
            for n, s in enumerate(c["schemes"]):
                sl = {"scheme": str(n), "action": s["action"]}
                for k, name in SCHEME_COUNTERS.items():
                    out[key(name, **sl)] = s["stats"][k]
                out[key("damoncore_scheme_quota_effective_bytes", **sl)] = \
                    s["effective_sz_bytes"]
                out[key("damoncore_scheme_active", **sl)] = int(s["active"])
                for m in s["stats"]["migrated"]:
                    out[key("damoncore_scheme_migrated_bytes_total", **sl,
                            source_node=str(m["src"]), destination_node=str(m["dst"]))] = \
                        m["bytes"]
                for g_i, g in enumerate(s["goals"]):
                    gl = dict(sl, goal=str(g_i), metric=g["metric"],
                              nid="" if g["nid"] is None else str(g["nid"]))
                    assert g["metric"].endswith("_bp")
                    out[key("damoncore_scheme_goal_current_ratio", **gl)] = \
                        g["current_value"] / 10000
                    out[key("damoncore_scheme_goal_target_ratio", **gl)] = \
                        g["target_value"] / 10000
    return out


def url_of(run) -> str:
    line = next(x for x in run.lines if x.startswith("metrics: "))
    return line.split()[1]


def test_a_scrape_equals_the_status_of_its_snapshot(tmp_path):
    with Run(tmp_path, *SIM, *SEED, read_stderr_until=r"^metrics: ") as run:
        url = url_of(run)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        run.wait_for(lambda st: st["kdamonds"][0]["contexts"][0]["schemes"][0]["stats"]
                     ["sz_demoted"] > 0, timeout=120)
        # running: a scrape between two status reads of one generation equals them
        matched = 0
        for _ in range(200):
            before, got, after = run.status(), scrape(url), run.status()
            if before["generation"] == after["generation"]:
                assert got == expected(before)
                matched += 1
                if matched == 3:
                    break
        assert matched == 3
        # paused (tune), nothing changes: the CLI's status --json and the scrape agree
        r = run.cli("tune", *SEED, "--pause_ctx", "0", "1")
        assert r.returncode == 0, r.stderr
        st = json.loads(run.cli("status", "--json").stdout)
        got = scrape(url)
        assert got == expected(st)
        assert got[("damoncore_context_paused",
                    frozenset({"kdamond": "1", "context": "0"}.items()))] == 1
        demote = {k: v for k, v in got.items()
                  if k[0] == "damoncore_scheme_migrated_bytes_total"}
        assert demote and all(v > 0 for v in demote.values())
        # Prometheus naming: counters end in _total, units in the names
        names = {k[0] for k in got}
        assert "damoncore_scheme_tried_bytes_total" in names
        assert any(n.endswith("_seconds") for n in names)


@pytest.mark.skipif(os.geteuid() != 0, reason="perf sampling of another process needs root")
def test_perf_counts_and_intervals_of_a_real_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import mmap, time
        m = mmap.mmap(-1, 64 << 20)
        print("ready", flush=True)
        end = time.time() + 60
        while time.time() < end:
            m.madvise(mmap.MADV_DONTNEED)
            for off in range(0, 64 << 20, 4096):
                m[off] = 1
        """)], stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        with Run(tmp_path, "--target_pid", str(child.pid), "--sample_primitives",
                 "page_fault", "-s", "200ms", "-a", "1s", "--metrics_port", "0",
                 "--progress_interval", "1h", "--damos_action", "stat",
                 read_stderr_until=r"^metrics: ") as run:
            run.wait_for(lambda st: st["kdamonds"][0]["contexts"][0]["nr_aggregations"] >= 2,
                         timeout=60)
            for _ in range(20):
                before, got, after = run.status(), scrape(url_of(run)), run.status()
                if before["generation"] == after["generation"]:
                    break
            assert got == expected(before)
            c = before["kdamonds"][0]["contexts"][0]
            assert c["backend"] == "perf" and "perf" in c
            assert got[("damoncore_aggregation_interval_seconds",
                        frozenset({"kdamond": "0", "context": "0"}.items()))] == 1.0
            assert got[("damoncore_monitor_cpu_seconds_total", frozenset())] > 0
    finally:
        child.kill()
        child.wait()


def test_missing_prometheus_client_is_one_line(tmp_path):
    hide = tmp_path / "hide" / "prometheus_client"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    r = run_cli("start", "--backend", "sim", "--duration", "1s", "--metrics_port", "0",
                env={"PYTHONPATH": f"{hide.parent}{os.pathsep}{SRC}",
                     "XDG_RUNTIME_DIR": str(tmp_path)})
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0
    assert "prometheus_client" in r.stderr and "pip install 'damoncore[metrics]'" in r.stderr
    assert not list(tmp_path.glob("damoncore/*.sock"))       # nothing was started
    for argv, needle in ((["--metrics_addr", "nowhere"], "--metrics_addr 'nowhere'"),
                         (["--metrics_port", "70000"], "70000")):
        r = run_cli("start", "--backend", "sim", "--duration", "1s", "--metrics_port", "0",
                    *argv, env={"XDG_RUNTIME_DIR": str(tmp_path)})
        assert r.returncode == 2 and needle in r.stderr, r.stderr
