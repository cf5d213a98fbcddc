"""An ASGI app served over granian's RSGI interface (https://github.com/emmett-framework/granian,
docs/spec/RSGI.md), so that one granian worker serves both the front door's RSGI fast path and
the Starlette app behind it.

RSGI hands Python the request as one call with the headers, path and query already decoded, and
takes a response as one call (``response_bytes``) or a stream; this module builds the ASGI scope
and the receive/send pair over that. The scope says ASGI spec 2.4: a send to a closed connection
raises OSError, and Starlette streams without a task listening for the disconnect. The lifespan
(start-up, shutdown) runs through ``Lifespan``, from granian's ``__rsgi_init__``/``__rsgi_del__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Message

log = logging.getLogger("packager.server")
ASGI = {"version": "3.0", "spec_version": "2.4"}


def _bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def _address(text: str | None) -> tuple[str, int] | None:
    host, _, port = (text or "").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def asgi_scope(scope: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The ASGI HTTP scope of an RSGI request scope. RSGI gives the path decoded only, so
    ``raw_path`` is it quoted again (Starlette routes on ``path``)."""
    return {
        "type": "http", "asgi": ASGI, "http_version": scope.http_version, "method": scope.method,
        "scheme": scope.scheme, "path": scope.path, "raw_path": quote(scope.path).encode(),
        "query_string": _bytes(scope.query_string), "root_path": "",
        "headers": [(_bytes(k), _bytes(v)) for k, v in scope.headers.items()],
        "client": _address(scope.client), "server": _address(scope.server), "state": dict(state),
    }  # fmt: skip


async def serve_asgi(app: ASGIApp, scope: Any, proto: Any, state: dict[str, Any]) -> None:
    """Answer one RSGI HTTP request with ``app``."""
    body = proto.__aiter__()
    read_all = False
    start: Message | None = None
    stream: Any = None
    done = False

    async def receive() -> Message:
        nonlocal read_all
        if not read_all:
            try:
                return {"type": "http.request", "body": bytes(await body.__anext__()), "more_body": True}
            except StopAsyncIteration:
                read_all = True
                return {"type": "http.request", "body": b"", "more_body": False}
        await proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal start, stream, done
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None or done:
            return
        chunk, more = bytes(message.get("body", b"")), bool(message.get("more_body", False))
        status = int(start["status"])
        if stream is None and not more:
            proto.response_bytes(status, _str_headers(start), chunk)
            done = True
            return
        if stream is None:
            stream = proto.response_stream(status, _str_headers(start))
        try:
            if chunk:
                await stream.send_bytes(chunk)
        except RuntimeError as exc:  # RSGIProtocolClosed: the client went away (ASGI 2.4: OSError)
            raise OSError(f"the client closed the connection: {exc}") from exc
        done = not more

    try:
        await app(asgi_scope(scope, state), receive, send)
    except Exception:
        log.exception("%s %s failed", scope.method, scope.path)
        if stream is None and not done:
            proto.response_bytes(500, [("content-type", "text/plain; charset=utf-8")], b"Internal Server Error")
        return
    if stream is None and not done:  # the app ended without a (complete) response
        proto.response_bytes(int(start["status"]) if start else 500, _str_headers(start) if start else [], b"")


def _str_headers(start: Message) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]


class RsgiApp:
    """An ASGI app as an RSGI app: each request through ``serve_asgi``, the lifespan through granian's
    ``__rsgi_init__`` (start-up, before the loop serves) and ``__rsgi_del__`` (shutdown)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lifespan = Lifespan(app)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "http":  # no websockets here
            await serve_asgi(self.app, scope, proto, self.lifespan.state)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_running():  # granian's embedded server (tests): start-up runs beside the first requests
            loop.create_task(self.lifespan.startup())
        else:
            loop.run_until_complete(self.lifespan.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_running():
            loop.create_task(self.lifespan.shutdown())
        else:
            loop.run_until_complete(self.lifespan.shutdown())


class Lifespan:
    """Runs an ASGI app's lifespan: ``startup`` before the first request, ``shutdown`` at the end.
    ``state`` is the lifespan state that every request scope gets a copy of."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._step("shutdown")
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self._queue.get, self._answers.put)
        except Exception as exc:  # an app without a lifespan: serve without one
            await self._answers.put({"type": "lifespan.unsupported", "message": str(exc)})

    async def _step(self, name: str) -> None:
        await self._queue.put({"type": f"lifespan.{name}"})
        answer = await self._answers.get()
        if answer["type"] == f"lifespan.{name}.failed":
            raise RuntimeError(f"the app's lifespan {name} failed: {answer.get('message', '')}")
