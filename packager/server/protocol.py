"""``packager serve``'s HTTP/1.1 protocol: uvicorn's httptools protocol, with resolve answered in
the parser's callbacks.

Every other request is uvicorn's, unchanged: an ASGI cycle run as a task (pipelining, keep-alive,
flow control, graceful shutdown, the lifespan). Under uvicorn a resolve would cost a request
cycle, a task, an event and two awaited sends besides the answer itself, several times the
answer's own cost; here it costs the answer (``Front.answer_now``) and one write.

A resolve takes this path when nothing is in flight before it on its connection and it declares a
body length within the resolve limit; a chunked or oversized body takes the ASGI path, which
refuses it as it reads. Its body is gathered as it comes and the answer written once it is
complete. If the channel's pointer is due a store read, the request is handed to uvicorn then, as
if it had just been parsed: the front door's ASGI side waits for the read.

Slow clients are bounded here too (``Watch``): a request's headers must arrive within
``header_seconds``, a body may not pause for longer than ``body_idle_seconds``, and at most
``incomplete_most`` connections may wait for headers at once (server.toml's ``[connections]``).
uvicorn itself has no header or body timeout: a connection that sends half a request is held for
ever.

The keep-alive timer is armed once per idle spell instead of once per request (uvicorn cancels
and re-arms it for each), which saves a tenth of a resolve's cost.

The hooks are the parser's callbacks of uvicorn's ``HttpToolsProtocol``, its keep-alive methods
and the state it keeps (``url``, ``headers``, ``cycle``, ``pipeline``): uvicorn is pinned in
constraints.txt, and tests/server/test_protocol.py covers each path through them.
"""

from __future__ import annotations

import weakref
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from packager.resources import read_toml
from packager.server.front import Front
from packager.server.http import error_body

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEADERS, _BODY = 1, 2  # what a connection waits for from its client (0: nothing, its answer is due)


class Watch:
    """The slow-client bounds of one server (every connection of one uvicorn ``ServerState``):
    the connections waiting for headers, oldest first, and a sweep once a second that times out
    those past their deadline."""

    def __init__(self, loop: Any, header_seconds: float, body_seconds: float, most: int) -> None:
        self.loop = loop
        self.header_seconds, self.body_seconds, self.most = header_seconds, body_seconds, most
        self.waiting: dict[ResolveProtocol, float] = {}  # waiting for headers -> since when
        self.reading: set[ResolveProtocol] = set()  # reading a body
        self.sweep_handle: Any = None

    def arm(self) -> None:
        if self.sweep_handle is None:
            self.sweep_handle = self.loop.call_later(1.0, self.sweep)

    def wait_headers(self, conn: ResolveProtocol) -> None:
        if conn not in self.waiting:
            self.waiting[conn] = self.loop.time()
            while len(self.waiting) > self.most:  # the flood's oldest connection goes
                next(iter(self.waiting)).time_out("the server holds too many unfinished requests")
            self.arm()

    def sweep(self) -> None:
        self.sweep_handle = None
        now = self.loop.time()
        for conn, since in list(self.waiting.items()):
            if now - since <= self.header_seconds:
                break  # oldest first: the rest are younger
            conn.time_out(f"the request's headers did not arrive within {self.header_seconds:g} s")
        for conn in list(self.reading):
            if not conn.flow.read_paused and now - conn.progress > self.body_seconds:
                conn.time_out(f"the request's body paused for over {self.body_seconds:g} s")
        if self.waiting or self.reading:
            self.arm()


_WATCHES: weakref.WeakKeyDictionary[Any, Watch] = weakref.WeakKeyDictionary()


def _watch(conn: ResolveProtocol) -> Watch:
    watch = _WATCHES.get(conn.server_state)
    if watch is None:
        # uvicorn's Config as `serving.config` made it, else a Config of someone else's: the defaults
        conf, bounds = conn.config, read_toml("server.toml")["connections"]
        header, body, most = (getattr(conf, n, bounds[n]) for n in ("header_seconds", "body_idle_seconds",
                                                                     "incomplete_most"))  # fmt: skip
        watch = Watch(conn.loop, float(header), float(body), int(most))
        _WATCHES[conn.server_state] = watch
    return watch


class ResolveProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol``; a resolve is answered by the front door without a task when
    the app served is a ``Front`` (any other app is served exactly as uvicorn serves it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.config.app
        self.front: Front | None = app if isinstance(app, Front) else None
        self.limit = min(self.front.limit, HIGH_WATER_LIMIT) if self.front else 0
        self.held: list[bytes] | None = None  # the body so far of the resolve being read, if one is
        self.route: tuple[str, str, str] = ("", "", "")  # its model segment, path and query
        self.origin: str | None = None
        self.keep_alive = True
        self.closing = False
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._default_bytes = b""
        self.idle_since: float | None = None  # when the connection's last answer went, if it is idle
        self.watch: Watch | None = None
        self.progress = 0.0  # when the body being read last moved
        self.refused: str | None = None  # a malformed request's refusal, owed once earlier answers are out

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.watch = _watch(self)
        self.watch.wait_headers(self)

    def time_out(self, why: str) -> None:
        """408 with the JSON error shape (unless an answer has begun), then close."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self._answer_and_close(408, "request_timeout", why)
        else:
            self.transport.close()

    def _stop_waiting(self) -> None:
        if self.watch is not None:
            self.watch.waiting.pop(self, None)
            self.watch.reading.discard(self)

    # --- the parser's callbacks -----------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse (a malformed request line, a bad Content-Length) gets
        the JSON error shape every other refusal has, not uvicorn's text/plain line, and only
        after the answers owed to the requests pipelined before it (RFC 9112 9.3.2: in order);
        nothing more is read meanwhile, and the connection closes after it."""
        if self.refused is not None:
            return
        self.refused = f"the request is not valid HTTP/1.1: {getattr(self, 'unframed', None) or msg}"
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            self.flow.pause_reading()
            return
        self._answer_and_close(400, "bad_request", self.refused)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        body = error_body(code, message)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def on_message_begin(self) -> None:
        """uvicorn's, but its scope is made only for a request uvicorn serves (``_scope``)."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        if self.watch is not None:
            self.watch.wait_headers(self)

    def on_headers_complete(self) -> None:
        framing = _unframed(self.headers)
        if framing is not None:  # raised into httptools: uvicorn answers it with send_400_response
            self._stop_waiting()
            self.unframed = framing
            raise ValueError(framing)
        watch = self.watch
        if watch is not None:
            watch.waiting.pop(self, None)
            watch.reading.add(self)
            self.progress = self.loop.time()
            watch.arm()
        self._headers_complete()

    def _headers_complete(self) -> None:
        if self.front is None or not self._holds():
            self._scope()
            super().on_headers_complete()
            return
        self.held = []
        self.keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() != "1.0"
        if self.expect_100_continue:  # the client waits for this before it sends the body
            self.transport.write(_CONTINUE)
            self.expect_100_continue = False

    def on_body(self, body: bytes) -> None:
        self.progress = self.loop.time()
        if self.held is None:
            super().on_body(body)
        else:
            self.held.append(body)

    def on_message_complete(self) -> None:
        if self.watch is not None:
            self.watch.reading.discard(self)
        held = self.held
        if held is None:
            super().on_message_complete()
            return
        self.held = None
        body = held[0] if len(held) == 1 else b"".join(held)
        model, path, query = self.route
        answer = self.front.answer_now(model, path, query, self.origin, body)  # type: ignore[union-attr]
        if answer is None:  # the pointer is due a store read: on as uvicorn's request, body and all
            self._scope()
            super().on_headers_complete()
            if self.closing:  # shut down while it was read: close after this answer, as uvicorn would
                self.cycle.keep_alive = False
            super().on_body(body)
            super().on_message_complete()
            return
        status, head, content = answer
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:  # uvicorn renews them (the date) as its clock ticks
            self._defaults = defaults
            self._default_bytes = b"".join(b"%s: %s\r\n" % pair for pair in defaults)
        keep_alive = self.keep_alive and not self.closing
        close = b"" if keep_alive else b"connection: close\r\n"
        self.transport.write(b"".join((STATUS_LINE[status], self._default_bytes, head, close, b"\r\n", content)))
        if self.access_log:
            self.access_logger.info('%s:%d - "POST %s HTTP/%s" %d', *(self.client or ("-", 0)),
                                    self.url.decode("latin-1"), self.parser.get_http_version(), status)  # fmt: skip
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # the keep-alive timer, as after uvicorn's answers

    # --- keep-alive: one timer per idle spell, not one per request -------------------------------

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn cancels its keep-alive timer on every read and arms a new one after every answer;
        here a read only marks the connection busy, and the timer, when it fires, looks."""
        self.idle_since = None

    def on_response_complete(self) -> None:
        if self.refused is not None and not self.pipeline and not self.transport.is_closing():
            self.server_state.total_requests += 1  # the earlier answers are out: the refusal, then close
            self._answer_and_close(400, "bad_request", self.refused)
            return
        if self.pipeline or self.transport.is_closing():  # uvicorn's: the next request, or nothing
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        self.idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self.idle_since is None:  # busy: the next answer arms the timer again
            return
        left = self.idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
        else:
            super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def shutdown(self) -> None:
        if self.held is not None:  # a resolve being read: answer it, then close
            self.closing = True
        else:
            super().shutdown()

    # --- helpers ------------------------------------------------------------------------------------

    def _scope(self) -> None:
        """uvicorn's scope of the request whose headers were just parsed (its on_message_begin)."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers

    def _holds(self) -> bool:
        """Whether the request whose headers were just parsed is a resolve answered here: nothing
        in flight before it, a declared length within the limit, no upgrade."""
        if self.parser.get_method() != b"POST" or (self.cycle is not None and not self.cycle.response_complete):
            return False
        route = _ROUTES.get(self.url)
        if route is None:
            route = _route(self.url, self.front)  # type: ignore[arg-type]
        if not route or self.parser.should_upgrade():
            return False
        declared, origin = None, None
        for name, value in self.headers:
            if name == b"content-length":
                declared = value
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
        if declared is None or not declared.isdigit() or int(declared) > self.limit:
            return False
        self.route, self.origin = route, origin
        return True


def _unframed(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request whose Transfer-Encoding does not end in chunked is refused (RFC 9112 6.3: its
    body's length cannot be known, so it would be read until the client closes); None otherwise."""
    codings = [c.strip().lower() for name, value in headers if name == b"transfer-encoding" for c in value.split(b",")]
    if not codings or codings[-1] == b"chunked":
        return None
    shown = codings[-1].decode("latin-1")[:40]
    return f"Transfer-Encoding ends in {shown!r}, not chunked: the body's length cannot be known"


_ROUTES: dict[bytes, tuple[str, str, str] | tuple[()]] = {}  # request target -> its route, or () if not resolve


def _route(target: bytes, front: Front) -> tuple[str, str, str] | tuple[()]:
    """(model segment, path, query) of a resolve's request target, () for any other; kept for a
    bounded few targets. Percent-escapes and fragments are left to uvicorn's parsing."""
    path, _, query = target.decode("latin-1").partition("?")
    model = None if "%" in path or b"#" in target else front.resolves("POST", path)
    route: tuple[str, str, str] | tuple[()] = () if model is None else (model, path, query)
    if len(_ROUTES) < 1024:
        _ROUTES[target] = route
    return route
