"""Publish, roll out and roll back through a manifest server's write API (``--registry https://…``).

The server holds the signing keys and runs the same ``packager.registry.publish`` functions; this
side sends the build folder as a tar (build.json and the files of its publishable variants,
sorted, fixed timestamps) and a bearer token, and turns the server's JSON errors back into the
registry's error classes so the CLI prints the same one-line errors for both kinds of registry.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from packager.errors import ConflictError, PublishError, RegistryError, UsageError, require
from packager.registry.docs import Pointer
from packager.registry.names import check_name
from packager.registry.publish import Published, read_build

_CHUNK = 1 << 20
_TIMEOUT = 300.0


def is_server(registry: str) -> bool:
    return registry.startswith(("http://", "https://"))


def build_tar(folder: Path, out: IO[bytes]) -> None:
    """Write build.json and every file of the build's publishable variants as a tar to ``out``."""
    build = read_build(folder)
    paths = {"build.json"} | {f["path"] for v in build["variants"] if v["fidelity"]["status"] != "failed"
                              for f in v["files"]}  # fmt: skip
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(paths):
            path = folder / rel
            if not path.resolve().is_relative_to(folder.resolve()):
                raise PublishError(f"build.json names a file outside the build folder: {rel!r}")
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with path.open("rb") as handle:
                tar.addfile(info, handle)


class Server:
    """A manifest server's write API at ``url`` with a bearer ``token``."""

    def __init__(self, url: str, token: str | None, *, transport: Any = None) -> None:
        if not token:
            raise UsageError(f"writing to {url} needs a token",
                             hint="pass --token T (or PACKAGER_TOKEN); `packager token add` makes one")  # fmt: skip
        require("httpx", "server")
        import httpx

        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                   timeout=_TIMEOUT, transport=transport)  # fmt: skip

    def publish(self, folder: Path, *, channel: str, cloud_url: str | None) -> Published:
        model = check_name("model", read_build(folder)["model"]["name"])
        params = {"channel": channel, **({"cloud_url": cloud_url} if cloud_url else {})}
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
            build_tar(folder, spool)
            size = spool.tell()
            spool.seek(0)
            headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
            doc = self._call("POST", f"/v1/models/{model}/versions", params=params, headers=headers,
                             content=_read_chunks(spool))  # fmt: skip
        return Published(model=doc["model"], version=doc["version"], channel=doc["channel"],
                         variants=tuple(doc["variants"]), withheld=tuple(doc["withheld"]),
                         uploaded=int(doc["uploaded"]), pointer=Pointer.from_json(doc["pointer"]),
                         changed=bool(doc.get("changed", True)))  # fmt: skip

    def rollout(self, model: str, version: str, *, channel: str, percent: int) -> Pointer:
        path = f"/v1/models/{check_name('model', model)}/channels/{check_name('channel', channel)}"
        return Pointer.from_json(self._call("PUT", path, json={"version": version, "percent": percent}))

    def rollback(self, model: str, *, channel: str) -> Pointer:
        path = f"/v1/models/{check_name('model', model)}/channels/{check_name('channel', channel)}/rollback"
        return Pointer.from_json(self._call("POST", path))

    def fleet(self, model: str, *, window: str) -> Any:
        """The server's fleet document of ``model`` (GET /v1/models/{m}/fleet)."""
        return self._call("GET", f"/v1/models/{check_name('model', model)}/fleet", params={"window": window})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}",
                                hint="check --registry and that `packager serve` runs there") from exc  # fmt: skip
        if response.is_success:
            return response.json()
        raise _error(self.url, response.status_code, _message(response.content))


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def _message(body: bytes) -> Mapping[str, str]:
    try:
        error = json.loads(body)["error"]
        return {"code": str(error["code"]), "message": str(error["message"])}
    except (ValueError, KeyError, TypeError):
        return {"code": "http_error", "message": body[:200].decode(errors="replace")}


def _error(url: str, status: int, error: Mapping[str, str]) -> RegistryError | UsageError:
    """The server's error as the registry's; its message already carries the server's hint."""
    text = f"{url}: {status} {error['code']}: {error['message']}"
    if status in (401, 403):
        return RegistryError(text, hint="pass a token made for this model with `packager token add` (--token T)")
    kinds: dict[int, type[RegistryError] | type[UsageError]] = {409: ConflictError, 422: PublishError,
                                                                400: UsageError, 404: RegistryError}  # fmt: skip
    if status in kinds:
        return kinds[status](text, hint="")
    return RegistryError(text, hint="see the server's log")
