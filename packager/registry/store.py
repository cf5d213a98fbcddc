"""Stores: the registry layout over a local folder or an S3 bucket.

Two kinds of write, nothing else: ``put_immutable`` (create-only; writing the same bytes again
is a no-op, other bytes are a ConflictError) for artifacts, version documents and signed
metadata; ``put`` with a compare-and-swap precondition for the few mutable keys (channel
pointers, ``tuf/timestamp.json``, ``tuf/root.json``). A ConflictError from ``put`` means another
writer got there first: read again and retry. Servers stay stateless over a store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from packager.errors import ConflictError, RegistryError, UsageError
from packager.registry.names import check_key

Data = bytes | BinaryIO
LOCK_NAME = ".lock"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True, kw_only=True)
class Blob:
    """An object's bytes and its etag (changes whenever the bytes do)."""

    data: bytes
    etag: str


class Store(Protocol):
    """What the registry needs from storage. Keys are checked by ``names.check_key``."""

    url: str

    def get(self, key: str) -> Blob | None:
        """The object at ``key`` with its etag, or None when there is none."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end); RegistryError when missing."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted."""
        ...

    def put_immutable(self, key: str, data: Data) -> bool:
        """Create ``key``; True when written, False when it already held these bytes.

        Raises ConflictError when it holds other bytes.
        """
        ...

    def put(self, key: str, data: bytes, *, if_match: str | None) -> str:
        """Replace ``key`` if its etag is ``if_match`` (None: only if it does not exist).

        Returns the new etag; raises ConflictError when the precondition does not hold.
        """
        ...


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """A store for ``url``: a local folder path or ``s3://bucket/prefix``.

    The S3 endpoint is ``endpoint_url``, else ``PACKAGER_S3_ENDPOINT_URL``, else boto3's own
    settings (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, then AWS).
    """
    if url.startswith("s3://"):
        from packager.registry.s3 import S3Store

        return S3Store.from_url(url, endpoint_url=endpoint_url or os.environ.get("PACKAGER_S3_ENDPOINT_URL"))
    if url.startswith(("http://", "https://")):
        raise UsageError(
            f"{url} is a server, not a store: this command reads or writes the store itself",
            hint="pass the registry's folder or s3://bucket/prefix the server reads from "
            "(publish, rollout and rollback also take the server URL with --token)",
        )
    if "://" in url:
        raise UsageError(f"unknown registry URL scheme in {url!r}", hint="use a folder path or s3://bucket/prefix")
    return LocalStore(Path(url))


def etag_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore:
    """A registry in a local folder.

    Every write goes to a temporary file in the same folder, is fsynced, then moved into place
    (``os.link`` for create-only, ``os.replace`` for compare-and-swap) and the folder is fsynced,
    so a crash leaves either the old object or the new one. Compare-and-swap holds an exclusive
    ``fcntl`` lock on ``<root>/.lock``, so writers in other processes serialize. Etags are the
    sha256 of the bytes.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(self, key: str) -> Blob | None:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RegistryError(f"cannot read {key} in {self.root}: {exc.strerror or exc}") from exc
        return Blob(data=data, etag=etag_of(data))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(max(length, 0))
        except FileNotFoundError as exc:
            raise RegistryError(f"{key} is not in {self.root}") from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith((TMP_PREFIX, LOCK_NAME)):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def put_immutable(self, key: str, data: Data) -> bool:
        final = self._path(key)
        tmp = self._write_temp(final, data)
        try:
            os.link(tmp, final)
        except FileExistsError:
            same = _same_file(tmp, final)
            if not same:
                raise ConflictError(f"{key} already exists in {self.root} with other bytes", hint=_IMMUTABLE) from None
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return True

    def put(self, key: str, data: bytes, *, if_match: str | None) -> str:
        final = self._path(key)
        with self._lock():
            current = self.get(key)
            if (current.etag if current else None) != if_match:
                raise ConflictError(f"{key} changed in {self.root} since it was read")
            tmp = self._write_temp(final, data)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        return etag_of(data)

    def _write_temp(self, final: Path, data: Data) -> Path:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=final.parent)
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes):
                    handle.write(data)
                else:
                    shutil.copyfileobj(data, handle, 1 << 20)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise RegistryError(f"cannot write under {self.root}: {exc.strerror or exc}") from exc
        return Path(name)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = (self.root / LOCK_NAME).open("a")
        except OSError as exc:
            raise RegistryError(f"cannot lock {self.root}: {exc.strerror or exc}") from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_IMMUTABLE = "published objects never change; publish a new --version instead"


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
