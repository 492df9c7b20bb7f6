"""Prometheus metrics that stay correct when several server processes serve one atom.

Under ``nginx_run`` every process writes its values to files in PROMETHEUS_MULTIPROC_DIR
(``metrics/`` of the runtime directory, set by the launcher), and one scrape of
``{prefix}/metrics`` through nginx, whichever worker answers, shows the sum over all of
them. A lone ``server.py`` keeps them in memory.
"""

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import Scope

from .runtime_dir import METRICS_DIR_ENV

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "<unmatched>"  # requests that matched no route share one label value


_PLAIN_ROUTES: dict[tuple[str, str], str] = {}  # (route path, request path) -> template


def route_template(scope: Scope) -> str:
    """The template of the route that served the request ("/d2atom/items/{item_id}").

    The matched route knows its template relative to its router; the router's prefix is
    what precedes the rendered template in the request path. Routes without parameters
    are looked up once (their request paths are as few as the routes).
    """
    template = getattr(scope.get("route"), "path", None)
    if template is None:
        return UNMATCHED
    if not scope.get("path_params"):
        key = (template, scope["path"])
        found = _PLAIN_ROUTES.get(key)
        if found is None:
            found = _PLAIN_ROUTES[key] = _full_template(scope, template)
        return found
    return _full_template(scope, template)


def _full_template(scope: Scope, template: str) -> str:
    """The route's template with the prefix that precedes it in the request path."""
    rendered = template
    for name, value in scope.get("path_params", {}).items():
        rendered = re.sub(r"\{" + re.escape(name) + r"(:[^}]*)?\}", str(value), rendered)
    path = scope["path"]
    if rendered and path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template


class ServingMetrics:
    """The registration's metrics, kept by whichever process registers (launcher or server)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.registered = Gauge(
            "atom_serving_registered",
            "1 while the atom is registered with Serving",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.heartbeat_failures = Counter(
            "atom_serving_heartbeat_failures",
            "Heartbeats to Serving that failed",
            registry=registry,
        )

    def on_serving_event(self, event: str) -> None:
        """Follow the Serving agent: registered, unregistered, heartbeat_failed."""
        if event == "heartbeat_failed":
            self.heartbeat_failures.inc()
        else:
            self.registered.set(1 if event == "registered" else 0)


class BatchMetrics:
    """What the batchers report (``api/batching.py``), labelled by model.

    ``atom_batch_queue_depth`` (items waiting, summed over the workers) is the one an
    autoscaler can scale on: it grows when the atom cannot keep up.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.size = Histogram(
            "atom_batch_size",
            "Items per call of a model's batch method",
            ["model"],
            buckets=BATCH_SIZES,
            registry=registry,
        )
        self.wait = Histogram(
            "atom_batch_wait_seconds",
            "Time a request waited in the queue before its batch started",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.depth = Gauge(
            "atom_batch_queue_depth",
            "Items waiting for a batch",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )

    def batch_ran(self, model: str, size: int, waits: Sequence[float]) -> None:
        """One batch started: its size, and how long each of its requests waited."""
        self.size.labels(model).observe(size)
        wait = self.wait.labels(model)
        for seconds in waits:
            wait.observe(seconds)

    def queue_depth(self, model: str, depth: int) -> None:
        """Items waiting now."""
        self.depth.labels(model).set(depth)


class Metrics:
    """The atom's metrics, in a registry of their own (one per app, so tests can build many).

    ``template`` labels ``atom_template_info`` (always 1) with the atom-template release of
    the runtime, its ``version`` and ``commit``: an operator sees which atoms run an old one.
    """

    def __init__(self, template: Mapping[str, str] | None = None) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        template = template or {}
        self.template_info = Gauge(
            "atom_template_info",
            "The atom-template release of the runtime, in its labels (always 1)",
            ["version", "commit"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.template_info.labels(template.get("version", ""), template.get("commit", "")).set(1)
        self.requests = Counter(
            "atom_requests",
            "HTTP requests served",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "atom_request_duration_seconds",
            "Time to serve a request",
            ["route", "method"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "atom_requests_in_flight",
            "Requests being served",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.model_load_seconds = Gauge(
            "atom_model_load_seconds",
            "Time the model took to load",
            ["model"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.ready = Gauge(
            "atom_ready",
            "1 when every model is loaded (the minimum over the workers)",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.serving = ServingMetrics(registry)
        self.batches = BatchMetrics(registry)
        self.recorder = RequestRecorder(self)
        # Streamed replies (api/streaming.py).
        self.streams_open = Gauge(
            "atom_streams_open",
            "Streamed replies being sent",
            ["route"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.stream_first_event_seconds = Histogram(
            "atom_stream_first_event_seconds",
            "Time from a stream route's call to its first event",
            ["route"],
            buckets=BUCKETS,
            registry=registry,
        )

    def render(self) -> bytes:
        """The exposition text: every process's values in multiprocess mode, ours otherwise."""
        if os.environ.get(METRICS_DIR_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class RequestRecorder:
    """Counts and times the requests of the process (the request-context middleware calls it):
    prometheus_client's count, latency and in-flight gauge written at each request.

    Holding them in Python and writing them in bulk was measured against these writes in
    the template's ``bench_choices``, under multiprocess metrics: 1.08x less CPU per
    logged call, below the 1.10x a speed trick must win, so it went.
    """

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def started(self) -> None:
        """A request came in."""
        self.metrics.in_flight.inc()

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request was answered."""
        self.metrics.in_flight.dec()
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # bounded: routes x methods x statuses
            children = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.latency.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight, ready) in multiprocess mode."""
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)
