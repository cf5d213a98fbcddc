"""Starlette's side of the server's plumbing: JSON and error responses, and request bodies read
within a bound, for the routes that are not the read API (writes, the browser pages, /metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from packager.server.http import JSON, check_declared, error_body, json_body, parse_json, too_large


def json_response(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json_body(doc), status_code=status, media_type=JSON, headers=dict(headers or {}))


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, media_type=JSON, headers=dict(headers or {}))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading, when declared)."""
    check_declared(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit))
