"""Write endpoints (bearer token, scoped per model).

Publish takes one build folder as a tar archive (``Content-Type: application/x-tar``, gzip
allowed): build.json at the archive's root and the files it names beside it, exactly as
``packager build`` wrote them. A tar is one streamed request that keeps the relative paths
build.json refers to, and both ends have it in the standard library (multipart would need
python-multipart and a field per file). The server unpacks it with tarfile's ``data`` filter
(regular files and folders only, nothing outside the folder) after checking member count and
sizes, then runs the same ``packager.registry.publish`` as the CLI does on a local registry.

Every write checks the token before it reads the body, so a refused write changes nothing.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from packager.errors import InvalidNameError, PackagerError, ServiceError, UsageError
from packager.registry import publish as registry
from packager.registry.docs import Pointer
from packager.registry.names import check_name
from packager.registry.publish import Published, read_build
from packager.server.asgi import json_response, read_json
from packager.server.http import as_service_error
from packager.server.service import Service, not_found, path_name, query_channel, require_object, service

_SPOOL = 16 << 20
_REFUSED = {"AbsolutePathError": "an absolute path", "OutsideDestinationError": "a path outside the build folder",
            "AbsoluteLinkError": "a link", "LinkOutsideDestinationError": "a link",
            "SpecialFileError": "a special file"}  # fmt: skip


async def _authorize(request: Request, svc: Service, model: str) -> None:
    await svc.tokens.verify(request.headers.get("authorization"), model)


async def _ready_to_sign(svc: Service) -> None:
    if svc.keys is None and await run_in_threadpool(svc.view.signed):
        raise ServiceError(503, "signing_unavailable", "the registry is signed and this server has no signing keys",
                           headers={"Retry-After": "3600"})  # fmt: skip


def published_json(done: Published) -> dict[str, Any]:
    return {"model": done.model, "version": done.version, "channel": done.channel, "variants": list(done.variants),
            "withheld": list(done.withheld), "uploaded": done.uploaded, "changed": done.changed,
            "pointer": done.pointer.to_json()}  # fmt: skip


async def publish(request: Request) -> Response:
    svc = service(request)
    model = path_name(request, "model", "m")
    await _authorize(request, svc, model)
    channel = query_channel(request)
    cloud_url = request.query_params.get("cloud_url")
    if cloud_url is not None and (len(cloud_url) > 512 or not cloud_url.startswith(("https://", "http://"))):
        raise ServiceError(400, "bad_request", "cloud_url must be an http(s) URL of at most 512 characters")
    await _ready_to_sign(svc)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool, tempfile.TemporaryDirectory() as tmp:
        await _spool(request, spool, svc.limits["upload_body"])
        try:
            folder = await run_in_threadpool(_unpack, spool, Path(tmp), svc.limits)
            build = read_build(folder)
            if build["model"]["name"] != model:
                raise ServiceError(400, "model_mismatch", f"the build is of model {build['model']['name']!r}, "
                                   f"not {model!r} as the URL says")  # fmt: skip
            done = await run_in_threadpool(_publish, folder, svc, channel, cloud_url)
        except PackagerError as exc:
            raise _without(as_service_error(exc), Path(tmp)) from None
    svc.view.forget(model)
    return json_response(published_json(done), status=201 if done.changed else 200)


def _without(error: ServiceError, tmp: Path) -> ServiceError:
    """``error`` with the server's temporary folder left out of its message: a client learns which
    file of its upload was wrong, never where the server keeps it."""
    message = error.message
    for shown in {str(tmp.resolve()), str(tmp)}:
        message = message.replace(shown + "/", "").replace(shown, "the upload")
    return ServiceError(error.status, error.code, message, headers=error.headers)


def _publish(folder: Path, svc: Service, channel: str, cloud_url: str | None) -> Published:
    return registry.publish(folder, svc.view.store, channel=channel, cloud_url=cloud_url, keys=svc.keys)


async def _spool(request: Request, out: IO[bytes], limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ServiceError(413, "too_large", f"the upload is over the {limit} byte limit")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, "too_large", f"the upload is over the {limit} byte limit")
        out.write(chunk)
    out.seek(0)


def _unpack(spool: IO[bytes], into: Path, limits: dict[str, int]) -> Path:
    """Unpack the tar into ``into``; the folder holding build.json (the root, or its one folder)."""
    try:
        with tarfile.open(fileobj=spool, mode="r:*") as tar:
            members = tar.getmembers()
            _check_members(members, limits)
            tar.extractall(into, members=members, filter="data")
    except tarfile.FilterError as exc:  # its own text holds the server's path: name the member instead
        raise ServiceError(400, "invalid_upload", f"{exc.tarinfo.name[:120]!r} in the archive is refused: "
                           f"{_REFUSED.get(type(exc).__name__, 'not a plain relative file')}") from None  # fmt: skip
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ServiceError(400, "invalid_upload", f"the body is not a tar of a build folder: {exc}") from exc
    if (into / "build.json").is_file():
        return into
    inner = [p for p in into.iterdir() if p.is_dir()]
    if len(inner) == 1 and (inner[0] / "build.json").is_file():
        return inner[0]
    raise ServiceError(400, "invalid_upload", "the archive has no build.json at its root; "
                       "tar the version folder: tar -C dist/<name>/<version> -cf - .")  # fmt: skip


def _check_members(members: list[tarfile.TarInfo], limits: dict[str, int]) -> None:
    if len(members) > limits["upload_members"]:
        raise ServiceError(400, "invalid_upload", f"the archive has over {limits['upload_members']} entries")
    total = 0
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise ServiceError(400, "invalid_upload", f"{member.name[:120]!r} is not a regular file or folder")
        total += member.size
    if total > limits["upload_unpacked"]:
        raise ServiceError(413, "too_large", f"the archive unpacks to over {limits['upload_unpacked']} bytes")


async def rollout(request: Request) -> Response:
    svc = service(request)
    model, channel = path_name(request, "model", "m"), path_name(request, "channel", "c")
    await _authorize(request, svc, model)
    body = require_object(await read_json(request, svc.limits["json_body"]), "the body")
    version, percent = body.get("version"), body.get("percent", 100)
    if set(body) - {"version", "percent"} or not isinstance(version, str):
        raise ServiceError(400, "bad_request", 'the body must be {"version": "<version>", "percent": 0..100}')
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ServiceError(400, "bad_request", "percent must be an integer from 0 to 100")
    try:
        version = check_name("version", version)
    except InvalidNameError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc
    await _ready_to_sign(svc)
    if await run_in_threadpool(svc.view.version, model, version) is None:
        raise not_found(f"model {model} has no version {version}", "publish it first")
    pointer = await _change(svc, model, lambda: registry.rollout(svc.view.store, model, version, channel=channel,
                                                                  percent=percent, keys=svc.keys))  # fmt: skip
    return json_response(pointer.to_json())


async def rollback(request: Request) -> Response:
    svc = service(request)
    model, channel = path_name(request, "model", "m"), path_name(request, "channel", "c")
    await _authorize(request, svc, model)
    await _ready_to_sign(svc)
    found = await run_in_threadpool(svc.view.channel, model, channel)
    if found is None:
        raise not_found(f"model {model} has no channel {channel}", "publish a version first")
    pointer = await _change(svc, model, lambda: registry.rollback(svc.view.store, model, channel=channel,
                                                                   keys=svc.keys))  # fmt: skip
    return json_response(pointer.to_json())


async def _change(svc: Service, model: str, write: Any) -> Pointer:
    """Run a pointer change; a state that does not allow it (no earlier stable...) is a 409."""
    try:
        pointer: Pointer = await run_in_threadpool(write)
    except UsageError as exc:
        raise ServiceError(409, "invalid_state", exc.message) from exc
    finally:
        svc.view.forget(model)
    return pointer
