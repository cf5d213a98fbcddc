"""The OpenAPI 3.0 document of the server, written by hand from the same vocabularies the code
validates with (platforms, accelerators, runtimes, telemetry events), so the two cannot drift."""

from __future__ import annotations

from functools import cache
from typing import Any

from packager import __version__
from packager.registry.profile import ACCELERATORS, PLATFORMS
from packager.server.telemetry import EVENTS
from packager.vocab import PRECISIONS, RUNTIMES

NAME = {"type": "string", "pattern": "^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?$", "maxLength": 64}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TEXT = {"type": "string", "pattern": "^[ -~]{0,128}$", "maxLength": 128, "nullable": True}
NUMBER = {"type": "number", "minimum": 0, "nullable": True}
VERSION_TEXT = {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], props: dict[str, Any], *, extra: bool = False, nullable: bool = False) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": props, "additionalProperties": extra}
    return {**schema, "nullable": True} if nullable else schema


SHADOW = _obj(
    ["version", "percent", "sample", "cpu_budget"],
    {"version": NAME, "percent": {"type": "number"}, "sample": {"type": "number"}, "cpu_budget": {"type": "number"}},
)


def _schemas() -> dict[str, Any]:
    # fmt: off
    runtime = _obj(["name", "min_version"], {"name": {"type": "string", "enum": list(RUNTIMES)},
                                             "min_version": {"type": "string"}})
    file = _obj(["path", "sha256", "bytes", "url"], {"path": {"type": "string"}, "sha256": SHA256,
                                                     "bytes": {"type": "integer", "minimum": 0},
                                                     "url": {"type": "string"}})
    served = _obj(["id", "target", "precision", "runtime", "url", "sha256", "bytes", "path", "files"], {
        "id": {"type": "string"}, "target": {"type": "string"},
        "precision": {"type": "string", "enum": list(PRECISIONS)},
        "runtime": runtime, "url": {"type": "string"}, "sha256": SHA256, "bytes": {"type": "integer", "minimum": 0},
        "path": {"type": "string"}, "files": {"type": "array", "items": _ref("File")},
        "state": {"type": "array", "items": _obj(["input", "output", "shape", "dtype"], {
            "input": {"type": "string"}, "output": {"type": "string"}, "shape": {"type": "array"},
            "dtype": {"type": "string"}})}})
    cloud = _obj(["url", "protocol"], {"url": {"type": "string"}, "protocol": {"type": "string"}}, nullable=True)
    return {
        "Error": _obj(
            ["error"], {"error": _obj(["code", "message"], {"code": {"type": "string"}, "message": {"type": "string"}})}
        ),
        "DeviceProfile": _obj(
            ["platform"],
            {
                "platform": {"type": "string", "enum": list(PLATFORMS)},
                **{k: TEXT for k in ("device_id", "arch", "os_version", "app_version", "network")},
                "runtimes": {
                    "type": "object",
                    "maxProperties": len(RUNTIMES),
                    "additionalProperties": False,
                    "properties": {name: VERSION_TEXT for name in RUNTIMES},
                },
                "accelerators": {
                    "type": "array",
                    "maxItems": len(ACCELERATORS),
                    "items": {"type": "string", "enum": list(ACCELERATORS)},
                },
                **{k: NUMBER for k in ("memory_mb", "storage_free_mb", "max_download_mb", "latency_budget_ms")},
            },
        ),
        "File": file,
        "Runtime": runtime,
        "ServedVariant": served,
        "Cloud": cloud,
        "Resolution": _obj(
            ["model", "version", "cohort", "variant", "fallbacks", "cloud", "reason", "expires"],
            {
                "model": NAME,
                "version": NAME,
                "cohort": {"type": "string", "enum": ["stable", "candidate", "experiment"]},
                "arm": {"type": "integer", "minimum": 0},
                "variant": {"allOf": [_ref("ServedVariant")], "nullable": True},
                "fallbacks": {"type": "array", "items": _ref("ServedVariant")},
                "cloud": _ref("Cloud"),
                "reason": {"type": "string"},
                "expires": {"type": "string"},
                "shadow": _obj(
                    ["version", "variant", "sample", "cpu_budget"],
                    {"version": NAME, "variant": _ref("ServedVariant"), "sample": {"type": "number"},
                     "cpu_budget": {"type": "number"}},
                ),
            },
        ),
        "Pointer": _obj(
            [
                "schema",
                "kind",
                "model",
                "channel",
                "stable",
                "candidate",
                "percent",
                "generation",
                "updated",
                "history",
            ],
            {
                "schema": {"type": "integer"},
                "kind": {"type": "string", "enum": ["packager.channel"]},
                "model": NAME,
                "channel": NAME,
                "stable": {"type": "string", "nullable": True},
                "candidate": {"type": "string", "nullable": True},
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "generation": {"type": "integer", "minimum": 0},
                "updated": {"type": "string"},
                "history": {"type": "array", "items": ANY_OBJECT},
                "plan": ANY_OBJECT,
                "shadow": SHADOW,
                "experiment": ANY_OBJECT,
            },
        ),
        "Manifest": _obj(
            [
                "schema",
                "model",
                "channel",
                "generation",
                "stable",
                "candidate",
                "percent",
                "pointer",
                "versions",
                "tuf",
            ],
            {
                "schema": {"type": "integer"},
                "model": NAME,
                "channel": NAME,
                "generation": {"type": "integer"},
                "stable": {"type": "string"},
                "candidate": {"type": "string", "nullable": True},
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "pointer": {"type": "string"},
                "versions": {
                    "type": "object",
                    "additionalProperties": _obj(
                        ["model", "published", "cloud", "document", "variants"],
                        {
                            "model": ANY_OBJECT,
                            "published": {"type": "string"},
                            "cloud": _ref("Cloud"),
                            "document": {"type": "string"},
                            "variants": {"type": "array", "items": ANY_OBJECT},
                        },
                    ),
                },
                "tuf": {**ANY_OBJECT, "nullable": True},
            },
        ),
        "Published": _obj(
            ["model", "version", "channel", "variants", "withheld", "uploaded", "changed", "pointer"],
            {
                "model": NAME,
                "version": NAME,
                "channel": NAME,
                "variants": {"type": "array", "items": {"type": "string"}},
                "withheld": {"type": "array", "items": {"type": "string"}},
                "uploaded": {"type": "integer"},
                "changed": {"type": "boolean"},
                "pointer": _ref("Pointer"),
            },
        ),
        "Rollout": _obj(["version"], {"version": NAME, "percent": {"type": "integer", "minimum": 0, "maximum": 100}}),
        "TelemetryBatch": _obj(
            ["events"], {"events": {"type": "array", "minItems": 1, "maxItems": 100, "items": _ref("Event")}}
        ),
        "Event": _obj(
            ["event", "model"],
            {
                "event": {"type": "string", "enum": list(EVENTS)},
                "model": NAME,
                "version": NAME,
                "variant": NAME,
                "device_id": {"type": "string", "pattern": "^[ -~]{0,128}$"},
                "at": {"type": "string", "pattern": "^[ -~]{0,40}$"},
                "detail": {"type": "string", "pattern": "^[ -~]{0,256}$"},
                "ms": {"type": "number", "minimum": 0, "maximum": 1e15},
                "bytes": {"type": "integer", "minimum": 0, "maximum": 1e15},
                "ok": {"type": "boolean"},
                "agree": {"type": "boolean"},
                "diff": {"type": "number", "minimum": 0, "maximum": 1e15},
                "base_ms": {"type": "number", "minimum": 0, "maximum": 1e15},
                "reward": {"type": "number", "minimum": -1e15, "maximum": 1e15},
                "bins": {"type": "object", "minProperties": 1, "maxProperties": 256,
                         "additionalProperties": {"type": "array", "minItems": 1, "maxItems": 64,
                                                  "items": {"type": "integer", "minimum": 0, "maximum": 1e9}}},
            },
        ),
        "Fleet": _obj(
            ["model", "since", "until", "window_seconds", "segments", "stable", "candidate", "rows", "rollout"],
            {"model": NAME, "since": {"type": "string"}, "until": {"type": "string"},
             "window_seconds": {"type": "integer"}, "segments": {"type": "integer"},
             "stable": {**NAME, "nullable": True}, "candidate": {**NAME, "nullable": True},
             "rollout": {**ANY_OBJECT, "nullable": True}, "shadow": {**SHADOW, "nullable": True},
             "experiment": {**ANY_OBJECT, "nullable": True}, "drift": ANY_OBJECT,
             "rows": {"type": "array", "items": {"type": "object", "required": ["version", "variant", "cohort"],
                                                 "additionalProperties": True}}},
        ),
        "Dashboard": _obj(
            ["model", "channel", "now", "since", "stable", "candidate", "percent", "series", "rollout", "outputs",
             "drift", "fleet"],
            {"model": NAME, "channel": NAME, "now": {"type": "string"}, "since": {"type": "string"},
             "stable": {**NAME, "nullable": True}, "candidate": {**NAME, "nullable": True},
             "percent": {"type": "integer"},
             "series": _obj(["step_seconds", "times", "versions"],
                            {"step_seconds": {"type": "integer"}, "versions": ANY_OBJECT,
                             "times": {"type": "array", "items": {"type": "integer"}}}),
             "rollout": ANY_OBJECT, "experiment": {**ANY_OBJECT, "nullable": True},
             "allocations": {**ANY_OBJECT, "nullable": True}, "outputs": ANY_OBJECT, "drift": ANY_OBJECT,
             "fleet": {"type": "array", "items": ANY_OBJECT}},
        ),
        "Accepted": _obj(["accepted"], {"accepted": {"type": "integer"}}),
        "Health": _obj(
            ["status", "store", "signed"],
            {"status": {"type": "string"}, "store": {"type": "string", "enum": ["folder", "s3"]},
             "signed": {"type": "boolean"}},
        ),
    }
    # fmt: on


def _json(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": _ref(schema)}}}  # fmt: skip
    if headers:
        out["headers"] = headers
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    words = {400: "invalid name or request", 401: "no bearer token", 403: "the token may not do this",
             404: "not found", 409: "the registry's state does not allow it", 413: "body over the limit",
             416: "range not satisfiable", 422: "invalid document",
             429: "too many events from this address or device, or the model's daily cap (see Retry-After)",
             500: "signing failed",
             503: "the registry cannot be read, or no signing keys"}  # fmt: skip
    return {str(s): _json("Error", words[s]) for s in statuses}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}


CHANNEL = {"name": "channel", "in": "query", "required": False, "schema": {**NAME, "default": "stable"}}
ETAG = {"ETag": {"schema": {"type": "string"}}}
NOT_MODIFIED = {"304": {"description": "not modified (If-None-Match)", "headers": ETAG}}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _reads() -> dict[str, Any]:
    m = _path("m", NAME)
    return {
        "/v1/models/{m}/manifest": {"get": {
            "operationId": "manifest", "summary": "The channel's catalog: every servable variant with requirements",
            "parameters": [m, CHANNEL, _header("If-None-Match")],
            "responses": {"200": _json("Manifest", "the catalog", ETAG), **NOT_MODIFIED, **_errors(400, 404, 503)}}},
        "/v1/models/{m}/resolve": {"post": {
            "operationId": "resolve", "summary": "Which variant this device gets (or the cloud endpoint, and why)",
            "parameters": [m, CHANNEL],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DeviceProfile")}}},
            "responses": {"200": _json("Resolution", "the resolution"), **_errors(400, 404, 413, 422, 503)}}},
        "/v1/artifacts/{sha256}": {"get": {
            "operationId": "artifact", "summary": "An artifact's bytes; single byte ranges; immutable",
            "parameters": [_path("sha256", SHA256), _header("Range"), _header("If-None-Match")],
            "responses": {
                "200": {"description": "the bytes", "headers": ETAG,
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "the requested range", "headers": {"Content-Range": {"schema": {
                    "type": "string"}}}, "content": {"application/octet-stream": {"schema": {
                        "type": "string", "format": "binary"}}}},
                **NOT_MODIFIED, **_errors(400, 404, 416)}}},
        "/v1/tuf/{name}": {"get": {
            "operationId": "tufMetadata", "summary": "TUF metadata: root.json, timestamp.json, <n>.<role>.json",
            "parameters": [_path("name", {"type": "string", "maxLength": 64}), _header("If-None-Match")],
            "responses": {"200": {"description": "signed metadata", "headers": ETAG,
                                  "content": {"application/json": {"schema": ANY_OBJECT}}},
                          **NOT_MODIFIED, **_errors(404)}}},
        "/v1/models/{m}/versions/{v}": {"get": {
            "operationId": "versionDocument", "summary": "A version document, as the TUF targets sign it",
            "parameters": [m, _path("v", NAME), _header("If-None-Match")],
            "responses": {"200": {"description": "the document", "headers": ETAG,
                                  "content": {"application/json": {"schema": ANY_OBJECT}}},
                          **NOT_MODIFIED, **_errors(400, 404)}}},
    }  # fmt: skip


def _writes() -> dict[str, Any]:
    m, c = _path("m", NAME), _path("c", NAME)
    tar = {"schema": {"type": "string", "format": "binary"}}
    return {
        "/v1/models/{m}/versions": {"post": {
            "operationId": "publish", "summary": "Publish one build folder, sent as a tar (build.json at its root)",
            "security": BEARER, "parameters": [m, CHANNEL, {"name": "cloud_url", "in": "query", "required": False,
                                                            "schema": {"type": "string", "maxLength": 512}}],
            "requestBody": {"required": True, "content": {"application/x-tar": tar, "application/gzip": tar}},
            "responses": {"201": _json("Published", "published"),
                          "200": _json("Published", "this very build was published already: nothing was written"),
                          **_errors(400, 401, 403, 409, 413, 422, 500, 503)}}},
        "/v1/models/{m}/channels/{c}": {
            "get": {"operationId": "pointer", "summary": "The channel pointer of record (the signed bytes)",
                    "parameters": [m, c, _header("If-None-Match")],
                    "responses": {"200": _json("Pointer", "the pointer", ETAG), **NOT_MODIFIED,
                                  **_errors(400, 404, 503)}},
            "put": {"operationId": "rollout", "summary": "Offer a version to a percent of devices (100: stable)",
                    "security": BEARER, "parameters": [m, c],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Rollout")}}},
                    "responses": {"200": _json("Pointer", "the new pointer"),
                                  **_errors(400, 401, 403, 404, 409, 413, 500, 503)}}},
        "/v1/models/{m}/channels/{c}/rollback": {"post": {
            "operationId": "rollback", "summary": "Stop the rollout, or go back to the previous stable version",
            "security": BEARER, "parameters": [m, c],
            "responses": {"200": _json("Pointer", "the new pointer"), **_errors(400, 401, 403, 404, 409, 500, 503)}}},
        "/v1/models/{m}/fleet": {"get": {
            "operationId": "fleet", "summary": "Telemetry read back per version, variant and cohort over a window",
            "security": BEARER, "parameters": [m, {"name": "window", "in": "query", "required": False,
                                                   "schema": {"type": "string", "default": "1h", "maxLength": 16}}],
            "responses": {"200": _json("Fleet", "the numbers"), **_errors(400, 401, 403, 503)}}},
        "/v1/models/{m}/dashboard": {"get": {
            "operationId": "dashboardData",
            "summary": "What /dashboard/{m} draws: per-version series over time, the rollout's and the arms' "
                       "history, outputs against the reference, drift",
            "security": BEARER, "parameters": [m, {"name": "window", "in": "query", "required": False,
                                                   "schema": {"type": "string", "default": "6h", "maxLength": 16}},
                                               {"name": "step", "in": "query", "required": False,
                                                "schema": {"type": "string", "maxLength": 16}}],
            "responses": {"200": _json("Dashboard", "the numbers"), **_errors(400, 401, 403, 404, 503)}}},
        "/v1/telemetry": {"post": {
            "operationId": "telemetry", "summary": "Device events: download, load, latency, errors",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TelemetryBatch")}}},
            "responses": {"202": _json("Accepted", "stored"), **_errors(400, 413, 422, 429, 503)}}},
    }  # fmt: skip


def _browser() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "/v1/client.js": {"get": {
            "operationId": "clientJs", "summary": "The browser loader: window.Packager.load(model, {server})",
            "parameters": [_header("If-None-Match")],
            "responses": {"200": {"description": "the script", "headers": ETAG, "content": {"text/javascript": text}},
                          **NOT_MODIFIED}}},
        "/demo/{m}": {"get": {
            "operationId": "demoPage", "summary": "A page that loads the model with the runtime and /v1/client.js",
            "parameters": [_path("m", NAME), {"name": "runtime", "in": "query", "required": False,
                                              "schema": {"type": "string", "enum": ["tfjs", "onnxruntime-web"]}}],
            "responses": {"200": {"description": "the page", "content": {"text/html": text}},
                          **_errors(400, 404)}}},
        "/dashboard/{m}": {"get": {
            "operationId": "dashboardPage",
            "summary": "The fleet dashboard: the page asks for a token of the model and draws /v1/models/{m}/dashboard",
            "parameters": [_path("m", NAME), {"name": "window", "in": "query", "required": False,
                                              "schema": {"type": "string", "maxLength": 16}}],
            "responses": {"200": {"description": "the page", "content": {"text/html": text}},
                          **_errors(400, 404)}}},
        "/vendor/{package}/{file}": {"get": {
            "operationId": "vendorRuntime",
            "summary": "For the demo and dashboard pages: tf.js, onnxruntime-web or uPlot from this checkout's "
                       "node_modules",
            "parameters": [_path("package", {"type": "string", "enum": ["tfjs", "onnxruntime-web", "uplot"]}),
                           _path("file", {"type": "string", "maxLength": 64})],
            "responses": {"200": {"description": "the runtime file", "content": {
                "text/javascript": text, "text/css": text,
                "application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                          **_errors(404)}}},
    }  # fmt: skip


def _service() -> dict[str, Any]:
    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness and the registry it serves",
                             "responses": {"200": _json("Health", "ok"), **_errors(503)}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.0",
                                                        "content": {"application/json": {"schema": ANY_OBJECT}}}}}},
    }  # fmt: skip


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document served at /openapi.json."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "packager manifest server", "version": __version__,
                 "description": "Catalog, per-device resolution, artifacts, TUF metadata, rollouts, telemetry."},
        "paths": {**_reads(), **_writes(), **_browser(), **_service()},
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }  # fmt: skip
