"""Prometheus metrics: request count and latency by route template, method and status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("packager_http_requests", "HTTP requests served", ("route", "method", "status"),
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("packager_http_request_seconds", "Time to the response's first byte",
                                 ("route", "method"), buckets=_BUCKETS, registry=self.registry)  # fmt: skip

    def render(self, request: Request) -> Response:
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
                self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.routes.get(scope.get("endpoint"), "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
