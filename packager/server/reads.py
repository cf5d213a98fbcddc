"""Read endpoints: catalog (manifest), artifacts, TUF metadata and signed documents (resolve:
``packager.server.resolver``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from packager.errors import ServiceError
from packager.registry.catalog import Channel, manifest_doc
from packager.registry.names import artifact_key, version_key
from packager.registry.store import Store
from packager.server.http import ByteRange, etag_matches, json_response, parse_range, quoted
from packager.server.service import (
    Service,
    not_found,
    path_name,
    path_sha256,
    query_channel,
    service,
)

_TUF_NAME = re.compile(r"(root|timestamp)\.json|[1-9][0-9]{0,8}\.(root|targets|snapshot)\.json")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


async def served_channel(svc: Service, model: str, channel: str) -> Channel:
    """The channel as the view has it (read in the threadpool once its pointer is stale), or a 404."""
    hit, found = svc.view.fresh(model, channel)
    if not hit:
        found = await run_in_threadpool(svc.view.channel, model, channel)
    return published(found, model, channel)


def published(found: Channel | None, model: str, channel: str) -> Channel:
    """``found``, or the 404 of a channel nothing was published to."""
    if found is None:
        raise not_found(f"model {model} has no channel {channel}", "publish a version first")
    return found


async def manifest(request: Request) -> Response:
    svc = service(request)
    model, channel = path_name(request, "model", "m"), query_channel(request)
    found = await served_channel(svc, model, channel)

    def make() -> tuple[bytes, str]:
        body = json_response(manifest_doc(found, svc.artifact_url)).body
        return bytes(body), hashlib.sha256(body).hexdigest()

    body, tag = svc.view.derived(("manifest", found.key, found.signed), make)
    headers = {"ETag": quoted(tag), "Cache-Control": REVALIDATE}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def artifact(request: Request) -> Response:
    svc = service(request)
    sha = path_sha256(request)
    key = artifact_key(sha)
    size = await run_in_threadpool(svc.view.store.size, key)
    if size is None:
        raise not_found(f"no artifact {sha}")
    headers = {"ETag": quoted(sha), "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    if etag_matches(request.headers.get("if-none-match"), sha):
        return Response(status_code=304, headers=headers)
    wanted = parse_range(request.headers.get("range"), size)
    part = wanted or ByteRange(0, size)
    headers["Content-Length"] = str(part.length)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {part.start}-{part.start + part.length - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    chunks = _chunks(svc.view.store, key, part, svc.limits["artifact_chunk"])
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type="application/octet-stream")


def _chunks(store: Store, key: str, part: ByteRange, chunk: int) -> Iterator[bytes]:
    """The bytes of ``part``, read from the store a chunk at a time (never the whole file)."""
    offset, left = part.start, part.length
    while left > 0:
        data = store.get_range(key, offset, min(chunk, left))
        if not data:
            raise ServiceError(500, "artifact_truncated", f"{key} ended early at byte {offset}")
        offset, left = offset + len(data), left - len(data)
        yield data


async def tuf_metadata(request: Request) -> Response:
    svc = service(request)
    name = str(request.path_params["name"])
    if not _TUF_NAME.fullmatch(name):
        raise not_found(f"no TUF metadata named {name[:80]!r}",
                        "names are root.json, timestamp.json and <n>.root|targets|snapshot.json")  # fmt: skip
    blob = await run_in_threadpool(svc.view.store.get, f"tuf/{name}")
    if blob is None:
        raise not_found(f"this registry has no tuf/{name}", "an unsigned registry has no TUF metadata")
    mutable = name in ("root.json", "timestamp.json")
    return _document(request, blob.data, REVALIDATE if mutable else IMMUTABLE)


async def version_document(request: Request) -> Response:
    """The version document's exact stored bytes (what the TUF targets metadata signs)."""
    svc = service(request)
    model, version = path_name(request, "model", "m"), path_name(request, "version", "v")
    blob = await run_in_threadpool(svc.view.store.get, version_key(model, version))
    if blob is None:
        raise not_found(f"model {model} has no version {version}")
    return _document(request, blob.data, IMMUTABLE)


async def pointer_document(request: Request) -> Response:
    """The channel pointer of record, as the bytes its signed copy holds."""
    svc = service(request)
    model, channel = path_name(request, "model", "m"), path_name(request, "channel", "c")
    found = await served_channel(svc, model, channel)
    return _document(request, found.key.encode(), REVALIDATE)


def _document(request: Request, data: bytes, cache_control: str) -> Response:
    tag = hashlib.sha256(data).hexdigest()
    headers = {"ETag": quoted(tag), "Cache-Control": cache_control}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/json", headers=headers)
