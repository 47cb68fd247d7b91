"""The opt-in Prometheus endpoint (``--metrics_port``): the run's stats board as metrics.

Every scrape renders one snapshot of :class:`damoncore.cli.live.StatsBoard`, the same one
``status --json`` shows, so a scrape and a status read between the same two publications
agree number for number (``damoncore_status_generation`` is the status' ``generation``).

Names and units follow Prometheus' conventions: counters end in ``_total``, sizes are
bytes, times seconds, basis-point goal metrics ratios (0..1).  Labels: ``kdamond`` and
``context`` (indices, as in the kdamonds JSON), ``scheme`` (index) and ``action``; goals add
``goal`` (index), ``metric`` and ``nid``; migrations ``source_node`` and
``destination_node``.  Needs the ``prometheus_client`` package (``pip install
'damoncore[metrics]'``).
"""

from __future__ import annotations

from ..units import BP
from .checks import PackageMissing

INSTALL = "pip install 'damoncore[metrics]'"

_SCHEME = ["kdamond", "context", "scheme", "action"]
_CTX = ["kdamond", "context"]
# stats key -> (metric name without _total, help)
_SCHEME_COUNTERS = (
    ("sz_tried", "damoncore_scheme_tried_bytes",
     "Bytes of regions the scheme tried to apply its action to"),
    ("nr_tried", "damoncore_scheme_tried_regions", "Regions the scheme tried"),
    ("sz_applied", "damoncore_scheme_applied_bytes",
     "Bytes the action took effect on"),
    ("nr_applied", "damoncore_scheme_applied_regions",
     "Regions the action took effect on (at least partly)"),
    ("sz_ops_filter_passed", "damoncore_scheme_ops_filter_passed_bytes",
     "Bytes that passed the backend's (ops) filters"),
    ("qt_exceeds", "damoncore_scheme_quota_exceeds", "Quota windows the quota ran out in"),
    ("nr_snapshots", "damoncore_scheme_snapshots", "Monitoring snapshots the scheme walked"),
    ("sz_promoted", "damoncore_scheme_promoted_bytes", "Bytes moved to a faster node"),
    ("sz_demoted", "damoncore_scheme_demoted_bytes", "Bytes moved to a slower node"),
)


def require_client() -> None:
    """Raise :class:`PackageMissing` (one line) unless prometheus_client imports."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise PackageMissing("prometheus_client", "--metrics_port", INSTALL) from None


def _goal_families(core):
    """(current, target) families per goal unit: ratio (bp metrics), seconds (PSI), plain."""
    out = {}
    for unit, suffix, doc in (("ratio", "_ratio", "as a ratio (basis points / 10000)"),
                              ("seconds", "_seconds", "in seconds"),
                              ("plain", "", "(the user's unit)")):
        out[unit] = tuple(core.GaugeMetricFamily(
            f"damoncore_scheme_goal_{kind}{suffix}",
            f"{what} of a quota goal's metric {doc}",
            labels=_SCHEME + ["goal", "metric", "nid"])
            for kind, what in (("current", "Current value"), ("target", "Target value")))
    return out


def _goal_value(metric: str, v: int):
    if metric.endswith("_bp"):
        return "ratio", v / BP
    if metric.endswith("_us"):
        return "seconds", v / 1e6
    return "plain", v


def families(doc):
    """The metric families of one status document."""
    from prometheus_client import core
    G, C = core.GaugeMetricFamily, core.CounterMetricFamily
    gen = G("damoncore_status_generation",
            "Snapshots published so far (the status document's generation)")
    gen.add_metric([], doc["generation"])
    cpu = C("damoncore_monitor_cpu_seconds", "CPU time of the monitoring threads")
    cpu.add_metric([], doc["monitor_cpu_s"])
    ctx_g = {k: G(n, h, labels=_CTX) for k, n, h in (
        ("sample_us", "damoncore_sample_interval_seconds", "Sampling interval in use"),
        ("aggr_us", "damoncore_aggregation_interval_seconds", "Aggregation interval in use"),
        ("ops_update_us", "damoncore_ops_update_interval_seconds",
         "Ops update interval in use"),
        ("nr_regions", "damoncore_regions", "Monitoring regions"),
        ("nr_targets", "damoncore_targets", "Targets still monitored"),
        ("pause", "damoncore_context_paused", "1 while the context is paused"))}
    aggrs = C("damoncore_aggregations", "Aggregation intervals completed", labels=_CTX)
    lost = C("damoncore_perf_lost_samples", "Page-fault samples perf dropped (full rings)",
             labels=_CTX)
    throttled = C("damoncore_perf_throttled",
                  "Times perf throttled the page-fault sampling", labels=_CTX)
    sc = {k: C(n, h, labels=_SCHEME) for k, n, h in _SCHEME_COUNTERS}
    esz = G("damoncore_scheme_quota_effective_bytes",
            "Effective size quota of the current window (0: unlimited)", labels=_SCHEME)
    active = G("damoncore_scheme_active",
               "1 while the scheme is active (watermarks, max_nr_snapshots)", labels=_SCHEME)
    migrated = C("damoncore_scheme_migrated_bytes", "Bytes migrated, per node pair",
                 labels=_SCHEME + ["source_node", "destination_node"])
    goals = _goal_families(core)
    for i, kd in enumerate(doc["kdamonds"]):
        for j, c in enumerate(kd["contexts"]):
            if c is None:
                continue
            cl = [str(i), str(j)]
            for k, fam in ctx_g.items():
                v = c[k]
                fam.add_metric(cl, v / 1e6 if k.endswith("_us") else int(v))
            aggrs.add_metric(cl, c["nr_aggregations"])
            if "perf" in c:
                lost.add_metric(cl, c["perf"]["lost"])
                throttled.add_metric(cl, c["perf"]["throttled"])
            for n, s in enumerate(c["schemes"]):
                sl = cl + [str(n), s["action"]]
                st = s["stats"]
                for k, _, _ in _SCHEME_COUNTERS:
                    sc[k].add_metric(sl, st[k])
                esz.add_metric(sl, s["effective_sz_bytes"])
                active.add_metric(sl, int(s["active"]))
                for m in st["migrated"]:
                    migrated.add_metric(sl + [str(m["src"]), str(m["dst"])], m["bytes"])
                for g_i, g in enumerate(s["goals"]):
                    gl = sl + [str(g_i), g["metric"], "" if g["nid"] is None else str(g["nid"])]
                    unit, cur = _goal_value(g["metric"], g["current_value"])
                    _, tgt = _goal_value(g["metric"], g["target_value"])
                    goals[unit][0].add_metric(gl, cur)
                    goals[unit][1].add_metric(gl, tgt)
    yield from (gen, cpu, *ctx_g.values(), aggrs, lost, throttled, *sc.values(), esz, active,
                migrated)
    for cur, tgt in goals.values():
        yield cur
        yield tgt


class _Collector:
    def __init__(self, board):
        self.board = board

    def collect(self):
        return families(self.board.document())


class MetricsServer:
    """Serves the board's metrics over HTTP on ``addr:port`` (port 0: any free port) from
    a daemon thread; ``url`` says where."""

    def __init__(self, board, port: int, addr: str = "127.0.0.1"):
        require_client()
        from prometheus_client import CollectorRegistry, start_http_server
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(board))
        try:
            self.server, self.thread = start_http_server(port, addr, registry=registry)
        except OSError as e:
            raise OSError(e.errno, f"--metrics_port {port}: cannot listen on {addr}:{port}: "
                                   f"{e.strerror or e}") from None
        self.port = self.server.server_port
        host = f"[{addr}]" if ":" in addr else addr
        self.url = f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
