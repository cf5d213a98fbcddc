"""What the functions of templates/service.yaml (``handlers/manifest.py``, ``handlers/fleet.py``)
share: the registry store their environment names, and API Gateway HTTP API (payload 2.0) events
as the read API's ``Call``, its ``Answer`` as the function's result. The standard library at
module level: the functions ship it as it is."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from packager.errors import ServiceError
from packager.registry.s3 import S3Store
from packager.server.api import Answer, Call
from packager.server.http import too_large


def store_from_env() -> S3Store:
    """The registry: REGISTRY_BUCKET, REGISTRY_PREFIX (may be empty) and, for tests against an
    S3-compatible server, PACKAGER_S3_ENDPOINT_URL."""
    bucket = os.environ.get("REGISTRY_BUCKET", "")
    if not bucket:
        raise RuntimeError("REGISTRY_BUCKET is not set: the function needs the registry's bucket")
    prefix = os.environ.get("REGISTRY_PREFIX", "").strip("/")
    return S3Store.from_url(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
                            endpoint_url=os.environ.get("PACKAGER_S3_ENDPOINT_URL") or None)  # fmt: skip


def call_of(event: dict[str, Any], limit: int) -> Call | Exception:
    """The Call for an HTTP API event, or why its body cannot be read (``limit``: the most body
    bytes the route takes, checked before decoding)."""
    http = event.get("requestContext", {}).get("http", {})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    call = Call(str(http.get("method", "GET")), str(event.get("rawPath") or http.get("path") or "/"),
                str(event.get("rawQueryString") or ""), headers, client=http.get("sourceIp"))  # fmt: skip
    raw = event.get("body") or ""
    if len(raw) > limit * 4 // 3 + 4:
        return too_large(limit)
    try:
        call.body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    except (binascii.Error, UnicodeEncodeError):
        return ServiceError(400, "bad_request", "the body is not valid base64, or not UTF-8 text")
    return call


def refused_call(event: dict[str, Any]) -> Call:
    """The method and path of an event whose body was refused (for the error's answer)."""
    http = event.get("requestContext", {}).get("http", {})
    return Call(str(http.get("method", "POST")), str(event.get("rawPath") or "/"))


def result_of(answer: Answer) -> dict[str, Any]:
    """The function's result for an HTTP API (bytes that are not UTF-8 go base64)."""
    body = answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)
    headers = {k: v for k, v in answer.headers if k != "content-length"}
    try:
        return {"statusCode": answer.status, "headers": headers, "body": body.decode(), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"statusCode": answer.status, "headers": headers, "body": base64.b64encode(body).decode(),
                "isBase64Encoded": True}  # fmt: skip
