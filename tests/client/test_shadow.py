"""Shadow runs: the signed pointer's setting, who gets it, the client running the candidate beside
stable on real calls, and what reaches the fleet's figures. A real build, a real signed registry
and a real `packager serve`."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from client_helpers import Registry, make_registry, reference, run_server
from conftest import run_cli
from server_helpers import two_runtime_build

from packager.client import Client
from packager.client.shadow import Shadow, compare
from packager.client.telemetry import SAMPLED, Telemetry
from packager.errors import UsageError
from packager.fleet.aggregate import fleet
from packager.registry.channels import read_pointer, rollback_change, rollout_change, shadow_change
from packager.registry.docs import Pointer, shadow_settings
from packager.registry.publish import publish, shadow
from packager.registry.resolve import cohort_of, in_shadow, resolve
from packager.registry.store import LocalStore
from packager.registry.verify import VerificationError
from packager.server.telemetry import TelemetrySink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
from registry_helpers import negated

__all__ = ["two_runtime_build"]
ONNX_ONLY = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": ort.__version__}}
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry(two_runtime_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Signed: version 1 stable, version 2 (negated) published, shadowed on every stable device's
    every call."""
    folder = tmp_path_factory.mktemp("shadow")
    made = make_registry(two_runtime_build, folder, "http://127.0.0.1:9")
    store = LocalStore(made.path)
    publish(negated(two_runtime_build, folder / "dist"), store, keys=made.keys)
    shadow(store, "mlp", shadow_settings("2", 100, 1.0, 10.0), keys=made.keys)
    return made


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[str]:
    with run_server(registry.app()) as url:
        yield url


# --- what the client does ------------------------------------------------------------------------


def test_shadow_client_runs_the_candidate_but_returns_stables_answer(
    server: str, registry: Registry, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path, profile=ONNX_ONLY, root=registry.root) as client:
        resolution = client.resolve()
        assert resolution["cohort"] == "stable" and resolution["version"] == "1"
        assert resolution["shadow"]["version"] == "2"
        assert resolution["shadow"]["variant"]["id"] == resolution["variant"]["id"]  # the same target and precision
        model = client.load()
        assert model.shadow is not None and model.shadow.version == "2"
        got = model.predict(x)
        for name, value in y.items():
            np.testing.assert_allclose(got[name], value, atol=1e-5)  # stable's answer, not the negated one
        model.flush()
        device = client.profile.device_id
    shadows = [e for e in registry.events() if e.get("device_id") == device and e["event"] == "shadow"]
    assert len(shadows) == 1
    (event,) = shadows
    assert (event["version"], event["variant"], event["agree"]) == ("2", resolution["variant"]["id"], False)
    assert event["diff"] > 0.1 and event["ms"] > 0 and event["base_ms"] > 0
    loads = [e for e in registry.events() if e.get("device_id") == device and e["event"] == "load"]
    assert sorted(e["version"] for e in loads) == ["1", "2"] and all(e["ok"] for e in loads)


def test_shadow_agreement_reaches_the_fleet_figures(registry: Registry, tmp_path: Path) -> None:
    store = LocalStore(registry.path)
    events = [json.loads(line) for line in registry.telemetry.read_text().splitlines()]
    sink = TelemetrySink(store, None, buffered=True)
    sink.write([{k: v for k, v in e.items() if k != "received"} for e in events], received=NOW)
    sink.flush(NOW)
    pointer = read_pointer(store, "mlp", "stable")
    doc = fleet(store, "mlp", __import__("datetime").timedelta(hours=1), now=NOW, pointer=pointer)
    (row,) = [r for r in doc["rows"] if r["version"] == "2" and r["variant"] is None]
    assert row["cohort"] == "candidate" and row["shadow_runs"] >= 1 and row["shadow_agreement"] == 0
    assert row["shadow_p50_ms"] > 0 and row["shadow_base_p50_ms"] > 0
    assert doc["shadow"] == {"version": "2", "percent": 100.0, "sample": 1.0, "cpu_budget": 10.0}


def test_shadow_a_resolution_the_signed_pointer_does_not_set_is_refused(
    server: str, registry: Registry, tmp_path: Path
) -> None:
    with Client(server, "mlp", cache_dir=tmp_path, profile=ONNX_ONLY, root=registry.root) as client:
        resolution = client.resolve()
        assert client.trust is not None
        forged = {**resolution, "shadow": {**resolution["shadow"], "sample": 0.5}}
        with pytest.raises(VerificationError, match="signed pointer does not set"):
            client.trust.check_resolution(client.http, forged, "stable")
        swapped = {**resolution["shadow"], "variant": dict(resolution["shadow"]["variant"], sha256="0" * 64)}
        with pytest.raises(VerificationError, match="main file differs"):
            client.trust.check_resolution(client.http, {**resolution, "shadow": swapped}, "stable")


def test_shadow_cli_sets_and_ends_the_run_in_the_signed_pointer(registry: Registry, tmp_path: Path) -> None:
    copy = tmp_path / "registry"
    __import__("shutil").copytree(registry.path, copy)
    result = run_cli("shadow", "mlp", "--version", "2", "--percent", "5", "--sample", "0.2", "--registry", copy,
                     "--keys", registry.keys)  # fmt: skip
    assert result.code == 0, result.err
    assert "shadow: 2 on 5% of stable devices, 0.2 of their calls" in result.out
    pointer = read_pointer(LocalStore(copy), "mlp", "stable")
    assert pointer.shadow == {"version": "2", "percent": 5.0, "sample": 0.2, "cpu_budget": 0.25}
    assert pointer.history[-1]["action"] == "shadow"
    result = run_cli("shadow", "mlp", "--off", "--registry", copy, "--keys", registry.keys)
    assert result.code == 0 and "no shadow run" in result.out
    assert read_pointer(LocalStore(copy), "mlp", "stable").shadow is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--version", "1"), "is the stable version"),
        (("--version", "9"), "version 9 is not published"),
        (("--off", "--version", "2"), "pass --version V to start a shadow run, or --off"),
        ((), "pass --version V to start a shadow run, or --off"),
    ],
)
def test_shadow_cli_refuses_what_cannot_run(registry: Registry, tmp_path: Path, args: tuple[str, ...],
                                            message: str) -> None:  # fmt: skip
    copy = tmp_path / "registry"
    __import__("shutil").copytree(registry.path, copy)
    result = run_cli("shadow", "mlp", *args, "--registry", copy, "--keys", registry.keys)
    assert result.code != 0 and message in result.err and "Traceback" not in result.err


# --- who runs it ---------------------------------------------------------------------------------


def _pointer(**changes: Any) -> Pointer:
    return Pointer(model="mlp", channel="stable", stable="1", generation=3, **changes)


def test_shadow_cohort_is_a_sticky_share_of_the_stable_cohort() -> None:
    pointer = _pointer(candidate="2", percent=20, shadow=shadow_settings("2", 10, 0.1, 0.25))
    group = cohort_of(pointer)
    groups = [group(f"device-{i}") for i in range(20000)]
    share = {g: groups.count(g) / len(groups) for g in ("candidate", "shadow", "stable")}
    assert abs(share["candidate"] - 0.20) < 0.015
    assert abs(share["shadow"] - 0.08) < 0.01  # 10% of the 80% left in stable
    assert all(group(f"device-{i}") == groups[i] for i in range(100))
    assert all((g == "shadow") == (in_shadow(pointer, f"device-{i}") and g != "candidate")
               for i, g in enumerate(groups[:2000]))  # fmt: skip
    assert cohort_of(_pointer())("device-1") == "stable"


def test_shadow_resolution_only_in_the_shadow_cohort(two_runtime_build: Path, registry: Registry) -> None:
    store = LocalStore(registry.path)
    versions = {v: json.loads(store.get(f"models/mlp/versions/{v}.json").data) for v in ("1", "2")}  # type: ignore[union-attr]
    pointer = _pointer(candidate="2", percent=0, shadow=shadow_settings("2", 50, 0.1, 0.25))
    seen = set()
    from packager.registry.profile import DeviceProfile

    for i in range(40):
        profile = DeviceProfile.from_json({**ONNX_ONLY, "device_id": f"d{i}"})
        doc = resolve(pointer, versions, profile, now=NOW).to_json()
        assert doc["version"] == "1" and doc["cohort"] == "stable"
        assert ("shadow" in doc) == in_shadow(pointer, f"d{i}")
        seen.add("shadow" in doc)
    assert seen == {True, False}


def test_shadow_ends_when_its_version_is_promoted_or_rolled_back() -> None:
    running = _pointer(candidate="2", percent=5, shadow=shadow_settings("2", 10, 0.1, 0.25))
    assert rollout_change("2", 100, NOW)(running).shadow is None
    assert rollback_change(NOW)(running).shadow is None
    other = _pointer(candidate="3", percent=5, shadow=shadow_settings("2", 10, 0.1, 0.25))
    assert rollback_change(NOW)(other).shadow == other.shadow
    with pytest.raises(UsageError, match="stable version"):
        shadow_change(shadow_settings("1", 10, 0.1, 0.25), NOW)(running)
    assert shadow_change(None, NOW)(_pointer()) == _pointer()  # nothing to end: no new generation


def test_shadow_pointer_round_trips_and_older_pointers_keep_their_bytes() -> None:
    plain = _pointer()
    assert "shadow" not in plain.to_json()
    with_shadow = _pointer(shadow=shadow_settings("2", 10, 0.1, 0.25))
    assert Pointer.from_json(with_shadow.to_json()) == with_shadow
    broken = {**with_shadow.to_json(), "shadow": {"version": "2", "percent": 300, "sample": 0.1, "cpu_budget": 1}}
    with pytest.raises(Exception, match="percent 300"):
        Pointer.from_json(broken)


# --- the shadow's own logic ----------------------------------------------------------------------


def test_compare_top1_regression_and_shapes() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    assert compare({"y": logits}, {"y": logits + 0.05}) == (True, pytest.approx(0.05))
    assert compare({"y": logits}, {"y": logits[:, ::-1]})[0] is False
    assert compare({"y": np.array([1.0, 2.0])}, {"z": np.array([1.0005, 2.01])})[0] is True  # paired in order
    assert compare({"y": np.array([1.0, 2.0])}, {"y": np.array([1.1, 2.0])})[0] is False
    assert compare({"y": logits}, {"y": logits[:1]}) == (False, None)


class _Runner:
    runtime_label = "fake"

    def __init__(self, seconds: float = 0.0, fail: bool = False) -> None:
        self.seconds, self.fail, self.calls = seconds, fail, 0

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("candidate broke")
        return {"y": feeds["x"] * 2}

    def close(self) -> None:
        pass


class _Tele(Telemetry):
    def __init__(self) -> None:
        super().__init__(None, model="mlp", device_id="d", queue=1000, batch=100, seconds=1)  # type: ignore[arg-type]


def test_shadow_runs_a_sample_of_calls_within_its_budget() -> None:
    tele, runner = _Tele(), _Runner(seconds=0.002)
    shade = Shadow(runner, version="2", variant="v", sample=0.5, cpu_budget=10, telemetry=tele, seed=1)
    x = {"x": np.ones((1, 2), np.float32)}
    handed = 0
    for _ in range(200):
        handed += shade.offer(x, {"y": x["x"] * 2}, 1.0)
        shade.drain()
    assert 70 <= handed <= 130 and runner.calls == handed == shade.runs
    tight = Shadow(_Runner(seconds=0.005), version="2", variant="v", sample=1.0, cpu_budget=0.1, telemetry=tele)
    for _ in range(50):
        tight.offer(x, {"y": x["x"] * 2}, 1.0)  # stable takes 1 ms; the shadow about 5: a tenth allows few
        tight.drain()
    assert tight.runs <= 3 and tight.skipped >= 45 and tight.spent_ms <= 0.1 * tight.base_ms + 20


def test_shadow_never_blocks_the_call_and_reports_its_failures() -> None:
    tele, slow = _Tele(), _Runner(seconds=0.3)
    shade = Shadow(slow, version="2", variant="v", sample=1.0, cpu_budget=10, telemetry=tele)
    x = {"x": np.ones((1, 2), np.float32)}
    start = time.perf_counter()
    results = [shade.offer(x, {"y": x["x"]}, 1000.0) for _ in range(5)]
    assert time.perf_counter() - start < 0.25  # handed over, not run here
    assert results[0] and results.count(True) <= 2 and shade.skipped >= 3
    broken = Shadow(_Runner(fail=True), version="2", variant="v", sample=1.0, cpu_budget=10, telemetry=tele)
    broken.offer(x, {"y": x["x"]}, 1.0)
    broken.drain()
    errors = [e for e in tele.events if e["event"] == "error"]
    assert errors and "candidate broke" in errors[0]["detail"] and errors[0]["version"] == "2"
    shade.close()
    broken.close()
    assert threading.active_count() < 50


def test_shadow_events_are_a_bounded_uniform_sample() -> None:
    tele = _Tele()
    for i in range(500):
        tele.shadowed(float(i), version="2", variant="v", base_ms=1.0, agree=i % 2 == 0, diff=0.0)
    with tele._lock:
        tele._fold()
    shadows = [e for e in tele.events if e["event"] == "shadow"]
    assert len(shadows) == SAMPLED and shadows[0]["detail"] == f"n=500 sampled={SAMPLED}"
    assert len({e["ms"] for e in shadows}) == SAMPLED
