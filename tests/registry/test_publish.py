"""Publishing a real build into a local registry; rollouts and rollbacks of its channel."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import build_with_failed_int8, copy_build

from packager.errors import ConflictError, PublishError, UsageError
from packager.registry.channels import read_pointer
from packager.registry.publish import publish, rollback, rollout
from packager.registry.store import LocalStore

__all__ = ["build_with_failed_int8"]
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _doc(store: LocalStore, model: str, version: str) -> dict[str, Any]:
    blob = store.get(f"models/{model}/versions/{version}.json")
    assert blob is not None
    return dict(json.loads(blob.data))


def test_publish_uploads_every_variant_file_as_a_verified_artifact(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    done = publish(built_mlp, store, now=NOW)
    build = json.loads((built_mlp / "build.json").read_text())
    assert set(done.variants) == {v["id"] for v in build["variants"]}
    for entry in (f for v in build["variants"] for f in v["files"]):
        blob = store.get(f"artifacts/sha256/{entry['sha256']}")
        assert blob is not None and hashlib.sha256(blob.data).hexdigest() == entry["sha256"]
        assert blob.data == (built_mlp / entry["path"]).read_bytes()
    assert read_pointer(store, "mlp", "stable").stable == "1"


def test_publish_writes_the_version_document_schema(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store, cloud_url="https://infer.example.com/v2/models/mlp", now=NOW)
    doc = _doc(store, "mlp", "1")
    assert doc["schema"] == 1 and doc["published"] == "2025-01-01T00:00:00Z"
    assert doc["cloud"] == {"url": "https://infer.example.com/v2/models/mlp", "protocol": "open-inference-v2"}
    assert doc["model"]["name"] == "mlp" and "signature" in doc["model"] and "canonical" not in doc["model"]
    fp32 = next(v for v in doc["variants"] if v["id"] == "onnx-fp32")
    assert fp32["runtime"] == {"name": "onnxruntime", "min_version": "1.13"}
    assert fp32["platforms"] == ["linux", "macos", "windows", "android", "ios"] and fp32["arch"] is None
    assert fp32["main"]["path"] == "onnx/onnx-fp32/model.onnx" and fp32["device"] is True
    assert fp32["fidelity"]["status"] == "verified" and fp32["bytes"] == fp32["main"]["bytes"]
    assert fp32["device_bytes"] == fp32["main"]["bytes"]


def test_publish_withholds_variants_that_failed_validation(build_with_failed_int8: Path, tmp_path: Path) -> None:
    build = json.loads((build_with_failed_int8 / "build.json").read_text())
    failed = {v["id"] for v in build["variants"] if v["fidelity"]["status"] == "failed"}
    assert failed and failed < {v["id"] for v in build["variants"]}
    store = LocalStore(tmp_path / "reg")
    done = publish(build_with_failed_int8, store, now=NOW)
    assert set(done.withheld) == failed and not failed & set(done.variants)
    doc = _doc(store, "mlp", "1")
    assert {w["id"] for w in doc["withheld"]} == failed and not failed & {v["id"] for v in doc["variants"]}
    for variant in build["variants"]:
        present = store.size(f"artifacts/sha256/{variant['files'][0]['sha256']}") is not None
        assert present == (variant["id"] not in failed)


def test_publish_refuses_a_build_where_every_variant_failed(built_mlp: Path, tmp_path: Path) -> None:
    def fail_all(record: dict[str, Any], folder: Path) -> None:
        for variant in record["variants"]:
            variant["fidelity"] = {"status": "failed", "reason": "out of tolerance"}

    store = LocalStore(tmp_path / "reg")
    with pytest.raises(PublishError, match="no variant to publish"):
        publish(copy_build(built_mlp, tmp_path / "dist", "2", fail_all), store, now=NOW)
    assert store.list("") == []


def test_publish_refuses_a_file_that_differs_from_build_json(built_mlp: Path, tmp_path: Path) -> None:
    def flip(record: dict[str, Any], folder: Path) -> None:
        path = folder / record["variants"][0]["files"][0]["path"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    store = LocalStore(tmp_path / "reg")
    with pytest.raises(PublishError, match=r"does not match build\.json"):
        publish(copy_build(built_mlp, tmp_path / "dist", "2", flip), store, now=NOW)
    assert store.list("models/") == []


def test_publish_again_is_idempotent_and_other_content_conflicts(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    first = publish(built_mlp, store, now=NOW)
    again = publish(built_mlp, store, now=datetime(2025, 2, 1, tzinfo=UTC))
    assert again.uploaded == 0 and again.pointer == first.pointer
    assert first.changed and not again.changed

    def relabel(record: dict[str, Any], folder: Path) -> None:
        record["model"]["labels"] = ["other"] * 10

    changed = copy_build(built_mlp, tmp_path / "dist", "1", relabel)
    with pytest.raises(ConflictError, match="already published"):
        publish(changed, store, now=NOW)


def test_publish_of_a_later_version_makes_it_the_candidate_at_zero(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store, now=NOW)
    pointer = publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, now=NOW).pointer
    assert (pointer.stable, pointer.candidate, pointer.percent, pointer.generation) == ("1", "2", 0, 2)


def test_rollout_sets_the_percent_and_100_promotes(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store, now=NOW)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, now=NOW)
    pointer = rollout(store, "mlp", "2", percent=10, now=NOW)
    assert (pointer.stable, pointer.candidate, pointer.percent) == ("1", "2", 10)
    pointer = rollout(store, "mlp", "2", percent=100, now=NOW)
    assert (pointer.stable, pointer.candidate, pointer.percent, pointer.generation) == ("2", None, 0, 4)


def test_rollout_refuses_an_unpublished_version(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store, now=NOW)
    with pytest.raises(Exception, match="not published"):
        rollout(store, "mlp", "9", percent=5, now=NOW)
    with pytest.raises(UsageError):
        rollout(store, "mlp", "1", percent=101, now=NOW)


def test_rollback_stops_a_rollout_then_returns_to_the_previous_stable(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    publish(built_mlp, store, now=NOW)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, now=NOW)
    rollout(store, "mlp", "2", percent=20, now=NOW)
    stopped = rollback(store, "mlp", now=NOW)
    assert (stopped.stable, stopped.candidate, stopped.percent) == ("1", None, 0)
    rollout(store, "mlp", "2", percent=100, now=NOW)
    back = rollback(store, "mlp", now=NOW)
    assert (back.stable, back.generation) == ("1", 6)
    assert back.history[-1]["action"] == "rollback" and back.history[-1]["from"] == "2"
    with pytest.raises(UsageError, match="no earlier stable"):
        rollback(store, "mlp", now=NOW)
    assert store.size("models/mlp/versions/2.json") is not None  # nothing deleted


def test_publish_again_brings_a_plain_pointer_left_behind_up_to_date(built_mlp: Path, tmp_path: Path) -> None:
    """A publish killed between its signed commit and the plain pointer's update, run again: the
    second run changes nothing signed, but the plain pointer catches up."""
    from packager.registry.publish import init_keys
    from packager.registry.verify import verify_store

    store = LocalStore(tmp_path / "reg")
    root = init_keys(tmp_path / "keys", store).read_bytes()
    publish(built_mlp, store, keys=tmp_path / "keys")
    plain = store.get("models/mlp/channels/stable.json")
    assert plain is not None
    v2 = copy_build(built_mlp, tmp_path / "dist", "2")
    publish(v2, store, keys=tmp_path / "keys")
    current = store.get("models/mlp/channels/stable.json")
    assert current is not None
    # as if killed after the signed commit, before the plain pointer's write
    store.put("models/mlp/channels/stable.json", plain.data, if_match=current.etag)
    assert verify_store(store, root).lagging_pointers != []
    again = publish(v2, store, keys=tmp_path / "keys")
    assert not again.changed and verify_store(store, root).lagging_pointers == []
