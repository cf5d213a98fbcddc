"""The manifest API on AWS Lambda: packager's read API (``packager.server.api``) over an S3
registry, behind an HTTP API (API Gateway payload 2.0).

Runs in the function of templates/service.yaml. `sam build` runs handlers/Makefile, which puts
beside this file a ``packager`` package of packager's own modules, copied as they are: the read
API, the registry view and telemetry of ``packager.server``, and the pure registry modules it
reads with (names, documents, device profiles, resolve, the S3 store); nothing from the
converters and no web framework. This file only turns an event into the API's ``Call`` and its
``Answer`` into the function's result, so the routes, statuses, error bodies and CORS headers
are the server's own (see ``packager.server.api`` for the routes).

Artifact bytes never pass through Lambda: a request for one is redirected, to
``$ARTIFACTS_BASE_URL/artifacts/sha256/<hex>`` (the CloudFront distribution over the bucket's
``artifacts/``), or without it to a presigned S3 URL; resolutions and catalogs name the CloudFront
URL, or ``/v1/artifacts/<hex>``. Publish, rollout and rollback are not served here: `packager
publish|rollout|rollback --registry s3://bucket/prefix` writes the bucket directly.

Environment: REGISTRY_BUCKET, REGISTRY_PREFIX (may be empty), ARTIFACTS_BASE_URL (may be empty),
POINTER_TTL_SECONDS (how long a warm container trusts a channel pointer; server.toml's default),
CORS_ORIGINS (comma-separated; "*" by default) and PACKAGER_S3_ENDPOINT_URL (an S3-compatible
server instead of AWS, for tests).
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from aws_lambda_powertools import Logger

from packager.errors import ServiceError
from packager.registry.names import artifact_key
from packager.registry.s3 import S3Store
from packager.resources import read_toml
from packager.server.api import IMMUTABLE, Answer, Call, Cors, ReadApi
from packager.server.http import too_large
from packager.server.telemetry import Guard, TelemetrySink
from packager.server.views import RegistryView

PRESIGN_SECONDS = 3600
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-manifest"))


def _open_api() -> ReadApi:
    bucket = os.environ.get("REGISTRY_BUCKET", "")
    if not bucket:
        raise RuntimeError("REGISTRY_BUCKET is not set: the function needs the registry's bucket")
    prefix = os.environ.get("REGISTRY_PREFIX", "").strip("/")
    store = S3Store.from_url(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
                             endpoint_url=os.environ.get("PACKAGER_S3_ENDPOINT_URL") or None)  # fmt: skip
    conf = read_toml("server.toml")
    cache, tele = conf["cache"], conf["telemetry"]
    ttl = float(os.environ.get("POINTER_TTL_SECONDS") or cache["pointer_seconds"])
    view = RegistryView(store, pointer_seconds=ttl, versions=int(cache["versions"]), derived=int(cache["manifests"]),
                        channels=int(cache["channels"]), artifacts=int(cache["artifacts"]))  # fmt: skip
    base = os.environ.get("ARTIFACTS_BASE_URL", "").rstrip("/")

    def artifact_url(sha256: str) -> str:
        return f"{base}/{artifact_key(sha256)}" if base else f"/v1/artifacts/{sha256}"

    def locate(sha256: str) -> tuple[str, str]:
        if base:
            return artifact_url(sha256), IMMUTABLE
        # no CloudFront in front of the bucket: a short-lived presigned S3 URL
        url = store.client.generate_presigned_url("get_object", ExpiresIn=PRESIGN_SECONDS,
                                                  Params={"Bucket": store.bucket,
                                                          "Key": store.prefix + artifact_key(sha256)})  # fmt: skip
        return url, "private, max-age=600"

    origins = tuple(o.strip() for o in os.environ.get("CORS_ORIGINS", "*").split(",") if o.strip())
    limits = {**{k: int(v) for k, v in conf["limits"].items()}, "artifact_chunk": int(conf["artifacts"]["chunk"])}
    # one segment per request: a function has no later to gather events in
    return ReadApi(view, limits=limits, artifact_url=artifact_url, sink=TelemetrySink(store, None),
                   guard=Guard(tele, lambda: view.models(float(tele["models_seconds"]))), cors=Cors(origins),
                   locate=locate, classes=int(cache["profiles"]), answers=int(cache["resolutions"]))  # fmt: skip


# Once per container, at init: the S3 client and the caches live as long as the container does.
API = _open_api()
REGISTRY = API.view


def call_of(event: dict[str, Any]) -> Call | Exception:
    """The API's Call for an HTTP API event (payload 2.0), or why its body cannot be read."""
    http = event.get("requestContext", {}).get("http", {})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    call = Call(str(http.get("method", "GET")), str(event.get("rawPath") or http.get("path") or "/"),
                str(event.get("rawQueryString") or ""), headers, client=http.get("sourceIp"))  # fmt: skip
    raw = event.get("body") or ""
    limit = API.body_limit(call.method, call.path)
    if len(raw) > limit * 4 // 3 + 4:  # refused before decoding
        return too_large(limit)
    try:
        call.body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    except (binascii.Error, UnicodeEncodeError):
        return ServiceError(400, "bad_request", "the body is not valid base64, or not UTF-8 text")
    return call


def result_of(answer: Answer) -> dict[str, Any]:
    """The function's result for an HTTP API (bytes that are not UTF-8 go base64)."""
    body = answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)
    headers = {k: v for k, v in answer.headers if k != "content-length"}
    try:
        return {"statusCode": answer.status, "headers": headers, "body": body.decode(), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"statusCode": answer.status, "headers": headers, "body": base64.b64encode(body).decode(),
                "isBase64Encoded": True}  # fmt: skip


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    call = call_of(event)
    if isinstance(call, Exception):
        http = event.get("requestContext", {}).get("http", {})
        refused = Call(str(http.get("method", "POST")), str(event.get("rawPath") or "/"))
        return result_of(API.refuse(refused, call))
    return result_of(API.answer(call))
