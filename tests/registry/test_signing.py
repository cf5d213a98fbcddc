"""TUF signing of a registry, and what a client with a pinned root rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from registry_helpers import copy_build

from packager.errors import SigningError
from packager.registry.publish import init_keys, publish, rollback, rollout
from packager.registry.store import LocalStore
from packager.registry.verify import VerificationError, store_fetch, verify_metadata, verify_store

NOW = datetime.now(UTC)


@pytest.fixture
def signed(built_mlp: Path, tmp_path: Path) -> tuple[LocalStore, Path, bytes]:
    """A signed registry holding version 1 of the mlp build."""
    store = LocalStore(tmp_path / "reg")
    root = init_keys(tmp_path / "keys", store)
    publish(built_mlp, store, keys=tmp_path / "keys")
    return store, tmp_path / "keys", root.read_bytes()


def test_keys_init_writes_private_keys_and_the_root_to_pin(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    root = init_keys(tmp_path / "keys", store)
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "root.json",
        "root.pem",
        "snapshot.pem",
        "targets.pem",
        "timestamp.pem",
    ]
    assert all((tmp_path / "keys" / f"{r}.pem").stat().st_mode & 0o077 == 0 for r in ("root", "targets"))
    assert root.read_bytes() == store.get("tuf/1.root.json").data  # type: ignore[union-attr]
    assert verify_store(store, root.read_bytes()).targets == 0
    with pytest.raises(SigningError, match="already signed"):
        init_keys(tmp_path / "keys2", store)


def test_keys_init_signs_what_an_unsigned_registry_holds(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store)
    root = init_keys(tmp_path / "keys", store)
    report = verify_store(store, root.read_bytes())
    assert report.versions == ["models/mlp/versions/1.json"] and not report.lagging_pointers


def test_signed_publish_rollout_rollback_each_verify(
    signed: tuple[LocalStore, Path, bytes], built_mlp: Path, tmp_path: Path
) -> None:
    store, keys, root = signed
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=keys)
    versions = [verify_store(store, root).timestamp_version]
    rollout(store, "mlp", "2", percent=25, keys=keys)
    versions.append(verify_store(store, root).timestamp_version)
    rollback(store, "mlp", keys=keys)
    report = verify_store(store, root)
    assert [*versions, report.timestamp_version] == [3, 4, 5]
    pointer = json.loads(store.get("models/mlp/channels/stable.json").data)  # type: ignore[union-attr]
    assert (pointer["stable"], pointer["candidate"], pointer["generation"]) == ("1", None, 4)


def test_signed_registry_refuses_changes_without_its_keys(
    signed: tuple[LocalStore, Path, bytes], built_mlp: Path, tmp_path: Path
) -> None:
    store, _, _ = signed
    before = store.list("")
    with pytest.raises(SigningError, match="needs its signing keys"):
        publish(copy_build(built_mlp, tmp_path / "dist", "2"), store)
    init_keys(tmp_path / "other-keys", LocalStore(tmp_path / "other"))
    with pytest.raises(SigningError, match="not the one this registry's root trusts"):
        rollback(store, "mlp", keys=tmp_path / "other-keys")
    assert store.list("") == before


def test_verify_rejects_a_tampered_artifact(signed: tuple[LocalStore, Path, bytes]) -> None:
    store, _, root = signed
    key = store.list("artifacts/")[0]
    path = store.root / key
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="artifacts/sha256"):
        verify_store(store, root)


def test_verify_rejects_a_tampered_version_document(signed: tuple[LocalStore, Path, bytes]) -> None:
    store, _, root = signed
    path = store.root / "models/mlp/versions/1.json"
    path.write_bytes(path.read_bytes().replace(b'"verified"', b'"verifieD"', 1))
    verified = verify_metadata(store_fetch(store), root)
    with pytest.raises(VerificationError):
        verified.check("models/mlp/versions/1.json", path.read_bytes())


def test_verify_rejects_tampered_metadata(signed: tuple[LocalStore, Path, bytes]) -> None:
    store, _, root = signed
    path = store.root / "tuf/timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a forger extends expiry without the key
    path.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="signed metadata rejected"):
        verify_metadata(store_fetch(store), root)


def test_verify_rejects_replayed_older_metadata(
    signed: tuple[LocalStore, Path, bytes], built_mlp: Path, tmp_path: Path
) -> None:
    store, keys, root = signed
    old_timestamp = store.get("tuf/timestamp.json").data  # type: ignore[union-attr]
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=keys)
    seen = verify_metadata(store_fetch(store), root)  # the client saw the newer state
    (store.root / "tuf/timestamp.json").write_bytes(old_timestamp)  # an attacker serves the old one
    with pytest.raises(VerificationError, match="BadVersionNumberError"):
        verify_metadata(store_fetch(store), root, trusted_timestamp=seen.timestamp)


def test_verify_rejects_frozen_metadata(signed: tuple[LocalStore, Path, bytes]) -> None:
    store, _, root = signed
    verify_metadata(store_fetch(store), root, now=NOW + timedelta(days=6))
    with pytest.raises(VerificationError, match="ExpiredMetadataError"):
        verify_metadata(store_fetch(store), root, now=NOW + timedelta(days=8))  # timestamp lasts 7 days


def test_verify_rejects_metadata_signed_by_another_root(signed: tuple[LocalStore, Path, bytes], tmp_path: Path) -> None:
    store, _, _ = signed
    other = init_keys(tmp_path / "other-keys", LocalStore(tmp_path / "other")).read_bytes()
    with pytest.raises(VerificationError):
        verify_metadata(store_fetch(store), other)


def test_refresh_moves_expiry_and_changes_no_target(signed: tuple[LocalStore, Path, bytes]) -> None:
    from packager.registry.signing import expires_at, needs_refresh, read_state, refresh

    store, keys, root = signed
    before = read_state(store)
    assert not needs_refresh(store, NOW) and needs_refresh(store, NOW + timedelta(days=4))
    refresh(store, keys, NOW + timedelta(days=5))
    after = read_state(store)
    assert after.targets.targets == before.targets.targets  # type: ignore[union-attr]
    assert after.timestamp_version == before.timestamp_version + 1  # type: ignore[union-attr]
    assert expires_at(store) > NOW + timedelta(days=11)  # type: ignore[operator]
    # Without the refresh this is frozen metadata (the test above); with it, it verifies.
    assert verify_store(store, root, now=NOW + timedelta(days=10)).timestamp_version == after.timestamp_version


def test_refresh_needs_a_signed_registry_and_its_keys(signed: tuple[LocalStore, Path, bytes], tmp_path: Path) -> None:
    from packager.registry.signing import refresh

    with pytest.raises(SigningError, match="not signed"):
        refresh(LocalStore(tmp_path / "empty"), tmp_path / "nokeys", NOW)
    store, _, _ = signed
    init_keys(tmp_path / "other", LocalStore(tmp_path / "other-reg"))
    with pytest.raises(SigningError, match="not the one this registry's root trusts"):
        refresh(store, tmp_path / "other", NOW)


def test_server_with_keys_resigns_a_timestamp_past_half_its_life(built_mlp: Path, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from packager.registry.signing import TIMESTAMP_KEY, expires_at
    from packager.server.app import create_app

    store = LocalStore(tmp_path / "reg")
    keys = tmp_path / "keys"
    init_keys(keys, store, now=NOW - timedelta(days=5))  # signed five days ago: two days left
    old = store.get(TIMESTAMP_KEY).data  # type: ignore[union-attr]
    with TestClient(create_app(store, keys=keys)) as client:  # the lifespan runs its first check
        assert client.get("/healthz").status_code == 200
    assert store.get(TIMESTAMP_KEY).data != old  # type: ignore[union-attr]
    assert expires_at(store) > NOW + timedelta(days=6)  # type: ignore[operator]
