"""The manifest server's front door, what ``create_app`` returns. POST /v1/models/{m}/resolve, the
route every device calls at every start, is answered here without Starlette's request object,
routing and middleware stack; every other request, and the lifespan, go to the Starlette app.

It is an ASGI app (any ASGI server, Starlette's TestClient). ``answer_now`` answers a resolve
whose body is in hand without a coroutine: ``packager serve``'s HTTP protocol
(``packager.server.protocol``) calls it from the parser's callbacks, so a resolve costs no task.
The answer is the resolver's (``route``, then ``answer_body`` or ``answer_ready``), as on the
Starlette route; this module adds what Starlette adds there: the body bound, the metrics (route
template, method, status, time to the first byte), the CORS headers as CORSMiddleware writes
them for a simple request, and the error bodies ``{"error": {"code", "message"}}`` of the app's
exception handlers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from packager.server.http import JSON, check_declared, error_body, failure, too_large
from packager.server.metrics import Metrics
from packager.server.resolver import NO_STORE, Resolver

ROUTE = "/v1/models/{m}/resolve"
_PATH = re.compile(r"/v1/models/([^/]+)/resolve")
_VARY = [("vary", "Origin")]
_OK = [("cache-control", NO_STORE)]
Headers = list[tuple[str, str]]


class Front:
    """The ASGI app: resolve here, the rest (and the lifespan) in ``app``."""

    def __init__(self, app: Starlette, resolver: Resolver, metrics: Metrics, *, cors_origins: Collection[str],
                 cors_exposed: Collection[str]) -> None:  # fmt: skip
        self.app = app
        self.resolver = resolver
        self.metrics = metrics
        self._origins = frozenset(cors_origins)
        self._allow_all = "*" in self._origins
        self._simple: Headers = [("access-control-allow-origin", "*")] if self._allow_all else []
        if cors_exposed:
            self._simple.append(("access-control-expose-headers", ", ".join(cors_exposed)))
        self._heads: dict[str | None, bytes] = {}

    @property
    def state(self) -> Any:
        return self.app.state

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                await self._asgi_resolve(match.group(1), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _asgi_resolve(self, model: str, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        declared = origin = None
        for name, value in scope["headers"]:
            if name == b"content-length" and declared is None:
                declared = value.decode("latin-1")
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
        try:
            model, channel = self.resolver.route(model, scope["query_string"].decode("latin-1"))
            limit, chunks, size, more = self._limit(declared), [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # nobody to answer
                chunks.append(message.get("body", b""))
                size, more = size + len(chunks[-1]), message.get("more_body", False)
                if size > limit:
                    raise too_large(limit)
            status, first, body = 200, _OK, await self.resolver.answer_body(model, channel, b"".join(chunks))
        except Exception as exc:
            status, first, body = _failure(exc, scope["path"])
        headers = [*first, ("content-length", str(len(body))), ("content-type", JSON), *self._cors(origin)]
        self.metrics.record(ROUTE, "POST", status, time.perf_counter() - start)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    # --- without a coroutine (packager serve's protocol, packager.server.protocol) ----------------

    def resolves(self, method: str, path: str) -> str | None:
        """The model segment of a resolve request's path, or None for every other request."""
        if method != "POST":
            return None
        match = _PATH.fullmatch(path)
        return None if match is None else match.group(1)

    def answer_now(self, model: str, path: str, query: str, origin: str | None,
                   body: bytes) -> tuple[int, bytes, bytes] | None:  # fmt: skip
        """The answer of a resolve whose body was read in full, within ``self.resolver.limit``:
        (status, its header lines as bytes, body); None when the channel's pointer is due a store
        read, which only the ASGI side waits for. Recorded in the metrics like the ASGI side's."""
        start = time.perf_counter()
        try:
            model, channel = self.resolver.route(model, query)
            answer = self.resolver.answer_ready(model, channel, body)
            if answer is None:
                return None
            status, head = 200, self._ok_head(origin)
        except Exception as exc:
            status, first, answer = _failure(exc, path)
            head = _lines([*first, ("content-type", JSON), *self._cors(origin)])
        self.metrics.record(ROUTE, "POST", status, time.perf_counter() - start)
        return status, head + b"content-length: %d\r\n" % len(answer), answer

    def _ok_head(self, origin: str | None) -> bytes:
        """The header lines of a 200 but its length, kept per origin (a bounded few)."""
        head = self._heads.get(origin)
        if head is None:
            head = _lines([*_OK, ("content-type", JSON), *self._cors(origin)])
            if len(self._heads) < 64:
                self._heads[origin] = head
        return head

    # --- shared -----------------------------------------------------------------------------------

    def _limit(self, declared: str | None) -> int:
        """The body limit, after refusing a declared length over it (before reading, like read_body)."""
        check_declared(declared, self.resolver.limit)
        return self.resolver.limit

    def _cors(self, origin: str | None) -> Headers:
        """CORSMiddleware's headers for a simple request: the grant, and ``Vary: Origin`` always."""
        if origin is None:
            return _VARY
        if self._allow_all or origin not in self._origins:
            return [*self._simple, *_VARY]
        return [*self._simple, ("access-control-allow-origin", origin), *_VARY]


def _failure(exc: Exception, path: str) -> tuple[int, Headers, bytes]:
    """(status, the headers before content-type, body) of a failed resolve, as the app's exception
    handlers answer it."""
    error = failure(exc, "POST", path)
    return error.status, [(k.lower(), v) for k, v in error.headers.items()], error_body(error.code, error.message)


def _lines(headers: Headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
