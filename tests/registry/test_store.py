"""LocalStore: create-only and compare-and-swap writes, reads, listing, and key validation."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from packager.errors import ConflictError, InvalidNameError, RegistryError, UsageError
from packager.registry import names
from packager.registry.store import LocalStore, open_store


def test_local_store_put_immutable_creates_once_and_is_idempotent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.put_immutable("artifacts/sha256/" + "a" * 64, b"bytes") is True
    assert store.put_immutable("artifacts/sha256/" + "a" * 64, b"bytes") is False
    blob = store.get("artifacts/sha256/" + "a" * 64)
    assert blob is not None and blob.data == b"bytes"


def test_local_store_put_immutable_refuses_other_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_immutable("models/m/versions/1.json", b"one")
    with pytest.raises(ConflictError):
        store.put_immutable("models/m/versions/1.json", b"two")
    assert store.get("models/m/versions/1.json").data == b"one"  # type: ignore[union-attr]
    assert not [p for p in tmp_path.rglob(".tmp-*")]  # no temp file left behind


def test_local_store_put_requires_absence_without_if_match(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    etag = store.put("models/m/channels/stable.json", b"g1", if_match=None)
    with pytest.raises(ConflictError):
        store.put("models/m/channels/stable.json", b"other", if_match=None)
    assert store.get("models/m/channels/stable.json").etag == etag  # type: ignore[union-attr]


def test_local_store_put_swaps_only_on_the_current_etag(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = store.put("k.json", b"g1", if_match=None)
    second = store.put("k.json", b"g2", if_match=first)
    with pytest.raises(ConflictError):
        store.put("k.json", b"g3", if_match=first)  # stale
    blob = store.get("k.json")
    assert blob is not None and blob.data == b"g2" and blob.etag == second


def _increment(root: str, times: int) -> None:
    store = LocalStore(Path(root))
    for _ in range(times):
        while True:
            blob = store.get("counter.json")
            value = int(blob.data) if blob else 0
            try:
                store.put("counter.json", str(value + 1).encode(), if_match=blob.etag if blob else None)
                break
            except ConflictError:
                continue


def test_local_store_put_serializes_writers_in_other_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment, args=(str(tmp_path), 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert LocalStore(tmp_path).get("counter.json").data == b"100"  # type: ignore[union-attr]


def test_local_store_get_range_and_size(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_immutable("a/b", b"0123456789")
    assert store.get_range("a/b", 2, 3) == b"234"
    assert store.get_range("a/b", 8, 10) == b"89"
    assert store.size("a/b") == 10 and store.size("a/c") is None
    assert store.get("a/c") is None
    with pytest.raises(RegistryError):
        store.get_range("a/c", 0, 1)


def test_local_store_list_by_prefix_skips_temp_and_lock_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("tuf/1.root.json", "tuf/root.json", "models/m/versions/1.json"):
        store.put_immutable(key, b"x")
    store.put("tuf/timestamp.json", b"t", if_match=None)
    (tmp_path / "tuf" / ".tmp-crashed").write_bytes(b"half")
    assert store.list("tuf/") == ["tuf/1.root.json", "tuf/root.json", "tuf/timestamp.json"]
    assert store.list("models/m/") == ["models/m/versions/1.json"]
    assert store.list("nothing/") == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "a/b/", "a\\b", "", "a/.hidden"])
def test_local_store_refuses_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(RegistryError):
        LocalStore(tmp_path).put_immutable(key, b"x")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "-x", "a" * 65, "", "é", "a b", "x..y"])
def test_names_refuse_unsafe_model_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        names.version_key(name, "1")


def test_names_accept_ordinary_names() -> None:
    assert names.pointer_key("digits", "beta-2") == "models/digits/channels/beta-2.json"
    assert names.version_key("mlp_v2", "1.0.3") == "models/mlp_v2/versions/1.0.3.json"


def test_names_refuse_a_trailing_dot() -> None:
    with pytest.raises(InvalidNameError):
        names.check_name("version", "1.")  # its key would be "1..json"


def test_open_store_refuses_server_urls(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a server, not a store"):
        open_store("https://models.example.com")
    assert isinstance(open_store(str(tmp_path)), LocalStore)
