"""GET /v1/models/{m}/fleet?window=1h: the model's telemetry read back (``packager.fleet``), and
GET /v1/models/{m}/dashboard?window=6h: the same over time, what ``/dashboard/{m}`` draws. Both
behind the model's token: the numbers say how a release does, which is the owner's to read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from packager.errors import PackagerError, ServiceError
from packager.fleet.aggregate import fleet, parse_window
from packager.fleet.controller import status
from packager.fleet.dashboard import document, step_for
from packager.fleet.drift import report_for
from packager.fleet.experiment import report
from packager.registry.channels import read_pointer
from packager.server.asgi import json_response
from packager.server.http import settings
from packager.server.service import Service, path_name, service


async def fleet_route(request: Request) -> Response:
    svc, model, window = await _guarded(request, "1h")

    def read() -> dict[str, object]:
        now = datetime.now(UTC)
        pointer = read_pointer(svc.view.store, model, "stable")
        doc = fleet(svc.view.store, model, window, now=now, pointer=pointer)
        return {**doc, "rollout": status(svc.view.store, pointer, now, tick_minutes=tick_minutes()),
                "experiment": report(svc.view.store, pointer, now),
                "drift": report_for(svc.view.store, pointer, window, now)}  # fmt: skip

    return json_response(await run_in_threadpool(read), headers={"Cache-Control": "no-store"})


async def dashboard_route(request: Request) -> Response:
    svc, model, window = await _guarded(request, "6h")
    try:
        text = request.query_params.get("step")
        step = parse_window(text) if text else None
        step_for(window, step)
    except PackagerError as exc:
        raise ServiceError(400, "bad_request", exc.one_line()) from exc

    def read() -> dict[str, object]:
        pointer = read_pointer(svc.view.store, model, "stable")
        if not pointer.stable:
            raise ServiceError(404, "not_found", f"model {model} has nothing published on its stable channel")
        return document(svc.view.store, pointer, window, datetime.now(UTC), step=step, tick_minutes=tick_minutes())

    return json_response(await run_in_threadpool(read), headers={"Cache-Control": "no-store"})


async def _guarded(request: Request, default_window: str) -> tuple[Service, str, timedelta]:
    """The service, the model and the window of a fleet read, once the model's token is checked
    and what the server holds in memory is written (it counts too)."""
    svc = service(request)
    model = path_name(request, "model", "m")
    await svc.tokens.verify(request.headers.get("authorization"), model)
    try:
        window = parse_window(request.query_params.get("window", default_window))
    except PackagerError as exc:
        raise ServiceError(400, "bad_request", exc.one_line()) from exc
    await run_in_threadpool(svc.telemetry.flush)
    return svc, model, window


def tick_minutes() -> float:
    return float(settings()["fleet"]["tick_seconds"]) / 60
