"""GET /v1/models/{m}/fleet?window=1h: the model's telemetry read back (``packager.fleet``),
behind the model's token: the numbers say how a release does, which is the owner's to read."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from packager.errors import PackagerError, ServiceError
from packager.fleet.aggregate import fleet, parse_window
from packager.fleet.controller import status
from packager.fleet.drift import report_for
from packager.fleet.experiment import report
from packager.registry.channels import read_pointer
from packager.server.asgi import json_response
from packager.server.http import settings
from packager.server.service import path_name, service


async def fleet_route(request: Request) -> Response:
    svc = service(request)
    model = path_name(request, "model", "m")
    await svc.tokens.verify(request.headers.get("authorization"), model)
    try:
        window = parse_window(request.query_params.get("window", "1h"))
    except PackagerError as exc:
        raise ServiceError(400, "bad_request", exc.one_line()) from exc
    await run_in_threadpool(svc.telemetry.flush)  # what the server holds in memory counts too

    def read() -> dict[str, object]:
        now = datetime.now(UTC)
        pointer = read_pointer(svc.view.store, model, "stable")
        doc = fleet(svc.view.store, model, window, now=now, pointer=pointer)
        return {**doc, "rollout": status(svc.view.store, pointer, now, tick_minutes=tick_minutes()),
                "experiment": report(svc.view.store, pointer, now),
                "drift": report_for(svc.view.store, pointer, window, now)}  # fmt: skip

    return json_response(await run_in_threadpool(read), headers={"Cache-Control": "no-store"})


def tick_minutes() -> float:
    return float(settings()["fleet"]["tick_seconds"]) / 60
