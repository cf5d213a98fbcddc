"""GET /v1/models/{m}/fleet and `packager fleet status`: events sent to a real server, read back
with DuckDB from the segments it wrote."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from conftest import run_cli
from server_helpers import Served, fresh, make_registry, run_server, tokens_file, two_runtime_build

from packager.fleet.gates import Plan, parse_gate
from packager.registry.channels import read_pointer
from packager.registry.docs import iso
from packager.registry.publish import rollout
from packager.registry.store import LocalStore
from packager.server.app import create_app
from packager.server.telemetry import TelemetrySink

__all__ = ["fresh", "tokens_file", "two_runtime_build"]


def send_events(served: Served) -> list[dict[str, Any]]:
    base = {"model": "mlp", "version": "1", "variant": "onnx-fp32"}
    events = [{**base, "event": "load", "ok": True, "device_id": f"d{i}"} for i in range(8)]
    events += [{**base, "event": "load", "ok": False, "device_id": "d8"}, {**base, "event": "load", "device_id": "d9"}]
    events += [{**base, "event": "predict", "ms": float(ms), "device_id": "d1"} for ms in range(1, 21)]
    answer = served.client.post("/v1/telemetry", json={"events": events})
    assert answer.status_code == 202, answer.text
    return events


def bearer(served: Served, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[who]}"}


def test_fleet_route_reads_back_what_devices_sent(fresh: Served) -> None:
    send_events(fresh)  # held in the server's memory until the fleet route flushes it
    answer = fresh.client.get("/v1/models/mlp/fleet", params={"window": "1h"}, headers=bearer(fresh, "mlp"))
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["stable"] == "1" and doc["segments"] == 1 and answer.headers["cache-control"] == "no-store"
    (row,) = [r for r in doc["rows"] if r["variant"] == "onnx-fp32"]
    assert (row["cohort"], row["devices"], row["loads"], row["load_failures"]) == ("stable", 10, 10, 1)
    assert (row["load_failure_rate"], row["predicts"], row["p50_ms"], row["p95_ms"]) == (0.1, 20, 10.5, 19.05)


def test_fleet_route_needs_the_models_token(fresh: Served) -> None:
    assert fresh.client.get("/v1/models/mlp/fleet").status_code == 401
    assert fresh.client.get("/v1/models/mlp/fleet", headers=bearer(fresh, "other")).status_code == 403
    refused = fresh.client.get("/v1/models/mlp/fleet", params={"window": "1y"}, headers=bearer(fresh, "mlp"))
    assert refused.status_code == 400 and "30m, 1h or 7d" in refused.json()["error"]["message"]


def test_fleet_status_prints_a_table_from_a_server_and_from_the_folder(fresh: Served) -> None:
    send_events(fresh)
    result = run_cli("fleet", "status", "mlp", "--registry", fresh.url, "--token", fresh.tokens["mlp"])
    assert result.code == 0, result.err
    assert "onnx-fp32" in result.out and "stable" in result.out and "0.1" in result.out
    # the server flushed its segment for that answer: the folder holds it now
    result = run_cli("fleet", "status", "mlp", "--registry", fresh.registry, "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)["rows"]
    assert [r["loads"] for r in rows if r["variant"] is None] == [10]


def test_fleet_status_says_a_window_it_cannot_read(fresh: Served) -> None:
    result = run_cli("fleet", "status", "mlp", "--registry", fresh.registry, "--window", "two hours")
    assert result.code != 0 and "30m, 1h or 7d" in result.err


def test_serve_runs_the_controller_and_halts_a_failing_rollout(
    two_runtime_build: Path, tmp_path: Path, tokens_file: tuple[Path, dict[str, str]]
) -> None:
    registry, keys, _ = make_registry(two_runtime_build, tmp_path)
    store, now = LocalStore(registry), datetime.now(UTC)
    plan = Plan(version="2", steps=(5, 100), gates=(parse_gate("load_failure_rate <= 0.01"),), min_devices=100,
                min_minutes=15, step_started=iso(now - timedelta(minutes=20)))  # fmt: skip
    rollout(store, "mlp", "2", percent=5, keys=keys, plan=plan.to_json())
    base = {"model": "mlp", "version": "2", "variant": "onnx-fp32", "event": "load"}
    sink = TelemetrySink(store, None)
    sink.write([{**base, "device_id": f"d{i}", "ok": i % 10 != 0} for i in range(300)], received=now)
    app = create_app(store, tokens=tokens_file[0], keys=keys, overrides={"fleet": {"tick_seconds": 0.2}})
    with run_server(app):
        deadline = time.monotonic() + 30
        while read_pointer(store, "mlp", "stable").candidate is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    pointer = read_pointer(store, "mlp", "stable")
    assert (pointer.candidate, pointer.plan) == (None, None)
    assert pointer.history[-1]["action"] == "halt" and pointer.history[-1]["devices"] == 300


def test_serve_measures_drift_for_metrics(two_runtime_build: Path, tmp_path: Path) -> None:
    """Devices' counts of shifted inputs, and /metrics shows a PSI gauge per feature after the
    server's fleet pass (which runs even where it cannot write the registry)."""
    import numpy as np

    from packager.fleet.drift import counts

    registry, _keys, _ = make_registry(two_runtime_build, tmp_path)
    store, now = LocalStore(registry), datetime.now(UTC)
    ref = json.loads((two_runtime_build / "build.json").read_text())["model"]["reference"]
    with np.load(two_runtime_build / "validation" / "samples.npz") as data:
        x = {k: data[k] + 0.5 * data[k].std(axis=0) for k in data.files}
    event = {"model": "mlp", "version": "1", "variant": "onnx-fp32", "event": "inputs", "bins": counts(ref, x, {})}
    TelemetrySink(store, None).write([event], received=now)
    app = create_app(store, overrides={"fleet": {"tick_seconds": 0.2}})
    with run_server(app) as url:
        deadline, text = time.monotonic() + 30, ""
        while "packager_drift_psi{" not in text and time.monotonic() < deadline:
            time.sleep(0.2)
            text = httpx.get(f"{url}/metrics").text
    gauges = {line.split("feature=")[1].split('"')[1]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("packager_drift_psi{")}  # fmt: skip
    assert len(gauges) == 64 and max(gauges.values()) > 0.2
