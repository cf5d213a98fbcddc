"""Prometheus metrics: request count and latency by route template, method and status.

The numbers are plain dicts and lists that a request adds to on the event loop's thread (two dict
updates and a bisect: a fraction of a microsecond, where prometheus_client's Counter and
Histogram take a lock and walk the buckets in Python per request); a collector turns them into
the usual families when /metrics is scraped, on that same thread.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_LE = [*(floatToGoString(b) for b in _BUCKETS), "+Inf"]


class Metrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # a count per bucket (+Inf last), then the sum
        self._drift: dict[tuple[str, str, str], float] = {}  # (model, version, feature) -> PSI, as last computed
        self.registry.register(self)  # a collector: collect() below

    def observe(self, route: str, method: str, seconds: float) -> None:
        """One request's time to its first byte."""
        counts = self._latency.get((route, method))
        if counts is None:
            counts = self._latency[(route, method)] = [0.0] * (len(_BUCKETS) + 2)
        counts[bisect_left(_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        counts[-1] += seconds

    def count(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        self._requests[key] = self._requests.get(key, 0) + 1

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """``observe`` and ``count`` (the front door's, once per resolve)."""
        self.observe(route, method, seconds)
        self.count(route, method, status)

    def drift(self, model: str, found: Mapping[str, Any]) -> None:
        """A model's drift report (``packager.fleet.drift.report``): its PSI gauges replace the last."""
        self._drift = {k: v for k, v in self._drift.items() if k[0] != model}
        for version, doc in found.get("versions", {}).items():
            for row in doc["features"]:
                if row["psi"] is not None:
                    self._drift[(model, version, row["feature"])] = float(row["psi"])

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("packager_http_requests", "HTTP requests served",
                                       labels=("route", "method", "status"))  # fmt: skip
        for (route, method, status), n in sorted(self._requests.items()):
            requests.add_metric([route, method, str(status)], n)
        latency = HistogramMetricFamily("packager_http_request_seconds", "Time to the response's first byte",
                                        labels=("route", "method"))  # fmt: skip
        for (route, method), counts in sorted(self._latency.items()):
            cumulative, buckets = 0.0, []
            for le, hits in zip(_LE, counts[:-1], strict=True):
                cumulative += hits
                buckets.append((le, cumulative))
            latency.add_metric([route, method], buckets, counts[-1])
        yield requests
        yield latency
        drift = GaugeMetricFamily("packager_drift_psi", "PSI of what devices count against the build's reference bins "
                                  "(the fleet controller's last pass, a 1-hour window)",
                                  labels=("model", "version", "feature"))  # fmt: skip
        for (model, version, feature), value in sorted(self._drift.items()):
            drift.add_metric([model, version, feature], value)
        yield drift

    async def render(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Times each request and labels it with the template of the route that served it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Mapping[Any, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                route = self.routes.get(scope.get("endpoint"), "unmatched")
                self.metrics.observe(route, scope["method"], time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.routes.get(scope.get("endpoint"), "unmatched")
            self.metrics.count(route, scope["method"], status[0])
