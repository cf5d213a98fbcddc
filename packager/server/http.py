"""HTTP plumbing without a transport: JSON and error bodies, statuses of errors, bounded and
shallow JSON, ETags, Range (the read API's, and the Starlette routes' through ``packager.server.asgi``)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from packager.errors import (
    ConflictError,
    InvalidNameError,
    PackagerError,
    ProfileError,
    PublishError,
    ServiceError,
    SigningError,
    UsageError,
    first_line,
)
from packager.resources import read_toml

log = logging.getLogger("packager.server")
JSON = "application/json"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@cache
def settings() -> dict[str, Any]:
    """packager/resources/server.toml."""
    return read_toml("server.toml")


def json_body(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(code: str, message: str) -> bytes:
    """The body of every error answer: ``{"error": {"code", "message"}}``."""
    return json_body({"error": {"code": code, "message": message}})


def failure(exc: Exception, method: str, path: str) -> ServiceError:
    """What the server answers for an exception out of a handler, logged when it is the server's
    fault: a PackagerError as its status (as_service_error), anything else as a 500."""
    if isinstance(exc, PackagerError):
        error = as_service_error(exc)
        if error.status >= 500:
            log.error("%s %s: %s", method, path, exc.one_line())
        return error
    log.exception("%s %s failed", method, path, exc_info=exc)
    return ServiceError(500, "internal", f"internal error: {type(exc).__name__}")


def as_service_error(exc: PackagerError) -> ServiceError:
    """A library error as the HTTP status a client can act on."""
    if isinstance(exc, ServiceError):
        return exc
    text = exc.one_line()
    table: list[tuple[type[PackagerError], int, str]] = [
        (InvalidNameError, 400, "invalid_name"), (ProfileError, 422, "invalid_profile"),
        (UsageError, 400, "bad_request"), (PublishError, 422, "unpublishable"),
        (ConflictError, 409, "conflict"), (SigningError, 500, "signing"),
    ]  # fmt: skip
    for kind, status, code in table:
        if isinstance(exc, kind):
            return ServiceError(status, code, text)
    return ServiceError(503, "registry_unavailable", text)


def disconnected() -> ServiceError:
    return ServiceError(400, "client_disconnected", "the client closed the connection before its body ended")


def too_large(limit: int) -> ServiceError:
    return ServiceError(413, "too_large", f"the body is over the {limit} byte limit of this endpoint")


def check_declared(declared: str | None, limit: int) -> None:
    """Refuse (413) a declared Content-Length over ``limit``, or one that is not a length, before
    anything is read."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large(limit)


MAX_DEPTH = 16  # a device profile is 2 deep, a telemetry batch 3: far past what any client sends


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """A 400 for JSON nested deeper than ``limit``, found before a parser recurses into it (Python's
    json and orjson both fail deep inside a deep body, as a RecursionError or a TypeError)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case, at C speed
        return
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise ServiceError(400, "invalid_json", f"the body nests arrays or objects deeper than {limit}")
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1


def parse_json(body: bytes) -> Any:
    check_depth(body)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ServiceError(400, "invalid_json", f"the body is not JSON: {first_line(exc)}") from exc


def quoted(tag: str) -> str:
    return f'"{tag}"'


def etag_matches(header: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names ``tag`` (weak or strong) or is ``*``."""
    if not header:
        return False
    for item in header.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == quoted(tag):
            return True
    return False


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One byte range of an object of ``size`` bytes; None means send it whole.

    Several ranges, or a header that is not a byte range, are ignored (RFC 9110 allows it) and
    the whole object is sent; a single range that cannot be satisfied is a 416.
    """
    if header is None or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    # Numbers of more than 18 digits are past any object's size (and past what int() reads): as
    # large numbers they mean "to the end" (a last byte, a suffix) or "past the end" (a first byte).
    if len(first) > 18:
        raise _unsatisfiable(size)
    if len(last) > 18:
        last = "" if first else str(size)
    if first == "":  # suffix: the last N bytes
        length = min(int(last), size)
        if length == 0:
            raise _unsatisfiable(size)
        return ByteRange(size - length, length)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # not a valid range-spec: ignored
    if start >= size:
        raise _unsatisfiable(size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return ByteRange(start, end - start + 1)


def _unsatisfiable(size: int) -> ServiceError:
    return ServiceError(416, "range_not_satisfiable", f"the range is outside the object's {size} bytes",
                        headers={"Content-Range": f"bytes */{size}"})  # fmt: skip
