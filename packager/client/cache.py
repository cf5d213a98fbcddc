"""The device's cache: content-addressed artifacts, partial downloads, the device id, the
last-known-good install of each model, and the TUF timestamp the device trusted last.

Layout (every write is write-then-rename, so a crash leaves either the old file or the new)::

    <cache>/device_id                               opaque id, made once (sticky rollout cohort)
    <cache>/artifacts/sha256/<hex>                  installed bytes, verified, read-only
    <cache>/artifacts/<hex>.part                    a download in progress (resumed from its size)
    <cache>/last-known-good/<model>.<channel>.json  the last resolution that installed (and loaded)
    <cache>/tuf/<root-sha256[:16]>/timestamp.json   the newest timestamp metadata verified
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packager.errors import ClientError
from packager.registry.names import check_name, check_sha256


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Cache:
    """One cache folder; safe to share between processes (installs are atomic renames)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            (self.root / "artifacts" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClientError(f"cannot create the cache folder {self.root}: {exc}",
                              hint="pass a cache_dir (--cache) you can write to") from exc  # fmt: skip

    def device_id(self) -> str:
        """This device's id, made on first use and kept in the cache."""
        path = self.root / "device_id"
        if path.is_file():
            text = path.read_text().strip()
            if text:
                return text
        write_atomic(path, uuid.uuid4().hex.encode())
        return path.read_text().strip()

    def artifact(self, sha256: str) -> Path:
        return self.root / "artifacts" / "sha256" / check_sha256(sha256)

    def part(self, sha256: str) -> Path:
        return self.root / "artifacts" / f"{check_sha256(sha256)}.part"

    def installed(self, sha256: str, size: int) -> Path | None:
        """The installed artifact when it is there with the expected size (it was verified then)."""
        path = self.artifact(sha256)
        try:
            return path if path.stat().st_size == size else None
        except FileNotFoundError:
            return None

    def install(self, sha256: str, part: Path) -> Path:
        """Move a verified .part into place (a rename: readers never see half a file)."""
        path = self.artifact(sha256)
        os.chmod(part, 0o444)
        os.replace(part, path)
        return path

    def _lkg(self, model: str, channel: str) -> Path:
        return self.root / "last-known-good" / f"{check_name('model', model)}.{check_name('channel', channel)}.json"

    def save_last_known_good(self, model: str, channel: str, record: Mapping[str, Any]) -> None:
        write_atomic(self._lkg(model, channel), json.dumps(record, indent=1, sort_keys=True).encode())

    def last_known_good(self, model: str, channel: str) -> dict[str, Any] | None:
        """The record of the last good install, when its files are all still in the cache."""
        try:
            record: dict[str, Any] = json.loads(self._lkg(model, channel).read_text())
        except (OSError, ValueError):
            return None
        files = record.get("variant", {}).get("needed", [])
        if not files or any(self.installed(f["sha256"], f["bytes"]) is None for f in files):
            return None
        return record

    def _timestamp(self, root: bytes) -> Path:
        return self.root / "tuf" / hashlib.sha256(root).hexdigest()[:16] / "timestamp.json"

    def trusted_timestamp(self, root: bytes) -> bytes | None:
        try:
            return self._timestamp(root).read_bytes()
        except FileNotFoundError:
            return None

    def trust_timestamp(self, root: bytes, data: bytes) -> None:
        write_atomic(self._timestamp(root), data)
