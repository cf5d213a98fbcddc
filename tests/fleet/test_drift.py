"""Drift (packager/fleet/drift.py): the build's reference bins, the client's counts over them, the
counts read back with DuckDB, and PSI flagging the features that moved. A real build of the
digits MLP, a real signed registry, a real `packager serve` and the Python client."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))

from client_helpers import run_server
from conftest import run_cli

from packager.client import Client
from packager.fleet.drift import counts, psi, reference, report_for
from packager.registry.channels import read_pointer
from packager.registry.publish import init_keys, publish
from packager.registry.store import LocalStore
from packager.server import create_app
from packager.server.telemetry import TelemetrySink

DEVICE = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": "1.20"}}


def _samples(build: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(build / "validation" / "samples.npz") as x, np.load(build / "validation" / "reference.npz") as y:
        return {k: x[k] for k in x.files}, {k: y[k] for k in y.files}


def test_build_records_reference_bins_and_the_version_document_carries_them(built_mlp: Path, tmp_path: Path) -> None:
    record = json.loads((built_mlp / "build.json").read_text())
    ref = record["model"]["reference"]
    x, y = _samples(built_mlp)
    (name,) = x
    (out,) = y
    features = ref["features"]
    assert len([k for k in features if k.startswith("in:")]) == x[name].shape[1] == 64
    assert all(sum(f["counts"]) == len(x[name]) for k, f in features.items() if k.startswith("in:"))
    assert all(len(f["counts"]) == len(f["edges"]) + 1 <= 10 for k, f in features.items() if k.startswith("in:"))
    assert features[f"out:{out}"]["classes"] == 10 and sum(features[f"out:{out}"]["counts"]) == len(x[name])
    store = LocalStore(tmp_path / "registry")
    publish(built_mlp, store)
    doc = json.loads(store.get("models/mlp/versions/1.json").data)  # type: ignore[union-attr]
    assert doc["model"]["reference"] == ref


def test_drift_counts_on_the_samples_are_the_reference() -> None:
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(500, 3)).astype(np.float32), "img": rng.random((500, 3, 4, 4)).astype(np.float32)}
    y = {"logits": rng.normal(size=(500, 5)).astype(np.float32), "score": rng.random((500,)).astype(np.float32)}
    ref = reference(x, y)
    assert set(ref["features"]) == {"in:x[0]", "in:x[1]", "in:x[2]", "in:img[c0]", "in:img[c1]", "in:img[c2]",
                                    "out:logits", "out:score"}  # fmt: skip
    assert counts(ref, x, y) == {k: f["counts"] for k, f in ref["features"].items()}
    assert psi(ref["features"]["in:x[0]"]["counts"], counts(ref, x, y)["in:x[0]"]) == 0.0
    shifted = counts(ref, {"x": x["x"] + 0.5}, {})  # half a standard deviation
    assert psi(ref["features"]["in:x[0]"]["counts"], shifted["in:x[0]"]) > 0.2
    assert psi([1, 2], [1, 2, 3]) is None and psi([0, 0], [1, 1]) is None


@pytest.fixture
def served(built_mlp: Path, tmp_path: Path) -> Iterator[tuple[str, LocalStore, Path]]:
    store, keys = LocalStore(tmp_path / "registry"), tmp_path / "keys"
    init_keys(keys, store)
    publish(built_mlp, store, keys=keys)
    events = tmp_path / "events.jsonl"
    with run_server(create_app(store, keys=keys, telemetry=events, pointer_seconds=0.0)) as url:
        yield url, store, events


def _device_events(url: str, cache: Path, inputs: np.ndarray, root: Path) -> None:
    with Client(url, "mlp", cache_dir=cache, profile=DEVICE, root=root) as client:
        model = client.load()
        assert model.reference is not None
        model.inputs_sample = 1.0  # count every call here
        for row in range(0, len(inputs), 10):
            model.predict(inputs[row : row + 10])
        model.flush()


def test_drift_from_a_clients_counts_flags_only_the_shifted_features(
    served: tuple[str, LocalStore, Path], built_mlp: Path, tmp_path: Path
) -> None:
    url, store, events_file = served
    x, _ = _samples(built_mlp)
    (values,) = x.values()
    shifted = values.copy()
    moved = list(range(0, 64, 3))  # a third of the features, each by half its standard deviation
    shifted[:, moved] += 0.5 * values[:, moved].std(axis=0)
    root = tmp_path / "keys" / "root.json"
    _device_events(url, tmp_path / "a", values, root)
    day = datetime(2026, 12, 5, 9, tzinfo=UTC)
    _store_events(store, events_file, day + timedelta(minutes=10))
    events_file.unlink()
    _device_events(url, tmp_path / "b", shifted, root)
    _store_events(store, events_file, day + timedelta(hours=1, minutes=30))
    inputs = [json.loads(line) for line in events_file.read_text().splitlines() if '"inputs"' in line]
    assert inputs and all(e["version"] == "1" and all(len(v) <= 10 for v in e["bins"].values()) for e in inputs)
    pointer = read_pointer(store, "mlp", "stable")
    first = report_for(store, pointer, timedelta(hours=1), day + timedelta(minutes=30))
    assert first["versions"]["1"]["drifted"] == []  # the build's own samples: no drift
    later = report_for(store, pointer, timedelta(hours=1), day + timedelta(hours=2))
    rows = {r["feature"]: r for r in later["versions"]["1"]["features"]}
    drifted = set(later["versions"]["1"]["drifted"])
    # what the fleet flags is what PSI gives on the shifted samples themselves: the counts went from
    # the client through the server and DuckDB unchanged (decile bins of a pixel that is nearly
    # always 0 do not see a small shift: such features stay unflagged)
    ref = json.loads((built_mlp / "build.json").read_text())["model"]["reference"]["features"]
    direct = counts({"features": ref}, {"x": shifted}, {})
    expected = {f for f, c in direct.items() if f.startswith("in:") and (psi(ref[f]["counts"], c) or 0) > 0.2}
    assert {f for f in drifted if f.startswith("in:")} == expected
    assert expected <= {f"in:x[{i}]" for i in moved} and len(expected) >= 10
    assert all(rows[f]["count"] == len(values) for f in expected)
    assert rows["in:x[3]"]["psi_previous"] is not None


def _store_events(store: LocalStore, events_file: Path, at: datetime) -> None:
    """The server's received events, as segments received at ``at``."""
    events = [{k: v for k, v in json.loads(line).items() if k != "received"}
              for line in events_file.read_text().splitlines()]  # fmt: skip
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(events, received=at)
    sink.flush(at)


def test_fleet_status_prints_drift(served: tuple[str, LocalStore, Path], built_mlp: Path, tmp_path: Path) -> None:
    url, store, events_file = served
    x, _ = _samples(built_mlp)
    (values,) = x.values()
    _device_events(url, tmp_path / "a", values + 0.5 * values.std(axis=0), tmp_path / "keys" / "root.json")
    _store_events(store, events_file, datetime.now(UTC))
    result = run_cli("fleet", "status", "mlp", "--registry", store.root, "--window", "1h")
    assert result.code == 0, result.err
    assert "drift of 1 (PSI over 0.2 with 200+ counted): in:x[" in result.out and "DRIFT" in result.out
