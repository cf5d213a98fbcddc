"""The manifest server's front door, what ``create_app`` returns: the ASGI adapter of the read API
(``packager.server.api``). Reads and every CORS preflight are answered by the API; every other
request (writes, the browser pages, /metrics, /openapi.json) and the lifespan go to the Starlette
app, whose answers get the API's CORS headers here.

``answer_now`` is the API's resolve without a coroutine: ``packager serve``'s HTTP protocol
(``packager.server.protocol``) calls it from the parser's callbacks, so a resolve costs no task.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from packager.server.api import WRITE, Answer, Call, Io, Pending, ReadApi, is_preflight, match, run_load
from packager.server.http import check_declared, disconnected, too_large

_READS = 16  # store reads one call may need, at most (a manifest needs two)


class Front:
    """The ASGI app: the read API here, the rest (and the lifespan) in ``app``."""

    def __init__(self, app: Starlette, api: ReadApi) -> None:
        self.app = app
        self.api = api
        self._heads: dict[tuple[Any, ...], bytes] = {}

    @property
    def state(self) -> Any:
        return self.app.state

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        method, path = scope["method"], scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        route = match(method, path)
        if (route is None or route == WRITE) and not is_preflight(method, headers):
            await self.app(scope, receive, self._granting(headers.get("origin"), send))
            return
        client = scope.get("client")
        call = Call(method, path, scope["query_string"].decode("latin-1"), headers,
                    client=client[0] if client else None)  # fmt: skip
        if method == "POST":
            try:
                body = await self._body(call, receive)
            except Exception as exc:
                answer = self.api.refuse(call, exc)
            else:
                if body is None:
                    return  # the client left: nobody to answer
                call.body = body
                answer = await self.serve(call)
        else:
            answer = await self.serve(call)
        await _send(answer, send)

    async def serve(self, call: Call) -> Answer:
        """The API's answer, its store reads run in worker threads."""
        io = Io(blocking=False)
        for _ in range(_READS):
            try:
                return self.api.answer(call, io)
            except Pending as need:
                io.done[need.key] = await run_in_threadpool(run_load, need.load)
        return self.api.refuse(call, RuntimeError(f"{call.path} needed more than {_READS} store reads"))

    async def _body(self, call: Call, receive: Receive) -> bytes | None:
        """The body within the route's limit (a 413 before reading when a longer one is declared);
        None when the client left first."""
        limit = self.api.body_limit(call.method, call.path)
        check_declared(call.headers.get("content-length"), limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                if size:  # gone mid-body: counted as the refusal it is, answered to nobody
                    self.api.refuse(call, disconnected())
                return None
            chunks.append(message.get("body", b""))
            size, more = size + len(chunks[-1]), message.get("more_body", False)
            if size > limit:
                raise too_large(limit)
        return b"".join(chunks)

    def _granting(self, origin: str | None, send: Send) -> Send:
        """``send`` with the API's CORS headers added to the answer's head (Starlette's routes)."""
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.api.cors.simple(origin)]

        async def granted(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return granted

    # --- without a coroutine (packager serve's protocol, packager.server.protocol) ----------------

    @property
    def limit(self) -> int:
        """The most body bytes of a resolve."""
        return self.api.resolver.limit

    def resolves(self, method: str, path: str) -> str | None:
        """The model segment of a resolve request's path, or None for every other request."""
        route = match(method, path) if method == "POST" else None
        return route[2][0] if isinstance(route, tuple) and route[1] == "resolve" else None

    def answer_now(self, model: str, path: str, query: str, origin: str | None,
                   body: bytes) -> tuple[int, bytes, bytes] | None:  # fmt: skip
        """The answer of a resolve whose body was read in full, within ``limit``: (status, its
        header lines as bytes, body); None when the channel's pointer is due a store read, which
        only the ASGI side waits for."""
        done = self.api.resolve_now(model, query, origin, body, time.perf_counter())
        if done is None:
            return None
        status, headers, content = done
        head = self._heads.get(headers)
        if head is None:
            head = _lines(headers)
            if len(self._heads) < 64:
                self._heads[headers] = head
        return status, head + b"content-length: %d\r\n" % len(content), content


async def _send(answer: Answer, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    if isinstance(answer.body, bytes):
        if answer.header("content-length") is None:
            headers.append((b"content-length", b"%d" % len(answer.body)))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        return
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    async for chunk in iterate_in_threadpool(answer.body):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _lines(headers: tuple[tuple[str, str], ...]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
