"""The ASGI-over-RSGI bridge (packager/server/rsgi.py) that granian serves every Starlette route
through: lifespan, request bodies in chunks, streamed and HEAD responses, errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
from server_helpers import run_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CHUNK = b"0123456789abcdef" * 4096  # 64 KiB


def app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    async def echo(request: Request) -> JSONResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size, "query": request.query_params.get("q"), "path": request.url.path,
                             "agent": request.headers.get("x-agent"), "state": request.state.greeting,
                             "client": request.client.host if request.client else None})  # fmt: skip

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(16):
                yield CHUNK

        return StreamingResponse(chunks(), headers={"Content-Length": str(16 * len(CHUNK))})

    async def head(request: Request) -> Response:
        return Response(status_code=200, headers={"Content-Length": "1234"})

    async def fail(request: Request) -> PlainTextResponse:
        raise RuntimeError("boom")

    return Starlette(lifespan=lifespan, routes=[Route("/echo/{rest:path}", echo, methods=["POST"]),
                                                Route("/stream", stream), Route("/head", head, methods=["HEAD"]),
                                                Route("/fail", fail)])  # fmt: skip


@contextlib.contextmanager
def served(events: list[str]) -> Iterator[httpx.Client]:
    with run_server(app(events)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_rsgi_bridge_runs_the_lifespan_and_passes_its_state() -> None:
    events: list[str] = []
    with served(events) as client:
        assert client.post("/echo/x").json()["state"] == "hello"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_rsgi_bridge_passes_path_query_headers_and_a_streamed_body() -> None:
    with served([]) as client:
        body = iter([CHUNK] * 32)  # 2 MiB without a Content-Length: chunked transfer
        answer = client.post("/echo/a%20b", params={"q": "1 2"}, headers={"X-Agent": "t"}, content=body).json()
        assert answer == {"size": 32 * len(CHUNK), "query": "1 2", "path": "/echo/a b", "agent": "t",
                          "state": "hello", "client": "127.0.0.1"}  # fmt: skip


def test_rsgi_bridge_streams_a_response_and_answers_head_without_a_body() -> None:
    with served([]) as client:
        streamed = client.get("/stream")
        assert streamed.status_code == 200 and streamed.content == CHUNK * 16
        head = client.head("/head")
        assert head.status_code == 200 and head.headers["content-length"] == "1234" and head.content == b""


def test_rsgi_bridge_answers_500_when_the_app_fails() -> None:
    with served([]) as client:
        failed = client.get("/fail")
        assert failed.status_code == 500
        assert client.post("/echo/x").status_code == 200  # and goes on serving
