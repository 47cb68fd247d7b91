"""A running ``start``/``record``/``numa-migrate`` as its control socket and metrics
endpoint see it: the stats board and the ``stop``, ``tune`` and ``params`` requests.

The stats board: each monitoring thread publishes a status snapshot of its contexts at
aggregation ends (every one, or one per 20 ms of wall time when aggregations come faster,
as on simulated memory) and after every commit, in that thread, so the snapshot is a
consistent picture between two samples.  ``status`` and the metrics endpoint both serve
the latest snapshot: two readers between two publications see the same numbers
(``generation`` counts the publications).

``tune`` takes damo's start options (the full spec: what is left out takes its default, as
with ``damo tune``), builds the new contexts, checks everything against the running ones
(:func:`damoncore.core.commit.check_commit`) and only then commits them, between two
samples, in the monitoring threads.  Bad input changes nothing.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from .. import kdamonds as kd
from ..core.context import CallCanceled
from ..errors import ActionNotSupported, DamonError, InvalidConfig
from .damo_args import kdamonds_from_args, validate
from .damo_options import ArgumentParser, set_damon_params_argparser
from .status_server import context_status

#: seconds a request waits for a monitoring thread to reach a sample boundary
CALL_TIMEOUT_S = 30.0
#: wall seconds between two published snapshots of one monitoring thread, at least
MIN_PUBLISH_S = 0.02


def spec_parser() -> ArgumentParser:
    """The options ``tune`` forwards: damo's DAMON parameter options, nothing else."""
    p = ArgumentParser(prog="damoncore tune", add_help=False)
    set_damon_params_argparser(p)
    return p


def spec_defaults() -> dict:
    return vars(spec_parser().parse_args([]))


def namespace_from(fields) -> argparse.Namespace:
    """The option values a ``tune`` client sent, on top of the defaults; unknown names are
    bad input."""
    if not isinstance(fields, dict):
        raise InvalidConfig("tune: the request's options must be an object")
    ns = spec_defaults()
    unknown = sorted(set(fields) - set(ns))
    if unknown:
        raise InvalidConfig(f"tune: unknown option field {kd.show(unknown[0])}")
    ns.update(fields)
    return argparse.Namespace(**ns)


def _space(name) -> str:
    return "vaddr" if name == "fvaddr" else name


class StatsBoard:
    """The latest published status of every context (see the module doc)."""

    def __init__(self, kdamonds):
        self.kdamonds = kdamonds
        self._lock = threading.Lock()
        self._parts = {}          # (kdamond, context) -> context_status()
        self._cpu_s = {}          # monitoring thread name -> its CPU seconds
        self.generation = 0

    def publish(self, indexed, thread_name=None) -> None:
        """Snapshot the contexts ``indexed`` [(i, j, ctx)]; call it in their monitoring
        thread (or while nothing runs)."""
        parts = {(i, j): context_status(c) for i, j, c in indexed}
        cpu = time.thread_time() if thread_name else None
        with self._lock:
            self._parts.update(parts)
            if thread_name:
                self._cpu_s[thread_name] = cpu
            self.generation += 1

    def document(self) -> dict:
        """The status document of the latest snapshot."""
        with self._lock:
            parts, cpu, gen = dict(self._parts), dict(self._cpu_s), self.generation
        return {"pid": os.getpid(), "generation": gen,
                "monitor_cpu_s": sum(cpu.values()),
                "kdamonds": [{"contexts": [parts.get((i, j)) for j in range(len(ctxs))]}
                             for i, ctxs in enumerate(self.kdamonds)]}


class LiveRun:
    """The control handlers of one run.

    ``kdamonds``: the run's contexts, a list per kdamond; ``runners``: the
    :class:`~damoncore.core.context.Kdamond` objects that run them (one for all, or one per
    kdamond); ``stop``: ends the run as SIGTERM does; ``resolver``: where ``--numa_node``
    and a bare paddr target point on this run's backend.
    """

    def __init__(self, kdamonds, runners, stop, resolver):
        self.kdamonds = kdamonds
        self.runners = list(runners)
        self.stop = stop
        self.resolver = resolver
        self.board = StatsBoard(kdamonds)
        self._tune_lock = threading.Lock()
        where = {id(c): (i, j) for i, ctxs in enumerate(kdamonds) for j, c in enumerate(ctxs)}
        self.groups = []          # (runner, [(i, j, ctx)]) in the runner's context order
        for n, r in enumerate(self.runners):
            group = [(*where[id(c)], c) for c in r.contexts if id(c) in where]
            self.groups.append((r, group))
            for _, _, c in group:
                c.add_callback(self._publisher(group, f"kdamond.{n}"))
        self.board.publish([(i, j, c) for i, ctxs in enumerate(kdamonds)
                            for j, c in enumerate(ctxs)])

    def _publisher(self, group, thread_name):
        last = [float("-inf")]

        def publish(ctx, snapshot):       # an aggregation callback; never stops the context
            # a simulated run aggregates thousands of times a wall second: at most
            # 1/MIN_PUBLISH_S snapshots a second keep the board cheap
            now = time.monotonic()
            if now - last[0] >= MIN_PUBLISH_S:
                last[0] = now
                self.board.publish(group, thread_name)
        return publish

    def handlers(self) -> dict:
        return {"stop": self.handle_stop, "tune": self.handle_tune,
                "params": self.handle_params}

    def status(self) -> dict:
        return self.board.document()

    # --- requests ------------------------------------------------------------------------
    def handle_stop(self, req) -> dict:
        self.stop()
        return {"ok": True, "pid": os.getpid()}

    def _in_runners(self, fn):
        """``fn(group)`` in each runner's thread; their results in runner order."""
        out = []
        for r, group in self.groups:
            if r.running:
                out.append(r.call(lambda g=group: fn(g), CALL_TIMEOUT_S))
            else:
                out.append(fn(group))
        return out

    def handle_params(self, req) -> dict:
        raw = bool(req.get("raw"))
        parts = {}
        for got in self._in_runners(
                lambda g: {(i, j): kd.context_to_dict(c, raw) for i, j, c in g}):
            parts.update(got)
        return {"kdamonds": [{"refresh_ms": 0,
                              "contexts": [parts[(i, j)] for j in range(len(ctxs))]}
                             for i, ctxs in enumerate(self.kdamonds)]}

    def handle_tune(self, req) -> dict:
        try:
            with self._tune_lock:
                at = self.tune(namespace_from(req.get("options")),
                               bool(req.get("quota_goals_only")))
        except (InvalidConfig, ActionNotSupported) as e:
            return {"error": str(e), "status": 2}
        except (CallCanceled, TimeoutError) as e:
            return {"error": f"the run could not take the commit: {e}", "status": 1}
        except DamonError as e:
            return {"error": str(e), "status": 1}
        return {"ok": True, "pid": os.getpid(), "contexts": sum(map(len, at)),
                "committed_at_us": at}

    def new_contexts(self, args) -> list:
        """The contexts the options describe, checked against the running ones; built
        on stand-in backends (nothing starts)."""
        d = kdamonds_from_args(args, self.resolver)
        new = validate(d)
        shape = [len(c) for c in self.kdamonds]
        if [len(c) for c in new] != shape:
            raise InvalidConfig(f"the options describe {len(new)} kdamonds with "
                                f"{[len(c) for c in new]} contexts; the run has {len(shape)} "
                                f"with {shape} (a tune cannot add or remove contexts)")
        for i, (ctxs, dicts) in enumerate(zip(self.kdamonds, d["kdamonds"])):
            for j, (c, cd) in enumerate(zip(ctxs, dicts["contexts"])):
                have, want = _space(kd.ops_space(c.ops)), _space(cd.get("ops", "paddr"))
                if have in kd.OPS and want != have:
                    raise InvalidConfig(f"kdamond {i} context {j}: ops {want}: the running "
                                        f"context monitors {have}, which a tune cannot "
                                        f"change")
        return new

    def tune(self, args, goals_only: bool = False) -> list:
        """Commit the options ``args`` (a namespace of damo's options) to the run; returns
        each context's clock time (us) at the commit, a list per kdamond.  Raises before
        anything changes on bad input."""
        from ..core.commit import check_commit
        new = self.new_contexts(args)
        src = {id(c): n for ctxs, news in zip(self.kdamonds, new) for c, n in zip(ctxs, news)}
        where = {id(c): (i, j) for i, ctxs in enumerate(self.kdamonds)
                 for j, c in enumerate(ctxs)}
        for ctxs in self.kdamonds:
            for c in ctxs:
                try:
                    check_commit(c, src[id(c)], goals_only)
                except (InvalidConfig, ActionNotSupported) as e:
                    i, j = where[id(c)]
                    raise type(e)(f"kdamond {i} context {j}: {e}") from e
        at = {}
        for r, group in self.groups:
            def then(g=group):
                self.board.publish(g)
                return {(i, j): c.clock.now_us() for i, j, c in g}
            at.update(r.commit([src[id(c)] for c in r.contexts], goals_only, CALL_TIMEOUT_S,
                               then=then))
        return [[at[(i, j)] for j in range(len(ctxs))] for i, ctxs in enumerate(self.kdamonds)]
