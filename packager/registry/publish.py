"""Publish a build folder into a registry; roll versions out and back.

Write order, each write atomic, so that a crash at any point leaves the registry valid and the
previous state served: (1) every file of every publishable variant as a content-addressed
artifact, (2) the immutable version document, (3) on a signed registry the pointer's copy and
TUF targets/snapshot, then the timestamp (the commit), (4) the plain channel pointer. A crash
leaves at most unreferenced artifacts, documents or metadata versions, which a rerun reuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from packager.errors import ConflictError, PublishError
from packager.registry import channels, signing
from packager.registry.docs import Pointer, canonical_json, same_content, version_document
from packager.registry.names import artifact_key, check_name, check_sha256, version_key
from packager.registry.store import Store

_COPY = re.compile(r"[0-9a-f]{64}\..+")
_SPOOL = 64 << 20  # artifacts up to this size are verified in memory, larger ones in a temp file


@dataclass(frozen=True, kw_only=True)
class Published:
    model: str
    version: str
    channel: str
    variants: tuple[str, ...]
    withheld: tuple[str, ...]
    uploaded: int  # artifacts written (the rest were already there)
    pointer: Pointer
    changed: bool = True  # False: this very build was published already, and nothing was written


def read_build(folder: Path) -> dict[str, Any]:
    path = folder / "build.json"
    try:
        build: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PublishError(f"cannot read {path}: {exc}") from exc
    if build.get("schema") != 1 or not isinstance(build.get("variants"), list) or "model" not in build:
        raise PublishError(f"{path} is not a schema 1 build.json")
    check_name("model", build["model"].get("name", ""))
    check_name("version", str(build["model"].get("version", "")))
    return build


def publish(folder: Path, store: Store, *, channel: str = "stable", cloud_url: str | None = None,
            keys: Path | None = None, now: datetime | None = None) -> Published:  # fmt: skip
    """Upload one build (``folder`` holds its build.json) and point ``channel`` at it."""
    now = now or datetime.now(UTC)
    check_name("channel", channel)
    build = read_build(folder)
    model, version = build["model"]["name"], str(build["model"]["version"])
    doc = version_document(build, cloud_url=cloud_url, published=now)
    if not doc["variants"]:
        raise PublishError(f"{model} {version} has no variant to publish: every one failed validation",
                           hint="fix the conversion (see report.html), rebuild, then publish")  # fmt: skip
    if signing.is_signed(store) and keys is None:
        channels.signers_for(store, signing.read_state(store), keys)  # refuse before uploading anything
    files = {f["sha256"]: f for v in doc["variants"] for f in v["files"]}
    uploaded = sum(_upload(store, folder, entry) for entry in files.values())
    doc_bytes = _write_version(store, model, version, doc)
    extra = {artifact_key(sha): signing.artifact_target(artifact_key(sha), sha, f["bytes"]) for sha, f in files.items()}
    extra[version_key(model, version)] = signing.target_file(version_key(model, version), doc_bytes)
    pointer, changed = channels.apply(store, model, channel, channels.after_publish(version, now), keys=keys,
                                      extra_targets=extra if signing.is_signed(store) else None, now=now)  # fmt: skip
    return Published(model=model, version=version, channel=channel, variants=tuple(v["id"] for v in doc["variants"]),
                     withheld=tuple(w["id"] for w in doc["withheld"]), uploaded=uploaded, pointer=pointer,
                     changed=changed or uploaded > 0)  # fmt: skip


def _upload(store: Store, folder: Path, entry: Mapping[str, Any]) -> bool:
    """Copy one file into the store, checking its bytes against build.json as they are read."""
    sha = check_sha256(entry["sha256"])
    path = folder / entry["path"]
    if store.size(artifact_key(sha)) == entry["bytes"]:
        return False  # content-addressed: already there (its hash is checked by `verify`)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise PublishError(f"build.json names a file outside the build folder: {entry['path']!r}")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
        _copy_verified(path, entry, spool)
        spool.seek(0)
        return store.put_immutable(artifact_key(sha), spool)  # type: ignore[arg-type]


def _copy_verified(path: Path, entry: Mapping[str, Any], out: IO[bytes]) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
        raise PublishError(f"{entry['path']} does not match build.json: {size} bytes, sha256 "
                           f"{digest.hexdigest()[:12]}… (recorded {entry['bytes']} bytes, {entry['sha256'][:12]}…)",
                           hint="the build folder changed after the build; rebuild it")  # fmt: skip


def _write_version(store: Store, model: str, version: str, doc: dict[str, Any]) -> bytes:
    """Write the version document once; a rerun of the same build reuses the first one."""
    key = version_key(model, version)
    existing = store.get(key)
    if existing is not None:
        if not same_content(json.loads(existing.data), doc):
            raise ConflictError(f"{model} version {version} is already published with other content",
                                hint="versions are immutable; build with a new --version and publish that")  # fmt: skip
        return existing.data
    data = canonical_json(doc)
    try:
        store.put_immutable(key, data)
    except ConflictError:  # a concurrent publish of the same version won
        return _write_version(store, model, version, doc)
    return data


def rollout(store: Store, model: str, version: str, *, channel: str = "stable", percent: int,
            keys: Path | None = None, now: datetime | None = None,
            plan: Mapping[str, Any] | None = None) -> Pointer:  # fmt: skip
    """Offer ``version`` to ``percent`` of the channel's devices (100: make it stable); with a
    gated rollout's ``plan``, the fleet controller moves it on from there."""
    now = now or datetime.now(UTC)
    check_name("channel", channel)
    channels.require_version(store, model, version)
    change = channels.rollout_change(version, percent, now, plan)
    return channels.update(store, model, channel, change, keys=keys, now=now)


def shadow(store: Store, model: str, settings: Mapping[str, Any] | None, *, channel: str = "stable",
           keys: Path | None = None, now: datetime | None = None) -> Pointer:  # fmt: skip
    """Run ``settings["version"]`` in shadow beside stable on a share of devices; None ends it."""
    now = now or datetime.now(UTC)
    check_name("channel", channel)
    if settings is not None:
        channels.require_version(store, model, settings["version"])
    return channels.update(store, model, channel, channels.shadow_change(settings, now), keys=keys, now=now)


def experiment(store: Store, model: str, settings: Mapping[str, Any] | None, *, channel: str = "stable",
               keys: Path | None = None, now: datetime | None = None) -> Pointer:  # fmt: skip
    """Start an experiment over the arms of ``settings`` (each version published); None ends it."""
    now = now or datetime.now(UTC)
    check_name("channel", channel)
    for arm in (settings or {}).get("arms", ()):
        channels.require_version(store, model, str(arm).split(":", 1)[0])
    return channels.update(store, model, channel, channels.experiment_change(settings, now), keys=keys, now=now)


def rollback(store: Store, model: str, *, channel: str = "stable", keys: Path | None = None,
             now: datetime | None = None) -> Pointer:  # fmt: skip
    """A new pointer generation back at the previous state (nothing is deleted or downgraded)."""
    now = now or datetime.now(UTC)
    check_name("model", model)
    check_name("channel", channel)
    return channels.update(store, model, channel, channels.rollback_change(now), keys=keys, now=now)


def init_keys(keys_dir: Path, store: Store, now: datetime | None = None) -> Path:
    """``packager keys init``: keys in ``keys_dir``, root in the store, existing content signed."""
    existing: dict[str, Any] = {}
    for key in store.list("artifacts/sha256/"):
        blob = store.get(key)
        if blob is not None and hashlib.sha256(blob.data).hexdigest() == key.rsplit("/", 1)[1]:
            existing[key] = signing.target_file(key, blob.data)
    for key in store.list("models/"):
        parts = key.split("/")
        blob = store.get(key)
        if blob is None or len(parts) != 4 or parts[2] not in {"versions", "channels"}:
            continue
        if parts[2] == "channels" and not _COPY.fullmatch(parts[3]):  # a plain pointer, not a copy
            pointer = channels.Pointer.from_json(json.loads(blob.data))
            data = canonical_json(pointer.to_json())
            store.put_immutable(channels.pointer_copy_key(pointer.model, pointer.channel,
                                                          hashlib.sha256(data).hexdigest()), data)  # fmt: skip
            existing[key] = signing.target_file(key, data)
        elif parts[2] == "versions":
            existing[key] = signing.target_file(key, blob.data)
    return signing.init_keys(keys_dir, store, now or datetime.now(UTC), existing)
