"""The read API, transport-free: a ``Call`` (method, path, query, headers, body, client address)
in, an ``Answer`` (status, headers, body) out, for every read route of the registry.

    GET  /healthz                                 the kind of store, whether it is signed
    GET  /v1/models/{m}/manifest?channel=stable   the catalog; ETag, 304 on If-None-Match
    POST /v1/models/{m}/resolve?channel=stable    DeviceProfile -> Resolution
    GET  /v1/models/{m}/versions/{v}              a version document's stored bytes
    GET  /v1/models/{m}/channels/{c}              the channel pointer of record
    GET  /v1/tuf/{name}                           TUF metadata
    GET  /v1/artifacts/{sha256}                   the bytes (Range, ETag), or a redirect to them
    POST /v1/telemetry                            device events, bounded, into segments

Names, limits, the error shape ``{"error": {"code", "message"}}``, CORS (simple requests and
preflights) and the request metrics live here once. ``packager serve`` (``packager.server.front``,
over ASGI and in its HTTP protocol's callbacks) and the Lambda function (``handlers/manifest.py``)
are adapters: they turn their request into a Call and the Answer into their response.

Store reads go through ``Io``. Blocking (the Lambda function, a worker thread) reads at once; not
blocking (an event loop) raises ``Pending`` with the read it needs, the adapter runs it in a
thread and calls again with its result in hand. A route reads everything it needs before it
changes anything, so calling again repeats nothing; telemetry, which changes buckets and writes
segments, runs whole in the thread.

This module and what it imports are the standard library and packager's registry: the Lambda
function ships them as they are (handlers/Makefile), with no web framework and no python-tuf.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from packager.errors import PackagerError, ServiceError
from packager.registry.catalog import Channel, manifest_doc
from packager.registry.names import artifact_key, check_name, check_sha256, version_key
from packager.server.http import (
    JSON,
    ByteRange,
    error_body,
    etag_matches,
    failure,
    json_body,
    parse_json,
    parse_range,
    quoted,
    too_large,
)
from packager.server.resolver import NO_STORE, Resolver
from packager.server.telemetry import Guard, TelemetrySink, check_batch
from packager.server.views import RegistryView

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_TUF_NAME = re.compile(r"(root|timestamp)\.json|[1-9][0-9]{0,8}\.(root|targets|snapshot)\.json")
Headers = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Call:
    """One request as the API reads it. ``headers``: lower-case names, the first value of each;
    ``query``: the raw query string; ``started``: when it arrived (``time.perf_counter``)."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str | None = None
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class Answer:
    """Status, header pairs, and the body: bytes, or chunks read from the store as they are sent
    (then ``content-length`` is among the headers)."""

    status: int
    headers: Headers
    body: bytes | Iterator[bytes] = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Pending(Exception):  # not an error: a store read the caller runs, then calls again
    """A store read a non-blocking call needs: run ``load()`` off the event loop, put what it
    returns (or raises) in ``Io.done[key]``, and call again."""

    def __init__(self, key: Any, load: Callable[[], Any]) -> None:
        super().__init__(key)
        self.key, self.load = key, load


class Failed:
    """A load that raised: raised again where the route asked for it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Io:
    """How one call reads the store: at once (``blocking``), or through ``Pending``."""

    def __init__(self, *, blocking: bool) -> None:
        self.blocking = blocking
        self.done: dict[Any, Any] = {}

    def __call__(self, key: Any, load: Callable[[], Any]) -> Any:
        if key in self.done:
            value = self.done[key]
        elif self.blocking:
            value = self.done[key] = run_load(load)
        else:
            raise Pending(key, load)
        if isinstance(value, Failed):
            raise value.error
        return value


def run_load(load: Callable[[], Any]) -> Any:
    """``load()``, or its exception as a ``Failed`` (carried back to the route that asked)."""
    try:
        return load()
    except Exception as exc:
        return Failed(exc)


class Recorder(Protocol):
    def record(self, route: str, method: str, status: int, seconds: float) -> None: ...


class Cors:
    """Cross-origin reads for browser loaders, for every answer of the server: the grant of a
    simple request, and the answer of a preflight (GET and POST with content-type, range and
    if-none-match; writes carry a bearer token and get no grant)."""

    METHODS = ("GET", "POST")
    ALLOWED = ("accept", "accept-language", "content-language", "content-type", "if-none-match", "range")
    EXPOSED = ("etag", "content-range", "content-length", "accept-ranges")

    def __init__(self, origins: Collection[str], max_age: int = 600) -> None:
        self.origins = frozenset(origins)
        self.any = "*" in self.origins
        self.max_age = max_age
        exposed = ("access-control-expose-headers", ", ".join(self.EXPOSED))
        self._granted: Headers = (("access-control-allow-origin", "*"), exposed) if self.any else (exposed,)
        self._vary: Headers = (("vary", "Origin"),)
        self._simple: dict[str | None, Headers] = {}

    def simple(self, origin: str | None) -> Headers:
        """The headers every answer to ``origin`` carries (``Vary: Origin`` always)."""
        found = self._simple.get(origin)
        if found is None:
            if origin is None:
                found = self._vary
            elif self.any or origin not in self.origins:
                found = (*self._granted, *self._vary) if self.any else self._vary
            else:
                found = (("access-control-allow-origin", origin), *self._granted, *self._vary)
            if len(self._simple) < 64:
                self._simple[origin] = found
        return found

    def preflight(self, headers: Mapping[str, str]) -> Answer:
        """200 with the grant, or 400 naming what is refused (origin, method, headers)."""
        origin = headers.get("origin", "")
        refused = []
        if not (self.any or origin in self.origins):
            refused.append("origin")
        if headers.get("access-control-request-method") not in self.METHODS:
            refused.append("method")
        asked = headers.get("access-control-request-headers")
        if asked is not None and any(h.strip().lower() not in self.ALLOWED for h in asked.split(",")):
            refused.append("headers")
        grant: Headers = (("access-control-allow-origin", "*" if self.any else origin),
                          ("access-control-allow-methods", ", ".join(self.METHODS)),
                          ("access-control-allow-headers", ", ".join(self.ALLOWED)),
                          ("access-control-max-age", str(self.max_age)),
                          ("vary", _PREFLIGHT_VARY))  # fmt: skip
        if refused:
            message = f"cross-origin {', '.join(refused)} refused: this server grants GET and POST to its read API"
            return Answer(400, (("content-type", JSON), *grant[1:]), error_body("cors_refused", message))
        return Answer(200, grant)


_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


# (methods, path pattern, template, handler name): "" for a write, which another adapter serves
_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], str, str], ...] = tuple(
    (frozenset(methods), re.compile(pattern), template, name)
    for methods, pattern, template, name in (
        (("GET",), r"/healthz", "/healthz", "healthz"),
        (("GET",), r"/v1/models/([^/]+)/manifest", "/v1/models/{m}/manifest", "manifest"),
        (("POST",), r"/v1/models/([^/]+)/resolve", "/v1/models/{m}/resolve", "resolve"),
        (("POST",), r"/v1/models/([^/]+)/versions", "/v1/models/{m}/versions", ""),
        (("GET",), r"/v1/models/([^/]+)/versions/([^/]+)", "/v1/models/{m}/versions/{v}", "version_document"),
        (("GET",), r"/v1/models/([^/]+)/channels/([^/]+)", "/v1/models/{m}/channels/{c}", "pointer_document"),
        (("PUT",), r"/v1/models/([^/]+)/channels/([^/]+)", "/v1/models/{m}/channels/{c}", ""),
        (("POST",), r"/v1/models/([^/]+)/channels/([^/]+)/rollback", "/v1/models/{m}/channels/{c}/rollback", ""),
        (("GET",), r"/v1/tuf/([^/]+)", "/v1/tuf/{name}", "tuf_metadata"),
        (("GET",), r"/v1/artifacts/([^/]+)", "/v1/artifacts/{sha256}", "artifact"),
        (("POST",), r"/v1/telemetry", "/v1/telemetry", "telemetry"),
    )
)
WRITE = "write"


def match(method: str, path: str) -> tuple[str, str, tuple[str, ...]] | str | None:
    """(template, handler name, path parameters) of a read; ``WRITE`` for a write route's method
    and path; the allowed methods ("GET, POST") of a known path asked with another; None for an
    unknown path."""
    allowed: list[str] = []
    wanted = "GET" if method == "HEAD" else method
    for methods, pattern, template, name in _ROUTES:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        if wanted in methods:
            return (template, name, found.groups()) if name else WRITE
        allowed.extend(methods)
    return ", ".join(sorted(set(allowed))) if allowed else None


class ReadApi:
    """Every read route over one ``RegistryView``.

    ``artifact_url``: the URL of an artifact in resolutions and catalogs. ``locate``: where a
    request for an artifact is sent instead of its bytes (a CDN or a presigned URL; None streams
    them from the store). ``guard``: telemetry's bounds (None: none but the batch's own)."""

    def __init__(self, view: RegistryView, *, limits: Mapping[str, int], artifact_url: Callable[[str], str],
                 sink: TelemetrySink, guard: Guard | None, cors: Cors, metrics: Recorder | None = None,
                 locate: Callable[[str], tuple[str, str]] | None = None, classes: int = 4096,
                 answers: int = 4096) -> None:  # fmt: skip
        self.view = view
        self.limits = limits
        self.artifact_url = artifact_url
        self.sink = sink
        self.guard = guard
        self.cors = cors
        self.metrics = metrics
        self.locate = locate
        self.resolver = Resolver(artifact_url, limit=int(limits["json_body"]), classes=classes, answers=answers)
        self._resolved: dict[str | None, Headers] = {}
        self._handlers: dict[str, Callable[[Call, tuple[str, ...], Io], Answer]] = {
            name: getattr(self, "_" + name) for *_, name in _ROUTES if name
        }

    def body_limit(self, method: str, path: str) -> int:
        """The most body bytes a request to ``path`` may send (what an adapter reads, at most)."""
        return int(self.limits["telemetry_body"] if path == "/v1/telemetry" else self.limits["json_body"])

    # --- entry points ---------------------------------------------------------------------------

    def answer(self, call: Call, io: Io | None = None) -> Answer:
        """The answer to ``call``; with a non-blocking ``io``, ``Pending`` when a store read is due."""
        io = io or Io(blocking=True)
        if is_preflight(call.method, call.headers):
            return self.cors.preflight(call.headers)
        route = match(call.method, call.path)
        template = "unmatched"
        try:
            if route is None:
                raise ServiceError(404, "not_found", f"no route {call.method} {call.path[:200]}")
            if route == WRITE:  # an adapter with writes serves them before asking the read API
                raise ServiceError(404, "not_found", f"{call.method} {call.path[:200]} is a write, and this server "
                                   "serves reads only: write to the registry with packager publish, rollout "
                                   "or rollback --registry")  # fmt: skip
            if isinstance(route, str):
                raise ServiceError(405, "method_not_allowed", f"{call.method} is not allowed here (allowed: {route})",
                                   headers={"Allow": route})  # fmt: skip
            template, name, params = route
            if len(call.body) > self.body_limit(call.method, call.path):
                raise too_large(self.body_limit(call.method, call.path))
            answer = self._handlers[name](call, params, io)
        except Pending:
            raise
        except Exception as exc:
            answer = error_answer(exc, call.method, call.path)
        return self._finish(call, template, answer)

    def refuse(self, call: Call, error: Exception) -> Answer:
        """The answer to a call its adapter refused before the API saw it (a body over the limit,
        a client gone), with the headers and metrics of every other answer."""
        found = match(call.method, call.path)
        return self._finish(call, found[0] if isinstance(found, tuple) else "unmatched",
                            error_answer(error, call.method, call.path))  # fmt: skip

    def _finish(self, call: Call, template: str, answer: Answer) -> Answer:
        origin = call.headers.get("origin")
        if call.method == "HEAD" and isinstance(answer.body, bytes):
            length = answer.header("content-length") or str(len(answer.body))
            answer = Answer(answer.status, (*_without(answer.headers, "content-length"),
                                            ("content-length", length)))  # fmt: skip
        answer.headers = (*answer.headers, *self.cors.simple(origin))
        if self.metrics is not None:
            self.metrics.record(template, call.method, answer.status, time.perf_counter() - call.started)
        return answer

    def resolve_now(self, model: str, query: str, origin: str | None, body: bytes,
                    started: float) -> tuple[int, Headers, bytes] | None:  # fmt: skip
        """A resolve answered without a store read (the fast path's, ``packager.server.front``),
        as ``answer`` answers it: None when its channel's pointer is due a read."""
        try:
            model, channel = self.resolver.route(model, query)
            device = self.resolver.profile(body)
            hit, found = self.view.fresh(model, channel)
            if not hit:
                return None
            content = self.resolver.render(published(found, model, channel), *device)
        except Exception as exc:
            failed = error_answer(exc, "POST", f"/v1/models/{model}/resolve")
            assert isinstance(failed.body, bytes)  # error bodies are JSON bytes
            status, headers, content = failed.status, (*failed.headers, *self.cors.simple(origin)), failed.body
        else:
            status, headers = 200, self._resolved.get(origin) or self._resolved_head(origin)
        if self.metrics is not None:
            self.metrics.record(_RESOLVE, "POST", status, time.perf_counter() - started)
        return status, headers, content

    def _resolved_head(self, origin: str | None) -> Headers:
        """The headers of a resolution for ``origin``, kept for a bounded few origins."""
        head = (*_RESOLVED, *self.cors.simple(origin))
        if len(self._resolved) < 64:
            self._resolved[origin] = head
        return head

    # --- routes ---------------------------------------------------------------------------------

    def _healthz(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        signed = io("signed", self.view.signed)
        # the kind of store, not its URL: a folder's URL is a path on the server's disk
        store = "s3" if self.view.store.url.startswith("s3://") else "folder"
        return json_answer({"status": "ok", "store": store, "signed": signed}, cache=("cache-control", "no-store"))

    def _manifest(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        model, channel = _name("model", params[0]), query_channel(call.query)
        found = self._channel(model, channel, io)

        def make() -> tuple[bytes, str]:
            body = json_body(manifest_doc(found, self.artifact_url))
            return body, hashlib.sha256(body).hexdigest()

        body, tag = self.view.derived(("manifest", found.key, found.signed), make)
        return _tagged(call, body, tag, REVALIDATE)

    def _resolve(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        model, channel = self.resolver.route(params[0], call.query)
        device = self.resolver.profile(call.body)  # before the store read: a bad body costs none
        return Answer(200, _RESOLVED, self.resolver.render(self._channel(model, channel, io), *device))

    def _version_document(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        """The version document's exact stored bytes (what the TUF targets metadata signs)."""
        model, version = _name("model", params[0]), _name("version", params[1])
        key = version_key(model, version)
        data = io(("document", key), lambda: self.view.document(key))
        if data is None:
            raise not_found(f"model {model} has no version {version}")
        return _tagged(call, data, hashlib.sha256(data).hexdigest(), IMMUTABLE)

    def _pointer_document(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        """The channel pointer of record, as the bytes its signed copy holds."""
        found = self._channel(_name("model", params[0]), _name("channel", params[1]), io)
        data = found.key.encode()
        return _tagged(call, data, hashlib.sha256(data).hexdigest(), REVALIDATE)

    def _tuf_metadata(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        name = params[0]
        if not _TUF_NAME.fullmatch(name):
            raise not_found(f"no TUF metadata named {name[:80]!r}",
                            "names are root.json, timestamp.json and <n>.root|targets|snapshot.json")  # fmt: skip
        mutable = name in ("root.json", "timestamp.json")  # replaced by commits and root rotations
        data = io(("tuf", name), lambda: self.view.tuf(name, mutable))
        if data is None:
            raise not_found(f"this registry has no tuf/{name}", "an unsigned registry has no TUF metadata")
        return _tagged(call, data, hashlib.sha256(data).hexdigest(), REVALIDATE if mutable else IMMUTABLE)

    def _artifact(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        sha = _checked(check_sha256, params[0])
        size = io(("size", sha), lambda: self.view.artifact_size(sha))
        if size is None:
            raise not_found(f"no artifact {sha}")
        if self.locate is not None:
            location, cache = self.locate(sha)
            return Answer(302, (("location", location), ("cache-control", cache), ("etag", quoted(sha))))
        headers: tuple[tuple[str, str], ...] = (("etag", quoted(sha)), ("cache-control", IMMUTABLE),
                                                ("accept-ranges", "bytes"))  # fmt: skip
        if etag_matches(call.headers.get("if-none-match"), sha):
            return Answer(304, headers)
        wanted = parse_range(call.headers.get("range"), size)
        part = wanted or ByteRange(0, size)
        headers = (*headers, ("content-type", "application/octet-stream"), ("content-length", str(part.length)))
        status = 200
        if wanted is not None:
            status = 206
            headers = (*headers, ("content-range", f"bytes {part.start}-{part.start + part.length - 1}/{size}"))
        if call.method == "HEAD":
            return Answer(status, headers)
        return Answer(status, headers, self._chunks(artifact_key(sha), part))

    def _chunks(self, key: str, part: ByteRange) -> Iterator[bytes]:
        """The bytes of ``part``, read from the store a chunk at a time (never the whole file)."""
        offset, left, chunk = part.start, part.length, int(self.limits["artifact_chunk"])
        while left > 0:
            data = self.view.store.get_range(key, offset, min(chunk, left))
            if not data:
                raise ServiceError(500, "artifact_truncated", f"{key} ended early at byte {offset}")
            offset, left = offset + len(data), left - len(data)
            yield data

    def _telemetry(self, call: Call, params: tuple[str, ...], io: Io) -> Answer:
        """Changes buckets and writes: run whole where the store may be read."""
        if not io.blocking:
            return io(("telemetry",), lambda: self._telemetry(call, params, Io(blocking=True)))  # type: ignore[no-any-return]
        if self.guard is not None:
            self.guard.admit_address(call.client)
        events = check_batch(parse_json(call.body), int(self.limits["telemetry_events"]))
        if self.guard is not None:
            self.guard.admit(events, self.sink.clock())
        self.sink.write(events)
        return json_answer({"accepted": len(events)}, 202)

    # --- shared ---------------------------------------------------------------------------------

    def _channel(self, model: str, channel: str, io: Io) -> Channel:
        hit, found = self.view.fresh(model, channel)
        if not hit:
            found = io(("channel", model, channel), lambda: self.view.channel(model, channel))
        return published(found, model, channel)


_RESOLVED: Headers = (("cache-control", NO_STORE), ("content-type", JSON))
_RESOLVE = "/v1/models/{m}/resolve"


def published(found: Channel | None, model: str, channel: str) -> Channel:
    """``found``, or the 404 of a channel nothing was published to."""
    if found is None:
        raise not_found(f"model {model} has no channel {channel}", "publish a version first")
    return found


def not_found(what: str, hint: str = "") -> ServiceError:
    return ServiceError(404, "not_found", f"{what}{'; ' + hint if hint else ''}")


def query_channel(query: str) -> str:
    """The ``channel`` query parameter (the last one given; "stable" without), checked."""
    channel = "stable"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "channel":
            channel = value
    return _name("channel", channel)


def _name(kind: str, value: str) -> str:
    return _checked(lambda v: check_name(kind, v), value)


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def json_answer(doc: Any, status: int = 200, cache: tuple[str, str] | None = None) -> Answer:
    headers: Headers = (("content-type", JSON),) if cache is None else (cache, ("content-type", JSON))
    return Answer(status, headers, json_body(doc))


def _tagged(call: Call, data: bytes, tag: str, cache_control: str) -> Answer:
    """Stored JSON bytes as they are, with an ETag; 304 when the client has them."""
    headers: Headers = (("etag", quoted(tag)), ("cache-control", cache_control))
    if etag_matches(call.headers.get("if-none-match"), tag):
        return Answer(304, headers)
    return Answer(200, (*headers, ("content-type", JSON)), data)


def error_answer(exc: Exception, method: str, path: str) -> Answer:
    """The error answer of ``exc`` (``failure``: logged when it is the server's fault)."""
    error = failure(exc, method, path)
    headers = tuple((k.lower(), v) for k, v in error.headers.items())
    return Answer(error.status, (*headers, ("content-type", JSON)), error_body(error.code, error.message))


def _without(headers: Headers, name: str) -> Headers:
    return tuple((k, v) for k, v in headers if k != name)
