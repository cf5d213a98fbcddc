"""The manifest server's app: Starlette behind a front door that answers resolve itself
(``packager.server.front``); stateless over a Store, so any number of replicas serve one registry.
Routes and their schemas are listed in ``packager.server.openapi``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from packager.errors import PackagerError
from packager.registry import channels, signing
from packager.registry.store import Store
from packager.server import browser, reads, writes
from packager.server.front import Front
from packager.server.http import error_response, failure, json_response, settings
from packager.server.metrics import Metrics, MetricsMiddleware
from packager.server.openapi import openapi
from packager.server.resolver import Resolver, resolve_route
from packager.server.service import Service, service
from packager.server.telemetry import Guard, TelemetrySink
from packager.server.tokens import Tokens
from packager.server.views import RegistryView

log = logging.getLogger("packager.server")
CORS_EXPOSED = ("etag", "content-range", "content-length", "accept-ranges")


def create_app(store: Store, *, tokens: Path | None = None, keys: Path | None = None, base_url: str = "",
               telemetry: Path | None = None, pointer_seconds: float | None = None,
               cors_origins: tuple[str, ...] = ("*",),
               overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Front:  # fmt: skip
    """The HTTP API over ``store``: an ASGI app (``packager serve`` runs it on uvicorn).

    ``tokens``: the tokens file of the write API (None: writes are refused). ``keys``: the
    signing keys folder, checked against the registry's root now (needed to write to a signed
    registry). ``base_url``: prefix of artifact URLs in resolutions (default: relative URLs).
    ``telemetry``: a JSON Lines file for device events (default: the store's telemetry/ prefix).
    ``pointer_seconds``: how long a read channel pointer is trusted (server.toml's default).
    ``cors_origins``: the page origins whose browser loaders may call the read API (no cookies
    are involved, so "*" is the default; writes carry a bearer token and get no CORS grant).
    ``overrides``: server.toml values to change, by section (``{"telemetry": {"address_burst": 5}}``).
    """
    if keys is not None:
        channels.signers_for(store, signing.read_state(store), keys)  # refuse wrong keys at start-up
    conf = {section: {**values, **(overrides or {}).get(section, {})} for section, values in settings().items()}
    limits = {**conf["limits"], "artifact_chunk": int(conf["artifacts"]["chunk"])}
    cache = conf["cache"]
    view = RegistryView(store, pointer_seconds=float(cache["pointer_seconds"] if pointer_seconds is None
                                                     else pointer_seconds),
                        versions=int(cache["versions"]), derived=int(cache["manifests"]),
                        channels=int(cache["channels"]))  # fmt: skip
    metrics = Metrics()
    routes = _routes(metrics)
    tele = conf["telemetry"]
    sink = TelemetrySink(store, telemetry, buffered=True, segment_bytes=int(tele["segment_bytes"]))
    lifespan = _lifespan(store, keys, float(conf["signing"]["refresh_check_seconds"]), sink,
                         float(tele["segment_seconds"]))  # fmt: skip
    # ClientDisconnect by name: Starlette re-raises what only the Exception handler catches (logged
    # as a crash); a client gone mid-body is no crash
    handlers = {PackagerError: _error, HTTPException: _http_error, ClientDisconnect: _error, Exception: _error}
    app = Starlette(lifespan=lifespan, routes=routes, exception_handlers=handlers,  # type: ignore[arg-type]
                    middleware=[Middleware(MetricsMiddleware, metrics=metrics,
                                           routes={r.endpoint: r.path for r in routes}),
                                _cors(cors_origins)])  # fmt: skip
    svc = Service(view=view, tokens=Tokens(tokens), keys=keys, base_url=base_url.rstrip("/"),
                  telemetry=sink, limits=limits,
                  guard=Guard(tele, lambda: view.models(float(tele["models_seconds"]))))  # fmt: skip
    app.state.service = svc
    app.router.redirect_slashes = False  # Starlette's redirect is built from the Host header a client sends
    app.state.resolver = Resolver(svc, classes=int(cache["profiles"]), answers=int(cache["resolutions"]))
    return Front(app, app.state.resolver, metrics, cors_origins=cors_origins, cors_exposed=CORS_EXPOSED)


def _lifespan(store: Store, keys: Path | None, every: float, sink: TelemetrySink, flush_every: float) -> Any:
    """What runs beside the server: telemetry segments written every ``flush_every`` seconds (and
    at shutdown), and with ``keys`` the registry's TUF timestamp kept fresh (checked before the
    first request, then every ``every`` seconds)."""

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

    async def every_so_often(seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            await job()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(every_so_often(flush_every, flush))]
        if keys is not None and signing.is_signed(store):
            await refresh()
            tasks.append(asyncio.create_task(every_so_often(every, refresh)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await flush()

    return lifespan


class _Cors(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight in the JSON error shape (Starlette
    answers it text/plain, "Disallowed CORS method")."""

    def preflight_response(self, request_headers: Any) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code < 400:
            return answer
        message = bytes(answer.body).decode("latin-1")
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(answer.status_code, "cors_refused", f"{message}: this server does not grant it", kept)


def _cors(origins: tuple[str, ...]) -> Middleware:
    """Cross-origin reads for browser loaders: resolve (a JSON POST), catalogs, artifacts (ranged)."""
    return Middleware(_Cors, allow_origins=list(origins), allow_methods=["GET", "POST"],
                      allow_headers=["content-type", "range", "if-none-match"], expose_headers=CORS_EXPOSED,
                      max_age=600)  # fmt: skip


def _routes(metrics: Metrics) -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics.render, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Route("/v1/models/{m}/manifest", reads.manifest, methods=["GET"]),
        Route("/v1/models/{m}/resolve", resolve_route, methods=["POST"]),
        Route("/v1/models/{m}/versions", writes.publish, methods=["POST"]),
        Route("/v1/models/{m}/versions/{v}", reads.version_document, methods=["GET"]),
        Route("/v1/models/{m}/channels/{c}", reads.pointer_document, methods=["GET"]),
        Route("/v1/models/{m}/channels/{c}", writes.rollout, methods=["PUT"]),
        Route("/v1/models/{m}/channels/{c}/rollback", writes.rollback, methods=["POST"]),
        Route("/v1/artifacts/{sha256}", reads.artifact, methods=["GET"]),
        Route("/v1/tuf/{name}", reads.tuf_metadata, methods=["GET"]),
        Route("/v1/telemetry", writes.telemetry, methods=["POST"]),
        Route("/v1/client.js", browser.client_route, methods=["GET"]),
        Route("/demo/{m}", browser.demo_route, methods=["GET"]),
        Route("/vendor/{package}/{file}", browser.vendor_route, methods=["GET"]),
    ]  # fmt: skip


async def healthz(request: Request) -> Response:
    svc = service(request)
    signed = await run_in_threadpool(svc.view.signed)
    # The kind of store, not its URL: a folder's URL is a path on this server's disk.
    store = "s3" if svc.view.store.url.startswith("s3://") else "folder"
    return json_response({"status": "ok", "store": store, "signed": signed}, headers={"Cache-Control": "no-store"})


async def openapi_route(request: Request) -> Response:
    return json_response(openapi())


async def _error(request: Request, exc: Exception) -> Response:
    error = failure(exc, request.method, request.url.path)
    return error_response(error.status, error.code, error.message, error.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers: dict[str, Any] = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), headers)
