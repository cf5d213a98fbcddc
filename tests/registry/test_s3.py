"""S3Store against a real S3-compatible server (SeaweedFS), not a mock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import copy_build
from seaweed import ACCESS_KEY, SECRET_KEY, Seaweed, run_seaweed

from packager.errors import ConflictError, RegistryError
from packager.registry.publish import init_keys, publish, rollout
from packager.registry.s3 import S3Store
from packager.registry.verify import verify_store


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with run_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def store(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> S3Store:
    """A fresh prefix of the bucket per test, with the server's credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    return S3Store.from_url(f"s3://{seaweed.bucket}/{request.node.name[:40]}", endpoint_url=seaweed.endpoint)


def test_s3_store_rejects_a_wrong_secret(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = S3Store.from_url(f"s3://{seaweed.bucket}/wrong", endpoint_url=seaweed.endpoint)
    with pytest.raises(RegistryError, match="refused the credentials"):
        wrong.put_immutable("models/m/versions/1.json", b"x")


def test_s3_store_put_immutable_is_create_only(store: S3Store) -> None:
    assert store.put_immutable("models/m/versions/1.json", b"one") is True
    assert store.put_immutable("models/m/versions/1.json", b"one") is False
    with pytest.raises(ConflictError):
        store.put_immutable("models/m/versions/1.json", b"two")
    assert store.get("models/m/versions/1.json").data == b"one"  # type: ignore[union-attr]


def test_s3_store_put_swaps_only_on_the_current_etag(store: S3Store) -> None:
    first = store.put("models/m/channels/stable.json", b"g1", if_match=None)
    with pytest.raises(ConflictError):
        store.put("models/m/channels/stable.json", b"g1b", if_match=None)
    second = store.put("models/m/channels/stable.json", b"g2", if_match=first)
    with pytest.raises(ConflictError):
        store.put("models/m/channels/stable.json", b"g3", if_match=first)
    blob = store.get("models/m/channels/stable.json")
    assert blob is not None and (blob.data, blob.etag) == (b"g2", second)


def test_s3_store_conditional_writes_race_to_one_winner(store: S3Store) -> None:
    etag = store.put("race.json", b"base", if_match=None)
    wins: list[int] = []

    def write(i: int) -> None:
        try:
            store.put("race.json", f"writer {i}".encode(), if_match=etag)
            wins.append(i)
        except ConflictError:
            pass

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert store.get("race.json").data == f"writer {wins[0]}".encode()  # type: ignore[union-attr]


def test_s3_store_reads_ranges_lists_and_sizes(store: S3Store) -> None:
    store.put_immutable("artifacts/sha256/" + "b" * 64, b"0123456789")
    store.put_immutable("tuf/1.root.json", b"{}")
    assert store.get_range("artifacts/sha256/" + "b" * 64, 3, 4) == b"3456"
    assert store.size("artifacts/sha256/" + "b" * 64) == 10 and store.size("nothing") is None
    assert store.get("nothing") is None
    assert store.list("tuf/") == ["tuf/1.root.json"]
    assert store.list("") == ["artifacts/sha256/" + "b" * 64, "tuf/1.root.json"]


def test_s3_registry_publish_rollout_verifies(store: S3Store, built_mlp: Path, tmp_path: Path) -> None:
    root = init_keys(tmp_path / "keys", store).read_bytes()
    publish(built_mlp, store, keys=tmp_path / "keys")
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=tmp_path / "keys")
    rollout(store, "mlp", "2", percent=10, keys=tmp_path / "keys")
    report = verify_store(store, root)
    assert report.versions == ["models/mlp/versions/1.json", "models/mlp/versions/2.json"]
    assert report.timestamp_version == 4 and not report.lagging_pointers
