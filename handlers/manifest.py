"""The manifest API on AWS Lambda: the read side of `packager serve`, over an S3 registry.

Runs in the function of templates/service.yaml behind an HTTP API. Selection is the server's own
code: `sam build` runs handlers/Makefile, which puts beside this file a ``packager`` package of
packager's pure registry and server modules (names, documents, device profiles, resolve, the S3
store, telemetry), copied as they are, and nothing from the converters. Routes, with the
server's JSON and errors:

    GET  /v1/models/{m}/manifest?channel=stable   the catalog; ETag, 304 on If-None-Match
    POST /v1/models/{m}/resolve?channel=stable    DeviceProfile -> Resolution
    GET  /v1/models/{m}/versions/{v}              a version document's stored bytes
    GET  /v1/models/{m}/channels/{c}              the channel pointer of record
    GET  /v1/tuf/{name}                           TUF metadata
    GET  /v1/artifacts/{sha256}                   302 to the bytes (CloudFront, else a presigned S3 URL)
    POST /v1/telemetry                            device events, stored under telemetry/
    GET  /healthz

Artifact bytes never pass through Lambda: resolutions and catalogs name
``$ARTIFACTS_BASE_URL/artifacts/sha256/<hex>`` (the CloudFront distribution over the bucket's
``artifacts/``). Publish, rollout and rollback are not served here: `packager publish|rollout|
rollback --registry s3://bucket/prefix` writes the bucket directly.

Environment: REGISTRY_BUCKET, REGISTRY_PREFIX (may be empty), ARTIFACTS_BASE_URL (may be empty:
then URLs are /v1/artifacts/<hex>, answered with presigned S3 redirects), POINTER_TTL_SECONDS
(how long a warm container trusts a channel pointer; server.toml's default), and
PACKAGER_S3_ENDPOINT_URL (an S3-compatible server instead of AWS, for tests).

Errors are ``{"error": {"code", "message"}}``, with the server's statuses and codes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from packager.errors import InvalidNameError, PackagerError, ProfileError, ServiceError, UsageError
from packager.registry.catalog import Channel, Lru, manifest_doc
from packager.registry.docs import Pointer, canonical_json
from packager.registry.names import artifact_key, check_name, check_sha256, pointer_copy_key, pointer_key, version_key
from packager.registry.profile import DeviceProfile
from packager.registry.resolve import resolve
from packager.registry.s3 import S3Store
from packager.registry.store import Store
from packager.resources import read_toml
from packager.server.telemetry import TelemetrySink, check_batch

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
PRESIGN_SECONDS = 3600
_TUF_NAME = re.compile(r"(root|timestamp)\.json|[1-9][0-9]{0,8}\.(root|targets|snapshot)\.json")
_SETTINGS = read_toml("server.toml")
LIMITS = {k: int(v) for k, v in _SETTINGS["limits"].items()}

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-manifest"))
app = APIGatewayHttpResolver()


class Registry:
    """Cached reads of the S3 registry for one warm container.

    Version documents and TUF files named by version are immutable: cached until evicted. A
    channel pointer is read again once older than ``ttl`` seconds. On a signed registry the
    pointer of record is the copy that the TUF targets metadata names (as the server reads it),
    found by walking timestamp -> snapshot -> targets; that walk is redone only when the
    timestamp's etag changes. No signature is checked here: devices verify with their root.
    """

    def __init__(self, store: Store, *, ttl: float, artifacts_base: str,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.store, self.ttl, self.clock = store, ttl, clock
        self.artifacts_base = artifacts_base.rstrip("/")
        self._lock = threading.Lock()
        self._immutable = Lru(int(_SETTINGS["cache"]["versions"]))  # key -> bytes
        self._derived = Lru(int(_SETTINGS["cache"]["manifests"]))
        self._channels: dict[tuple[str, str], tuple[float, Channel | None]] = {}
        self._tuf: tuple[float, bool, str | None, Mapping[str, Any] | None] = (-float("inf"), False, None, None)
        self._artifacts = Lru(4096)  # sha256 -> True: known to be in the store

    def artifact_url(self, sha256: str) -> str:
        if self.artifacts_base:
            return f"{self.artifacts_base}/{artifact_key(sha256)}"
        return f"/v1/artifacts/{sha256}"

    def immutable(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._immutable:
                return bytes(dict.__getitem__(self._immutable, key))
        blob = self.store.get(key)
        if blob is None:
            return None
        with self._lock:
            return bytes(self._immutable.put(key, blob.data))

    def version(self, model: str, version: str) -> Mapping[str, Any] | None:
        data = self.immutable(version_key(model, version))
        return None if data is None else json.loads(data)  # type: ignore[no-any-return]

    def tuf_targets(self) -> tuple[bool, Mapping[str, Any] | None]:
        """(signed, the targets of the current TUF targets metadata), read again after ``ttl``."""
        now = self.clock()
        read_at, signed, etag, targets = self._tuf
        if now - read_at < self.ttl:
            return signed, targets
        timestamp = self.store.get("tuf/timestamp.json")
        if timestamp is None:  # unsigned, or keys init before its first commit
            signed, etag, targets = self.store.size("tuf/root.json") is not None, None, None
        elif timestamp.etag != etag or targets is None:
            snapshot_version = json.loads(timestamp.data)["signed"]["meta"]["snapshot.json"]["version"]
            snapshot = json.loads(self._must(f"tuf/{int(snapshot_version)}.snapshot.json"))["signed"]
            targets_version = int(snapshot["meta"]["targets.json"]["version"])
            targets = json.loads(self._must(f"tuf/{targets_version}.targets.json"))["signed"]["targets"]
            signed, etag = True, timestamp.etag
        self._tuf = (now, signed, etag, targets)
        return signed, targets

    def _must(self, key: str) -> bytes:
        data = self.immutable(key)
        if data is None:
            raise ServiceError(503, "registry_inconsistent", f"{self.store.url} is missing {key}")
        return data

    def channel(self, model: str, channel: str) -> Channel | None:
        """The channel of record, or None when nothing was published to it."""
        now = self.clock()
        cached = self._channels.get((model, channel))
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        signed, targets = self.tuf_targets()
        pointer = self._signed_pointer(model, channel, targets) if signed else self._plain_pointer(model, channel)
        found = None
        if pointer is not None and pointer.stable is not None:
            names = [v for v in (pointer.stable, pointer.candidate) if v is not None]
            docs = {name: self.version(model, name) for name in names}
            missing = [name for name, doc in docs.items() if doc is None]
            if missing:
                raise ServiceError(503, "registry_inconsistent",
                                   f"{model}/{channel} points at version {missing[0]}, which is missing")  # fmt: skip
            found = Channel(pointer=pointer, versions={k: v for k, v in docs.items() if v is not None},
                            key=canonical_json(pointer.to_json()).decode(), signed=signed)  # fmt: skip
        self._channels[(model, channel)] = (now, found)
        return found

    def _plain_pointer(self, model: str, channel: str) -> Pointer | None:
        blob = self.store.get(pointer_key(model, channel))
        return None if blob is None else Pointer.from_json(json.loads(blob.data))

    def _signed_pointer(self, model: str, channel: str, targets: Mapping[str, Any] | None) -> Pointer | None:
        target = (targets or {}).get(pointer_key(model, channel))
        if target is None:
            return None
        sha = check_sha256(str(target["hashes"]["sha256"]))
        return Pointer.from_json(json.loads(self._must(pointer_copy_key(model, channel, sha))))

    def has_artifact(self, sha256: str) -> bool:
        with self._lock:
            if sha256 in self._artifacts:
                return True
        if self.store.size(artifact_key(sha256)) is None:
            return False
        with self._lock:
            self._artifacts.put(sha256, True)
        return True

    def derived(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._derived:
                return dict.__getitem__(self._derived, key)
        value = make()
        with self._lock:
            return self._derived.put(key, value)


def _open_registry() -> Registry:
    bucket = os.environ.get("REGISTRY_BUCKET", "")
    if not bucket:
        raise RuntimeError("REGISTRY_BUCKET is not set: the function needs the registry's bucket")
    prefix = os.environ.get("REGISTRY_PREFIX", "").strip("/")
    store = S3Store.from_url(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
                             endpoint_url=os.environ.get("PACKAGER_S3_ENDPOINT_URL") or None)  # fmt: skip
    ttl = float(os.environ.get("POINTER_TTL_SECONDS") or _SETTINGS["cache"]["pointer_seconds"])
    return Registry(store, ttl=ttl, artifacts_base=os.environ.get("ARTIFACTS_BASE_URL", ""))


# Once per container, at init: the S3 client and the caches live as long as the container does.
REGISTRY = _open_registry()
TELEMETRY = TelemetrySink(REGISTRY.store, None)


# --- HTTP plumbing -------------------------------------------------------------------------------


def _json(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body,
                    headers=dict(headers or {}))  # fmt: skip


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _quoted(tag: str) -> str:
    return f'"{tag}"'


def _etag_matches(tag: str) -> bool:
    header = app.current_event.headers.get("if-none-match")
    if not header:
        return False
    return any(item.strip() == "*" or item.strip().removeprefix("W/") == _quoted(tag) for item in header.split(","))


def _document(data: bytes, cache_control: str) -> Response:
    """Stored JSON bytes as they are (what TUF signs), with an ETag and 304."""
    tag = hashlib.sha256(data).hexdigest()
    headers = {"ETag": _quoted(tag), "Cache-Control": cache_control}
    if _etag_matches(tag):
        return Response(status_code=304, headers=headers)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=data.decode(), headers=headers)


def _body(limit: int) -> bytes:
    event = app.current_event.raw_event
    raw = event.get("body") or ""
    if len(raw) > limit * 4 // 3 + 4:  # refused before decoding
        raise ServiceError(413, "too_large", f"the body is over the {limit} byte limit of this endpoint")
    data = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    if len(data) > limit:
        raise ServiceError(413, "too_large", f"the body is over the {limit} byte limit of this endpoint")
    return data


def _read_json(limit: int) -> Any:
    try:
        return json.loads(_body(limit))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(400, "invalid_json", f"the body is not JSON: {exc}") from exc


def _name(kind: str, value: str) -> str:
    try:
        return check_name(kind, value)
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def _channel_param() -> str:
    return _name("channel", app.current_event.get_query_string_value("channel", "stable") or "stable")


def _not_found(what: str, hint: str = "") -> ServiceError:
    return ServiceError(404, "not_found", f"{what}{'; ' + hint if hint else ''}")


def _channel(model: str, channel: str) -> Channel:
    found = REGISTRY.channel(model, channel)
    if found is None:
        raise _not_found(f"model {model} has no channel {channel}", "publish a version first")
    return found


# --- routes ----------------------------------------------------------------------------------------


@app.get("/v1/models/<m>/manifest")
def manifest(m: str) -> Response:
    found = _channel(_name("model", m), _channel_param())

    def make() -> tuple[str, str]:
        body = json.dumps(manifest_doc(found, REGISTRY.artifact_url), separators=(",", ":"), ensure_ascii=False)
        return body, hashlib.sha256(body.encode()).hexdigest()

    body, tag = REGISTRY.derived(("manifest", found.key, found.signed), make)
    headers = {"ETag": _quoted(tag), "Cache-Control": REVALIDATE}
    if _etag_matches(tag):
        return Response(status_code=304, headers=headers)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.post("/v1/models/<m>/resolve")
def resolve_route(m: str) -> Response:
    model, channel = _name("model", m), _channel_param()
    profile = DeviceProfile.from_json(_read_json(LIMITS["json_body"]))
    found = _channel(model, channel)
    now = datetime.now(UTC).replace(microsecond=0)
    resolution = resolve(found.pointer, found.versions, profile, now=now, artifact_url=REGISTRY.artifact_url)
    return _json(resolution.to_json(), headers={"Cache-Control": "private, no-store"})


@app.get("/v1/models/<m>/versions/<v>")
def version_document(m: str, v: str) -> Response:
    model, version = _name("model", m), _name("version", v)
    data = REGISTRY.immutable(version_key(model, version))
    if data is None:
        raise _not_found(f"model {model} has no version {version}")
    return _document(data, IMMUTABLE)


@app.get("/v1/models/<m>/channels/<c>")
def pointer_document(m: str, c: str) -> Response:
    found = _channel(_name("model", m), _name("channel", c))
    return _document(found.key.encode(), REVALIDATE)


@app.get("/v1/tuf/<name>")
def tuf_metadata(name: str) -> Response:
    if not _TUF_NAME.fullmatch(name):
        raise _not_found(f"no TUF metadata named {name[:80]!r}",
                         "names are root.json, timestamp.json and <n>.root|targets|snapshot.json")  # fmt: skip
    mutable = name in ("root.json", "timestamp.json")
    if mutable:  # replaced by each commit (timestamp) or root rotation: read every time
        blob = REGISTRY.store.get(f"tuf/{name}")
        data = None if blob is None else blob.data
    else:
        data = REGISTRY.immutable(f"tuf/{name}")
    if data is None:
        raise _not_found(f"this registry has no tuf/{name}", "an unsigned registry has no TUF metadata")
    return _document(data, REVALIDATE if mutable else IMMUTABLE)


@app.route("/v1/artifacts/<sha256>", method=["GET", "HEAD"])
def artifact(sha256: str) -> Response:
    try:
        sha = check_sha256(sha256)
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc
    if not REGISTRY.has_artifact(sha):
        raise _not_found(f"no artifact {sha}")
    if REGISTRY.artifacts_base:
        location = REGISTRY.artifact_url(sha)
        cache = IMMUTABLE
    else:  # no CloudFront in front of the bucket: a short-lived presigned S3 URL
        store = REGISTRY.store
        assert isinstance(store, S3Store)
        location = store.client.generate_presigned_url("get_object", ExpiresIn=PRESIGN_SECONDS,
                                                       Params={"Bucket": store.bucket,
                                                               "Key": store.prefix + artifact_key(sha)})  # fmt: skip
        cache = "private, max-age=600"
    return Response(status_code=302, headers={"Location": location, "Cache-Control": cache, "ETag": _quoted(sha)})


@app.post("/v1/telemetry")
def telemetry() -> Response:
    events = check_batch(_read_json(LIMITS["telemetry_body"]), LIMITS["telemetry_events"])
    TELEMETRY.write(events)
    return _json({"accepted": len(events)}, status=202)


@app.get("/healthz")
def healthz() -> Response:
    signed, _ = REGISTRY.tuf_targets()
    return _json({"status": "ok", "store": "s3" if REGISTRY.store.url.startswith("s3://") else "folder",
                  "signed": signed},
                 headers={"Cache-Control": "no-store"})  # fmt: skip


# --- errors ----------------------------------------------------------------------------------------


def _as_service_error(exc: PackagerError) -> ServiceError:
    """A library error as the status the server answers it with (packager.server.http)."""
    if isinstance(exc, ServiceError):
        return exc
    text = exc.one_line()
    for kind, status, code in ((InvalidNameError, 400, "invalid_name"), (ProfileError, 422, "invalid_profile"),
                               (UsageError, 400, "bad_request")):  # fmt: skip
        if isinstance(exc, kind):
            return ServiceError(status, code, text)
    return ServiceError(503, "registry_unavailable", text)


@app.exception_handler(PackagerError)
def _packager_error(exc: PackagerError) -> Response:
    error = _as_service_error(exc)
    if error.status >= 500:
        logger.error("%s %s: %s", app.current_event.http_method, app.current_event.path, exc.one_line())
    return _error(error.status, error.code, error.message, error.headers)


@app.not_found
def _route_not_found(exc: Exception) -> Response:
    return _error(404, "not_found", f"no route {app.current_event.http_method} {app.current_event.path}")


@app.exception_handler(Exception)
def _internal_error(exc: Exception) -> Response:
    logger.exception("%s %s failed", app.current_event.http_method, app.current_event.path)
    return _error(500, "internal", f"internal error: {type(exc).__name__}")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
