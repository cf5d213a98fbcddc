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

import os
from typing import Any

from aws_lambda_powertools import Logger

from packager.registry.names import artifact_key
from packager.resources import read_toml
from packager.server.api import IMMUTABLE, Cors, ReadApi
from packager.server.apigw import call_of, refused_call, result_of, store_from_env
from packager.server.telemetry import Guard, TelemetrySink
from packager.server.views import RegistryView

PRESIGN_SECONDS = 3600
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-manifest"))


def _open_api() -> ReadApi:
    store = store_from_env()
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


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    call = call_of(event, API.body_limit(str(http.get("method", "GET")), str(event.get("rawPath") or "/")))
    if isinstance(call, Exception):
        return result_of(API.refuse(refused_call(event), call))
    return result_of(API.answer(call))
