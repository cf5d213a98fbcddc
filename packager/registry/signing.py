"""TUF metadata (python-tuf's Metadata API) over a store, and its verification.

The repository uses consistent snapshots: targets and snapshot metadata are written once as
``tuf/<n>.targets.json`` and ``tuf/<n>.snapshot.json`` (create-only), and the one mutable file,
``tuf/timestamp.json``, is replaced last with compare-and-swap. That single write is the commit
point of a publish, rollout or rollback: a crash before it leaves the previous state signed and
served; a crash after it leaves the new state. Mutable TUF targets (channel pointers) are served
from their hash-prefixed immutable copies, as TUF's consistent snapshots name them.

Keys (ed25519, ``securesystemslib``'s CryptoSigner) live in a folder as ``<role>.pem``; the
folder's ``root.json`` is the root a client pins. Only targets, snapshot and timestamp keys are
needed to publish: the root key can be kept offline.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from packager.errors import SigningError, require
from packager.registry.docs import facts
from packager.registry.store import Store

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROOT_KEY = "tuf/root.json"
TIMESTAMP_KEY = "tuf/timestamp.json"
_VERSIONED = re.compile(r"tuf/(\d+)\.(root|targets|snapshot)\.json")

Fetch = Callable[[str], bytes | None]


def _expires(role: str, now: datetime) -> datetime:
    return (now + timedelta(days=int(facts()["expiry_days"][role]))).replace(microsecond=0)


def is_signed(store: Store) -> bool:
    return store.size(ROOT_KEY) is not None


def init_keys(keys_dir: Path, store: Store, now: datetime, existing: Mapping[str, Any]) -> Path:
    """Make the four role keys in ``keys_dir`` and root v1 in the store; sign ``existing`` targets.

    ``existing`` maps target paths already in the store to their TargetFile (an unsigned
    registry becoming signed). Returns the path of the root.json to pin.
    """
    require("tuf", "registry")
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root

    if is_signed(store):
        raise SigningError(f"{store.url} is already signed (it has {ROOT_KEY})",
                           hint="keep using the keys it was made with; pass them with --keys")  # fmt: skip
    if any((keys_dir / f"{role}.pem").exists() for role in ROLES):
        raise SigningError(f"{keys_dir} already holds keys", hint="pick an empty --keys folder")
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    root = Root(expires=_expires("root", now), consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    root_md = Metadata(root)
    root_md.sign(signers["root"])
    root_bytes = root_md.to_bytes()
    keys_dir.mkdir(parents=True, exist_ok=True)
    for role, signer in signers.items():
        _write_private(keys_dir / f"{role}.pem", signer.private_bytes)
    (keys_dir / "root.json").write_bytes(root_bytes)
    store.put_immutable("tuf/1.root.json", root_bytes)
    store.put(ROOT_KEY, root_bytes, if_match=None)  # from here on, writers must sign
    commit(store, load_signers(keys_dir, root_bytes), _empty(root_bytes), existing, now)
    return keys_dir / "root.json"


def _empty(root: bytes) -> RepoState:
    return RepoState(root=root, timestamp_etag=None, targets=None, snapshot_version=0, timestamp_version=0)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_signers(keys_dir: Path, root_bytes: bytes) -> dict[str, Any]:
    """The online role signers from ``keys_dir``, checked against the registry's root."""
    require("tuf", "registry")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner, SSlibKey
    from tuf.api.metadata import Metadata, Root

    root = Metadata[Root].from_bytes(root_bytes).signed
    signers = {}
    for role in ONLINE_ROLES:
        path = keys_dir / f"{role}.pem"
        try:
            private = load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise SigningError(f"cannot read the {role} key {path}: {exc}") from exc
        public = SSlibKey.from_crypto(private.public_key())  # type: ignore[arg-type]
        if public.keyid not in root.roles[role].keyids:
            raise SigningError(f"the {role} key in {keys_dir} is not the one this registry's root trusts",
                               hint="pass the --keys folder this registry was initialised with")  # fmt: skip
        signers[role] = CryptoSigner(private, root.get_key(public.keyid))  # type: ignore[arg-type]
    return signers


@dataclass(frozen=True, kw_only=True)
class RepoState:
    """The signed state a writer starts from; ``timestamp_etag`` is what its commit swaps."""

    root: bytes
    timestamp_etag: str | None
    targets: Any  # tuf Targets, or None before the first commit
    snapshot_version: int
    timestamp_version: int

    def target(self, path: str) -> Any:
        return None if self.targets is None else self.targets.targets.get(path)


def read_state(store: Store) -> RepoState | None:
    """The current signed state of a registry, or None when it is not signed."""
    from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

    root = store.get(ROOT_KEY)
    if root is None:
        return None
    timestamp = store.get(TIMESTAMP_KEY)
    if timestamp is None:  # keys init stopped before its first commit
        return _empty(root.data)
    ts = Metadata[Timestamp].from_bytes(timestamp.data).signed
    snapshot = Metadata[Snapshot].from_bytes(_must(store, f"tuf/{ts.snapshot_meta.version}.snapshot.json")).signed
    targets_version = snapshot.meta["targets.json"].version
    targets = Metadata[Targets].from_bytes(_must(store, f"tuf/{targets_version}.targets.json")).signed
    return RepoState(root=root.data, timestamp_etag=timestamp.etag, targets=targets,
                     snapshot_version=snapshot.version, timestamp_version=ts.version)  # fmt: skip


def _must(store: Store, key: str) -> bytes:
    blob = store.get(key)
    if blob is None:
        raise SigningError(f"{store.url} is missing {key}, which its signed metadata refers to")
    return blob.data


def target_file(path: str, data: bytes) -> Any:
    from tuf.api.metadata import TargetFile

    return TargetFile(length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()}, path=path)


def artifact_target(path: str, sha256: str, length: int) -> Any:
    from tuf.api.metadata import TargetFile

    return TargetFile(length=length, hashes={"sha256": sha256}, path=path)


def commit(store: Store, signers: Mapping[str, Any], state: RepoState, add: Mapping[str, Any], now: datetime) -> int:
    """Sign a new targets (state's plus ``add``), snapshot and timestamp; swap the timestamp in.

    New targets/snapshot versions skip any left behind by a writer that crashed. Raises
    ConflictError when another writer committed since ``state`` was read. Returns the new
    timestamp version.
    """
    from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

    versions = _existing_versions(store)
    targets = Targets(version=max(versions["targets"], state.targets.version if state.targets else 0) + 1,
                      expires=_expires("targets", now),
                      targets={**(state.targets.targets if state.targets else {}), **add})  # fmt: skip
    targets_bytes = _signed(Metadata(targets), signers["targets"])
    store.put_immutable(f"tuf/{targets.version}.targets.json", targets_bytes)
    snapshot = Snapshot(version=max(versions["snapshot"], state.snapshot_version) + 1,
                        expires=_expires("snapshot", now),
                        meta={"targets.json": _meta(targets.version, targets_bytes)})  # fmt: skip
    snapshot_bytes = _signed(Metadata(snapshot), signers["snapshot"])
    store.put_immutable(f"tuf/{snapshot.version}.snapshot.json", snapshot_bytes)
    timestamp = Timestamp(version=state.timestamp_version + 1, expires=_expires("timestamp", now),
                          snapshot_meta=_meta(snapshot.version, snapshot_bytes))  # fmt: skip
    store.put(TIMESTAMP_KEY, _signed(Metadata(timestamp), signers["timestamp"]), if_match=state.timestamp_etag)
    return timestamp.version


def _signed(md: Any, signer: Any) -> bytes:
    md.sign(signer)
    data: bytes = md.to_bytes()
    return data


def _meta(version: int, data: bytes) -> Any:
    from tuf.api.metadata import MetaFile

    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


def _existing_versions(store: Store) -> dict[str, int]:
    found = {"root": 0, "targets": 0, "snapshot": 0}
    for key in store.list("tuf/"):
        match = _VERSIONED.fullmatch(key)
        if match:
            found[match.group(2)] = max(found[match.group(2)], int(match.group(1)))
    return found


def expires_at(store: Store) -> datetime | None:
    """When the registry's signed state expires for clients (its timestamp's expiry), or None
    when the registry is not signed or has no timestamp yet."""
    from tuf.api.metadata import Metadata, Timestamp

    timestamp = store.get(TIMESTAMP_KEY)
    if timestamp is None:
        return None
    expires: datetime = Metadata[Timestamp].from_bytes(timestamp.data).signed.expires
    return expires


def refresh(store: Store, keys_dir: Path, now: datetime, *, attempts: int = 5) -> int:
    """Re-sign the current targets, snapshot and timestamp with new versions and expiry dates.

    Nothing a client is offered changes; only the dates move, so a registry that nobody
    publishes to keeps verifying. Returns the new timestamp version.
    """
    from packager.errors import ConflictError

    for _ in range(attempts):
        state = read_state(store)
        if state is None:
            raise SigningError(f"{store.url} is not signed: there is nothing to refresh",
                               hint="sign it first with `packager keys init`")  # fmt: skip
        try:
            return commit(store, load_signers(keys_dir, state.root), state, {}, now)
        except ConflictError:
            continue
    raise SigningError(f"{store.url}: other writers kept changing the registry; refresh gave up")


def needs_refresh(store: Store, now: datetime) -> bool:
    """True when less than half of the timestamp's lifetime is left."""
    expires = expires_at(store)
    if expires is None:
        return False
    lifetime = timedelta(days=int(facts()["expiry_days"]["timestamp"]))
    return expires - now < lifetime / 2
