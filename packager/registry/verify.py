"""What a client does with a pinned root: verify the registry's TUF metadata and its bytes.

Uses python-tuf's ``TrustedMetadataSet`` (the state machine inside ``tuf.ngclient.Updater``):
root chain, then timestamp, snapshot and targets, each checked for signatures, version rollback
against what the client trusted before, hashes and lengths, and expiry (a frozen registry).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packager.errors import SigningError, require
from packager.registry.names import consistent_key
from packager.registry.signing import TIMESTAMP_KEY, Fetch
from packager.registry.store import Store


class VerificationError(SigningError):
    """Signed metadata or bytes that a client must reject."""

    hint = "the registry was tampered with, replayed or frozen; do not use what it served"


@dataclass(frozen=True, kw_only=True)
class Verified:
    """Metadata that verified: the signed targets, and the timestamp to trust next time."""

    targets: Mapping[str, Any]
    timestamp: bytes
    timestamp_version: int

    def sha256(self, path: str) -> str:
        target = self.targets.get(path)
        if target is None:
            raise VerificationError(f"{path} is not signed by the registry's targets metadata")
        return str(target.hashes["sha256"])

    def key(self, path: str) -> str:
        """The store key holding the signed bytes of ``path``."""
        return consistent_key(path, self.sha256(path))

    def check(self, path: str, data: bytes) -> None:
        """Raise VerificationError unless ``data`` is the signed content of ``path``."""
        from tuf.api import exceptions

        self.sha256(path)
        try:
            self.targets[path].verify_length_and_hashes(data)
        except exceptions.LengthOrHashMismatchError as exc:
            raise VerificationError(f"{path}: {exc}") from exc


def verify_metadata(fetch: Fetch, root: bytes, *, trusted_timestamp: bytes | None = None,
                    now: datetime | None = None) -> Verified:  # fmt: skip
    """Verify the registry's metadata from a pinned ``root``.

    ``trusted_timestamp`` is the timestamp a client verified last time: a served timestamp or
    snapshot older than it is a rollback attack and is rejected. ``now`` defaults to the clock.
    """
    require("tuf", "registry")
    from tuf.api import exceptions
    from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
    from tuf.ngclient.config import EnvelopeType

    try:
        trusted = TrustedMetadataSet(root, EnvelopeType.METADATA)
        if now is not None:
            trusted.reference_time = now
        while (newer := fetch(f"tuf/{trusted.root.version + 1}.root.json")) is not None:
            trusted.update_root(newer)
        if trusted_timestamp is not None:  # an expired one still guards against rollback
            with contextlib.suppress(exceptions.ExpiredMetadataError):
                trusted.update_timestamp(trusted_timestamp)
        timestamp = _fetch(fetch, TIMESTAMP_KEY)
        with contextlib.suppress(exceptions.EqualVersionNumberError):
            trusted.update_timestamp(timestamp)
        trusted.update_snapshot(_fetch(fetch, f"tuf/{trusted.timestamp.snapshot_meta.version}.snapshot.json"))
        trusted.update_targets(_fetch(fetch, f"tuf/{trusted.snapshot.meta['targets.json'].version}.targets.json"))
    except (exceptions.RepositoryError, ValueError) as exc:
        raise VerificationError(f"signed metadata rejected: {type(exc).__name__}: {exc}") from exc
    return Verified(targets=dict(trusted.targets.targets), timestamp=timestamp,
                    timestamp_version=trusted.timestamp.version)  # fmt: skip


def _fetch(fetch: Fetch, key: str) -> bytes:
    data = fetch(key)
    if data is None:
        raise VerificationError(f"the registry has no {key}")
    return data


def store_fetch(store: Store) -> Fetch:
    def fetch(key: str) -> bytes | None:
        blob = store.get(key)
        return None if blob is None else blob.data

    return fetch


@dataclass(kw_only=True)
class Report:
    """What ``verify_store`` checked."""

    timestamp_version: int = 0
    targets: int = 0
    versions: list[str] = field(default_factory=list)
    lagging_pointers: list[str] = field(default_factory=list)


def verify_store(store: Store, root: bytes, *, now: datetime | None = None) -> Report:
    """Verify everything a registry signs, every artifact its version documents name, and
    that each plain channel pointer is the signed one or an older generation of it (a pointer
    mirror may lag after a crash; the next write brings it up to date)."""
    verified = verify_metadata(store_fetch(store), root, now=now)
    report = Report(timestamp_version=verified.timestamp_version, targets=len(verified.targets))
    for path in sorted(verified.targets):
        data = _fetch(store_fetch(store), verified.key(path))
        verified.check(path, data)
        parts = path.split("/")
        if parts[0] == "models" and parts[2] == "versions":
            _check_version_doc(verified, path, data)
            report.versions.append(path)
        elif parts[0] == "models" and parts[2] == "channels" and _pointer_lags(store, path, data):
            report.lagging_pointers.append(path)
    return report


def _check_version_doc(verified: Verified, path: str, data: bytes) -> None:
    doc = json.loads(data)
    for variant in doc["variants"]:
        for entry in variant["files"]:
            if verified.sha256(f"artifacts/sha256/{entry['sha256']}") != entry["sha256"]:
                raise VerificationError(f"{path}: {entry['path']} is not signed as its artifact")
            if verified.targets[f"artifacts/sha256/{entry['sha256']}"].length != entry["bytes"]:
                raise VerificationError(f"{path}: {entry['path']} has another length than its artifact")


def _pointer_lags(store: Store, path: str, signed: bytes) -> bool:
    plain = store.get(path)
    if plain is None:
        return True
    if plain.data == signed:
        return False
    if json.loads(plain.data)["generation"] >= json.loads(signed)["generation"]:
        raise VerificationError(f"{path} is ahead of or beside its signed version")
    return True
