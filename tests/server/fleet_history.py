"""Five hours of a fleet, written into a signed registry as the server and the controller write
them: a gated rollout of version 2 that the controller's ticks advance step by step to stable,
then a Thompson experiment between 1 and 2 whose epochs it reallocates; devices' loads,
predicts, input bins (version 2's first three features shifted: drift) and rewards."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from packager.fleet.controller import tick
from packager.fleet.experiment import start
from packager.fleet.gates import Plan, parse_gate
from packager.registry.docs import iso
from packager.registry.names import version_key
from packager.registry.publish import experiment, rollout
from packager.registry.store import LocalStore
from packager.server.telemetry import TelemetrySink

SLOT = timedelta(minutes=15)
DEVICES = 400
SHIFTED = 3  # version 2's first features whose counts are turned around


def reference(store: LocalStore, version: str) -> dict[str, Any]:
    blob = store.get(version_key("mlp", version))
    assert blob is not None
    return dict(json.loads(blob.data)["model"]["reference"]["features"])


def bins(ref: dict[str, Any], version: str, rng: random.Random) -> dict[str, list[int]]:
    """One device's counts: the reference's own shares, a feature of version 2 turned around."""
    out = {}
    for index, (key, entry) in enumerate(sorted(ref.items())):
        counts = [int(c * rng.uniform(0.5, 1.5)) + 1 for c in entry["counts"]]
        if version == "2" and key.startswith("in:") and index < SHIFTED:
            counts = counts[::-1]
        out[key] = counts
    return out


def slot_events(ref: dict[str, Any], version: str, at: int, rng: random.Random, *,
                failures: float) -> list[dict[str, Any]]:  # fmt: skip
    events: list[dict[str, Any]] = []
    for d in range(DEVICES):
        base = {"model": "mlp", "version": version, "variant": "onnx-fp32", "device_id": f"{version}-{at}-{d}"}
        events.append({**base, "event": "load", "ok": rng.random() >= failures})
        slow = 1.15 if version == "2" else 1.0
        events += [{**base, "event": "predict", "ms": rng.gauss(20, 3) * slow} for _ in range(3)]
        if d % 8 == 0:
            events.append({**base, "event": "inputs", "bins": bins(ref, version, rng)})
    return events


def write_history(registry: Path, keys: Path, now: datetime) -> None:
    """The rollout from now - 5 h (ticks every 15 minutes until it promotes), then the experiment
    until now."""
    store, rng = LocalStore(registry), random.Random(7)
    refs = {v: reference(store, v) for v in ("1", "2")}
    at = now - timedelta(hours=5)
    plan = Plan(version="2", steps=(1, 5, 25, 100), gates=(parse_gate("load_failure_rate <= 0.05"),),
                min_devices=300, min_minutes=15, step_started=iso(at))  # fmt: skip
    rollout(store, "mlp", "2", percent=1, keys=keys, plan=plan.to_json(), now=at)
    sink = TelemetrySink(store, None, buffered=True)
    promoted = False
    while at < now - SLOT:
        at += SLOT
        stamp = at - timedelta(minutes=1)
        events = []
        for version in ("1", "2"):
            events += slot_events(refs[version], version, int(stamp.timestamp()), rng,
                                  failures=0.004 if version == "1" else 0.006)  # fmt: skip
        if promoted:  # the experiment's rewards
            for version, share in (("1", 0.10), ("2", 0.16)):
                events += [{"model": "mlp", "version": version, "variant": "onnx-fp32", "event": "feedback",
                            "device_id": f"r{version}-{i}", "reward": float(rng.random() < share)}
                           for i in range(80)]  # fmt: skip
        sink.write(events, received=stamp)
        sink.flush(stamp)
        for decision in tick(store, keys=keys, now=at, tick_minutes=SLOT.total_seconds() / 60):
            if decision.action == "promote":
                promoted = True
                settings = start(arms=["1", "2"], policy="thompson", reward="clicked", epoch_minutes=30, now=at)
                experiment(store, "mlp", settings, keys=keys, now=at)
