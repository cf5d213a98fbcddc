"""The manifest server's app: the read API (``packager.server.api``) behind its ASGI adapter
(``packager.server.front``), and Starlette for the writes, the browser pages, /metrics and
/openapi.json; stateless over a Store, so any number of replicas serve one registry. Routes and
their schemas are listed in ``packager.server.openapi``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from packager.errors import PackagerError
from packager.registry import channels, signing
from packager.registry.store import Store
from packager.server import browser, writes
from packager.server.api import Call, Cors, ReadApi
from packager.server.asgi import error_response, json_response
from packager.server.fleet import FleetApi
from packager.server.front import Front
from packager.server.http import disconnected, failure, settings
from packager.server.metrics import Metrics, MetricsMiddleware
from packager.server.openapi import openapi
from packager.server.service import Service, path_name, service
from packager.server.telemetry import Guard, TelemetrySink
from packager.server.tokens import Tokens
from packager.server.views import RegistryView

log = logging.getLogger("packager.server")


def create_app(store: Store, *, tokens: Path | None = None, keys: Path | None = None, base_url: str = "",
               telemetry: Path | None = None, pointer_seconds: float | None = None,
               cors_origins: tuple[str, ...] = ("*",),
               overrides: Mapping[str, Mapping[str, Any]] | None = None,
               clock: Callable[[], datetime] | None = None) -> Front:  # fmt: skip
    """The HTTP API over ``store``: an ASGI app (``packager serve`` runs it on uvicorn).

    ``tokens``: the tokens file of the write API (None: writes are refused). ``keys``: the
    signing keys folder, checked against the registry's root now (needed to write to a signed
    registry). ``base_url``: prefix of artifact URLs in resolutions (default: relative URLs).
    ``telemetry``: a JSON Lines file for device events (default: the store's telemetry/ prefix).
    ``pointer_seconds``: how long a read channel pointer is trusted (server.toml's default).
    ``cors_origins``: the page origins whose browser loaders may call the read API (no cookies
    are involved, so "*" is the default; writes carry a bearer token and get no CORS grant).
    ``overrides``: server.toml values to change, by section (``{"telemetry": {"address_burst": 5}}``).
    ``clock``: the time telemetry is received at and the controller decides at (default: now; a
    simulation passes its own).
    """
    if keys is not None:
        channels.signers_for(store, signing.read_state(store), keys)  # refuse wrong keys at start-up
    conf = {section: {**values, **(overrides or {}).get(section, {})} for section, values in settings().items()}
    limits = {**conf["limits"], "artifact_chunk": int(conf["artifacts"]["chunk"])}
    cache = conf["cache"]
    view = RegistryView(store, pointer_seconds=float(cache["pointer_seconds"] if pointer_seconds is None
                                                     else pointer_seconds),
                        versions=int(cache["versions"]), derived=int(cache["manifests"]),
                        channels=int(cache["channels"]), artifacts=int(cache["artifacts"]))  # fmt: skip
    metrics = Metrics()
    routes = _routes(metrics)
    tele = conf["telemetry"]
    sink = TelemetrySink(store, telemetry, buffered=True, segment_bytes=int(tele["segment_bytes"]), clock=clock)
    lifespan = _lifespan(store, keys, float(conf["signing"]["refresh_check_seconds"]), sink,
                         float(tele["segment_seconds"]), float(conf["fleet"]["tick_seconds"]),
                         writable=tokens is not None, metrics=metrics)  # fmt: skip
    # ClientDisconnect by name: Starlette re-raises what only the Exception handler catches (logged
    # as a crash); a client gone mid-body is no crash
    handlers = {PackagerError: _error, HTTPException: _http_error, ClientDisconnect: _error, Exception: _error}
    app = Starlette(lifespan=lifespan, routes=routes, exception_handlers=handlers,  # type: ignore[arg-type]
                    middleware=[Middleware(MetricsMiddleware, metrics=metrics,
                                           routes={r.endpoint: r.path for r in routes})])  # fmt: skip
    svc = Service(view=view, tokens=Tokens(tokens), keys=keys, base_url=base_url.rstrip("/"),
                  telemetry=sink, limits=limits)  # fmt: skip
    app.state.service = svc
    app.state.fleet = FleetApi(store, svc.tokens, tick_minutes=float(conf["fleet"]["tick_seconds"]) / 60,
                               chart_tags=browser.chart_tags, flush=sink.flush, clock=sink.clock)  # fmt: skip
    app.router.redirect_slashes = False  # Starlette's redirect is built from the Host header a client sends
    app.state.api = ReadApi(view, limits=limits, artifact_url=svc.artifact_url, sink=sink, metrics=metrics,
                            guard=Guard(tele, lambda: view.models(float(tele["models_seconds"]))),
                            cors=Cors(cors_origins), classes=int(cache["profiles"]),
                            answers=int(cache["resolutions"]))  # fmt: skip
    return Front(app, app.state.api)


def _lifespan(store: Store, keys: Path | None, every: float, sink: TelemetrySink, flush_every: float,
              tick_every: float, *, writable: bool, metrics: Metrics) -> Any:  # fmt: skip
    """What runs beside the server: telemetry segments written every ``flush_every`` seconds (and
    at shutdown); with ``keys`` the registry's TUF timestamp kept fresh (checked before the first
    request, then every ``every`` seconds); and where the server writes the registry (with
    ``keys``, or tokens on an unsigned one) the rollout controller every ``tick_every`` seconds, and
    on that timer always the drift of every channel's versions, for /metrics."""

    async def refresh() -> None:
        assert keys is not None
        try:
            if await run_in_threadpool(signing.needs_refresh, store, datetime.now(UTC)):
                version = await run_in_threadpool(signing.refresh, store, keys, datetime.now(UTC))
                log.warning("re-signed %s before its timestamp expired (timestamp version %d)", store.url, version)
        except PackagerError as exc:  # logged and retried at the next check; serving goes on
            log.error("could not re-sign %s: %s", store.url, exc)

    async def flush() -> None:
        try:
            await run_in_threadpool(sink.flush)
        except PackagerError as exc:  # best effort, like the devices' own sending: logged, dropped
            log.error("could not write telemetry to %s: %s", store.url, exc)

    async def controller() -> None:
        from packager.fleet.controller import tick

        try:
            await run_in_threadpool(sink.flush)  # what devices sent since the last segment counts
            minutes = tick_every / 60
            decided = await run_in_threadpool(lambda: tick(store, keys=keys, now=sink.clock(), tick_minutes=minutes))
            for done in decided:
                if done.action != "hold":
                    log.warning("%s/%s: %s (%d%%): %s", done.model, done.channel, done.action, done.percent,
                                done.reason)  # fmt: skip
        except PackagerError as exc:  # logged, and the next tick tries again
            log.error("the rollout controller could not run: %s", exc.one_line())

    async def drift() -> None:
        from datetime import timedelta

        from packager.fleet.controller import pointers
        from packager.fleet.drift import report_for

        def measure() -> None:
            sink.flush()
            for pointer in pointers(store):
                if pointer.channel == "stable" and pointer.stable is not None:
                    metrics.drift(pointer.model, report_for(store, pointer, timedelta(hours=1), sink.clock()))

        try:
            await run_in_threadpool(measure)
        except PackagerError as exc:  # logged, and the next pass tries again
            log.error("drift could not be measured: %s", exc.one_line())

    async def every_so_often(seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            await job()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(every_so_often(flush_every, flush))]
        signed = signing.is_signed(store)
        if keys is not None and signed:
            await refresh()
            tasks.append(asyncio.create_task(every_so_often(every, refresh)))
        if keys is not None or (writable and not signed):
            tasks.append(asyncio.create_task(every_so_often(tick_every, controller)))
        tasks.append(asyncio.create_task(every_so_often(tick_every, drift)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await flush()

    return lifespan


def _routes(metrics: Metrics) -> list[Route]:
    return [
        # the read routes are the read API's (packager.server.api), answered before Starlette
        Route("/metrics", metrics.render, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Route("/v1/models/{m}/versions", writes.publish, methods=["POST"]),
        Route("/v1/models/{m}/channels/{c}", writes.rollout, methods=["PUT"]),
        Route("/v1/models/{m}/channels/{c}/rollback", writes.rollback, methods=["POST"]),
        Route("/v1/models/{m}/fleet", fleet_route, methods=["GET"]),
        Route("/v1/models/{m}/dashboard", dashboard_data_route, methods=["GET"]),
        Route("/v1/client.js", browser.client_route, methods=["GET"]),
        Route("/demo/{m}", browser.demo_route, methods=["GET"]),
        Route("/dashboard/{m}", dashboard_page_route, methods=["GET"]),
        Route("/vendor/{package}/{file}", browser.vendor_route, methods=["GET"]),
    ]  # fmt: skip


async def fleet_route(request: Request) -> Response:
    return await _fleet(request)


async def dashboard_data_route(request: Request) -> Response:  # its own endpoint: its own metrics label
    return await _fleet(request)


async def dashboard_page_route(request: Request) -> Response:
    return await _fleet(request)


async def _fleet(request: Request) -> Response:
    """The fleet routes (``packager.server.fleet``): the token checked here, off the event loop
    with a bounded number of scrypts at once (the API's own check then finds it remembered), and
    the answer made in a worker thread (DuckDB reads the segments)."""
    api: FleetApi = request.app.state.fleet
    found = api.route(request.method, request.url.path)
    if found is not None and found[0] != "page":
        await service(request).tokens.verify(request.headers.get("authorization"), path_name(request, "model", "m"))
    call = Call(request.method, request.url.path, request.url.query,
                {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(request.headers.raw)},
                client=request.client.host if request.client else None)  # fmt: skip
    answer = await run_in_threadpool(api.answer, call)
    assert isinstance(answer.body, bytes)
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


async def openapi_route(request: Request) -> Response:
    return json_response(openapi())


async def _error(request: Request, exc: Exception) -> Response:
    error = disconnected() if isinstance(exc, ClientDisconnect) else failure(exc, request.method, request.url.path)
    return error_response(error.status, error.code, error.message, error.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers: dict[str, Any] = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), headers)
