"""Telemetry read back (packager/fleet/aggregate.py): real segments written by the server's sink,
read with DuckDB, against the same numbers computed here from the events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.errors import UsageError
from packager.fleet.aggregate import fleet, parse_window
from packager.registry.docs import Pointer
from packager.registry.store import LocalStore
from packager.server.telemetry import TelemetrySink, check_batch

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
POINTER = Pointer(model="mlp", channel="stable", stable="1", candidate="2", percent=10)


def events(rng: random.Random) -> list[dict[str, Any]]:
    """A fleet's hour: version 1 on two variants, version 2 (the candidate) on one."""
    out: list[dict[str, Any]] = []
    for i in range(60):
        version, variant = ("2", "onnx-fp32") if i % 3 == 0 else ("1", ["onnx-fp32", "c-fp32"][i % 2])
        base = {"model": "mlp", "version": version, "variant": variant, "device_id": f"d{i % 40}"}
        out.append({**base, "event": "load", "ok": i % 17 != 0})
        if i % 10 == 0:
            out.append({**base, "event": "load"})  # an older client: no "ok"
        out.extend({**base, "event": "predict", "ms": round(rng.uniform(0.5, 20.0), 3)} for _ in range(5))
        if i % 7 == 0:
            out.append({**base, "event": "error", "detail": "boom"})
        if version == "2":
            out.append({**base, "event": "shadow", "agree": i % 4 != 0, "diff": round(rng.uniform(0, 0.1), 4)})
            out.append({**base, "event": "feedback", "reward": float(i % 2)})
    return out


def expected(batch: list[dict[str, Any]], version: str, variant: str | None) -> dict[str, Any]:
    mine = [e for e in batch if e["version"] == version and (variant is None or e["variant"] == variant)]
    loads = [e for e in mine if e["event"] == "load"]
    predicts = [e["ms"] for e in mine if e["event"] == "predict"]
    errors = sum(e["event"] == "error" for e in mine)
    shadows = [e for e in mine if e["event"] == "shadow"]
    rewards = [e["reward"] for e in mine if e["event"] == "feedback"]
    failures = sum(e.get("ok") is False for e in loads)
    return {"devices": len({e["device_id"] for e in mine}), "loads": len(loads), "load_failures": failures,
            "load_failure_rate": round(failures / len(loads), 4), "predicts": len(predicts), "errors": errors,
            "error_rate": round(errors / (len(predicts) + errors), 4),
            "p50_ms": round(float(np.percentile(predicts, 50)), 3),
            "p95_ms": round(float(np.percentile(predicts, 95)), 3),
            "p99_ms": round(float(np.percentile(predicts, 99)), 3),
            "shadow_runs": len(shadows),
            "shadow_agreement": round(sum(e["agree"] for e in shadows) / len(shadows), 4) if shadows else None,
            "max_shadow_diff": max((e["diff"] for e in shadows), default=None),
            "feedback": len(rewards),
            "mean_reward": round(sum(rewards) / len(rewards), 4) if rewards else None}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> tuple[LocalStore, list[dict[str, Any]]]:
    """Segments as the server writes them: this hour's events in two flushes, older ones two hours
    back, and another model's."""
    store = LocalStore(tmp_path / "registry")
    batch = check_batch({"events": events(random.Random(7))}, 10_000)
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(batch[: len(batch) // 2], received=NOW - timedelta(minutes=50))
    sink.flush(NOW - timedelta(minutes=50))
    sink.write(batch[len(batch) // 2 :], received=NOW - timedelta(minutes=5))
    sink.write([{"event": "load", "model": "mlp", "version": "1", "variant": "onnx-fp32", "ok": False}],
               received=NOW - timedelta(hours=2))  # fmt: skip
    sink.write([{"event": "load", "model": "other", "version": "1", "variant": "onnx-fp32", "ok": False}],
               received=NOW - timedelta(minutes=5))  # fmt: skip
    sink.flush(NOW - timedelta(minutes=5))
    return store, batch


def test_fleet_rows_are_the_numbers_of_the_events(store: tuple[LocalStore, list[dict[str, Any]]]) -> None:
    registry, batch = store
    doc = fleet(registry, "mlp", timedelta(hours=1), now=NOW, pointer=POINTER)
    rows = {(r["version"], r["variant"]): r for r in doc["rows"]}
    assert set(rows) == {("1", None), ("1", "c-fp32"), ("1", "onnx-fp32"), ("2", None), ("2", "onnx-fp32")}
    for (version, variant), row in rows.items():
        want = expected(batch, version, variant)
        assert {k: row[k] for k in want} == want, (version, variant)
        assert row["cohort"] == {"1": "stable", "2": "candidate"}[version]


def test_fleet_window_leaves_older_events_out(store: tuple[LocalStore, list[dict[str, Any]]]) -> None:
    registry, batch = store
    hour = fleet(registry, "mlp", timedelta(hours=1), now=NOW, pointer=POINTER)
    three = fleet(registry, "mlp", timedelta(hours=3), now=NOW, pointer=POINTER)
    loads = {d: {(r["version"], r["variant"]): r["load_failures"] for r in doc["rows"]} for d, doc in
             (("hour", hour), ("three", three))}  # fmt: skip
    assert loads["three"][("1", "onnx-fp32")] == loads["hour"][("1", "onnx-fp32")] + 1  # the one two hours back
    quarter = fleet(registry, "mlp", timedelta(minutes=15), now=NOW, pointer=POINTER)
    assert sum(r["loads"] for r in quarter["rows"] if r["variant"] is None) == sum(
        e["event"] == "load" for e in batch[len(batch) // 2 :]
    )


def test_fleet_of_a_model_without_events_is_empty(tmp_path: Path) -> None:
    doc = fleet(LocalStore(tmp_path / "registry"), "mlp", timedelta(hours=1), now=NOW)
    assert doc["rows"] == [] and doc["segments"] == 0 and doc["stable"] is None


@pytest.mark.parametrize("text", ["", "1", "0h", "1w", "32d", "1.5h", "h1", "99999999h"])
def test_fleet_window_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError):
        parse_window(text)


def test_fleet_window_reads_minutes_hours_days() -> None:
    assert [parse_window(t) for t in ("90m", "1h", "7d")] == [timedelta(minutes=90), timedelta(hours=1),
                                                              timedelta(days=7)]  # fmt: skip
