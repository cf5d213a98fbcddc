"""A/B tests and bandits (packager/fleet/experiment.py): arms in the signed pointer, devices placed
by epoch, rewards read back with DuckDB, Thompson allocations written by the controller, and a
client with a pinned root sent to an arm's version. A real build in a real signed registry."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))

from client_helpers import run_server
from conftest import run_cli
from registry_helpers import copy_build

from packager.client import Client
from packager.errors import UsageError
from packager.fleet.controller import tick
from packager.fleet.experiment import ArmStats, parse_policy, regret, report, start, thompson
from packager.registry.channels import read_pointer
from packager.registry.docs import Pointer, experiment_settings, iso
from packager.registry.profile import DeviceProfile
from packager.registry.publish import experiment, init_keys, publish, rollout
from packager.registry.resolve import cohort_of, resolve
from packager.registry.store import LocalStore
from packager.server import create_app
from packager.server.telemetry import TelemetrySink

START = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC)
DEVICE = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": "1.20"}}


@pytest.fixture
def registry(built_mlp: Path, tmp_path: Path) -> tuple[LocalStore, Path]:
    """Signed: version 1 stable, versions 2 and 3 published (3 is the candidate at 0%)."""
    store, keys = LocalStore(tmp_path / "registry"), tmp_path / "keys"
    init_keys(keys, store)
    publish(built_mlp, store, keys=keys)
    for version in ("2", "3"):
        publish(copy_build(built_mlp, tmp_path / "dist", version), store, keys=keys)
    return store, keys


def rewards(store: LocalStore, arms: dict[str, float], count: int, *, at: datetime, seed: int = 0) -> None:
    """``count`` feedback events per arm version, each reward 1 with the arm's probability."""
    rng = random.Random(seed)
    events = [{"event": "feedback", "model": "mlp", "version": version, "variant": "onnx-fp32",
               "device_id": f"{version}-{i % 300}", "reward": float(rng.random() < p)}
              for version, p in arms.items() for i in range(count)]  # fmt: skip
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(events, received=at)
    sink.flush(at)


def _settings(policy: str = "thompson", arms: tuple[str, ...] = ("1", "2"), minutes: float = 5) -> dict:
    return start(arms=list(arms), policy=policy, reward="clicked", epoch_minutes=minutes, now=START)


# --- the controller moves allocations -------------------------------------------------------------


def test_experiment_thompson_moves_devices_to_the_better_arm(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    experiment(store, "mlp", _settings(), keys=keys, now=START)
    rewards(store, {"1": 0.10, "2": 0.15}, 3000, at=START + timedelta(minutes=2))
    assert tick(store, keys=keys, now=START + timedelta(minutes=4)) == []  # the epoch has not run its minutes
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=6))
    assert decision.action == "allocate" and decision.reason.startswith("epoch 1: 1 ")
    pointer = read_pointer(store, "mlp", "stable")  # read through the signed metadata
    exp = pointer.experiment
    assert exp is not None and exp["epoch"] == 1 and exp["allocation"][1] >= 0.9 and exp["allocation"][0] >= 0.01
    entry = pointer.history[-1]
    assert entry["action"] == "allocate" and entry["rewards"] == [3000, 3000] and entry["means"][1] > entry["means"][0]
    assert tick(store, keys=keys, now=START + timedelta(minutes=8)) == []  # the new epoch began at minute 6


def test_experiment_fixed_policy_keeps_its_split(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    experiment(store, "mlp", _settings("fixed:80,20"), keys=keys, now=START)
    rewards(store, {"1": 0.10, "2": 0.15}, 500, at=START + timedelta(minutes=2))
    assert tick(store, keys=keys, now=START + timedelta(hours=2)) == []
    doc = report(store, read_pointer(store, "mlp", "stable"), START + timedelta(hours=2))
    assert doc is not None and doc["allocation"] == [0.8, 0.2]
    arms = {a["arm"]: a for a in doc["arms_now"]}
    assert arms["1"]["rewards"] == arms["2"]["rewards"] == 500 and arms["1"]["posterior"]["kind"] == "beta"
    assert doc["regret"] > 0 and arms["2"]["p_best"] > arms["1"]["p_best"]


def test_experiment_devices_keep_their_arm_within_an_epoch() -> None:
    settings = experiment_settings(arms=["1", "2"], policy="thompson", allocation=[0.3, 0.7], reward="r", epoch=4,
                                   started=iso(START), epoch_started=iso(START), epoch_minutes=60)  # fmt: skip
    pointer = Pointer(model="mlp", channel="stable", stable="1", generation=2, experiment=settings)
    group = cohort_of(pointer)
    arms = [group(f"d{i}") for i in range(20000)]
    assert abs(arms.count("arm:1") / len(arms) - 0.7) < 0.015
    assert [group(f"d{i}") for i in range(200)] == arms[:200]
    moved = Pointer(model="mlp", channel="stable", stable="1", generation=3,
                    experiment={**settings, "epoch": 5})  # fmt: skip
    changed = sum(cohort_of(moved)(f"d{i}") != arms[i] for i in range(2000))
    assert 600 < changed < 1500  # a new epoch re-draws: about 2 x 0.3 x 0.7 of devices move
    assert group(None) == "stable"


def test_experiment_arm_with_a_variant_gets_that_variant(registry: tuple[LocalStore, Path]) -> None:
    store, _ = registry
    versions = {v: json.loads(store.get(f"models/mlp/versions/{v}.json").data) for v in ("1", "2")}  # type: ignore[union-attr]
    ids = [v["id"] for v in versions["2"]["variants"] if v.get("device", True)]
    pinned = ids[-1]
    settings = experiment_settings(arms=["1", f"2:{pinned}"], policy="fixed", allocation=[0.5, 0.5], reward="r",
                                   epoch=0, started=iso(START), epoch_started=iso(START), epoch_minutes=60)  # fmt: skip
    pointer = Pointer(model="mlp", channel="stable", stable="1", generation=2, experiment=settings)
    seen = {}
    for i in range(30):
        doc = resolve(pointer, versions, DeviceProfile.from_json({**DEVICE, "device_id": f"d{i}"}), now=START).to_json()
        assert doc["cohort"] == "experiment"
        seen[doc["arm"]] = doc
    assert seen[1]["version"] == "2" and seen[1]["variant"]["id"] == pinned
    assert seen[0]["version"] == "1"


# --- what is refused ------------------------------------------------------------------------------


def test_experiment_and_rollout_exclude_each_other(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    experiment(store, "mlp", _settings(), keys=keys, now=START)
    with pytest.raises(UsageError, match="runs an experiment"):
        rollout(store, "mlp", "3", percent=5, keys=keys)
    with pytest.raises(UsageError, match="already runs an experiment"):
        experiment(store, "mlp", _settings(), keys=keys)
    experiment(store, "mlp", None, keys=keys)
    rollout(store, "mlp", "3", percent=5, keys=keys)
    with pytest.raises(UsageError, match="is rolling out 3"):
        experiment(store, "mlp", _settings(), keys=keys)


@pytest.mark.parametrize(
    ("policy", "arms", "message"),
    [
        ("fixed:50", ("1", "2"), "one weight per arm"),
        ("fixed:a,b", ("1", "2"), "one weight per arm"),
        ("greedy", ("1", "2"), "not 'thompson'"),
        ("thompson", ("1",), "2 to 8 different arms"),
        ("thompson", ("2", "2:onnx-fp32"), "overlaps"),
    ],
)
def test_experiment_settings_refuse_what_cannot_run(policy: str, arms: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _settings(policy, arms)


def test_parse_policy_normalises_fixed_weights() -> None:
    assert parse_policy("fixed:1,3", 2) == ("fixed", [0.25, 0.75])
    assert parse_policy("thompson", 4) == ("thompson", [0.25] * 4)


# --- Thompson's numbers ---------------------------------------------------------------------------


def test_thompson_allocation_follows_the_evidence() -> None:
    none = [ArmStats("1"), ArmStats("2")]
    assert all(abs(a - 0.5) < 0.05 for a in thompson(none, seed=1))
    clear = [ArmStats("1", n=2000, total=200, low=0, high=1), ArmStats("2", n=2000, total=300, low=0, high=1)]
    alloc = thompson(clear, seed=1)
    assert alloc[1] > 0.98 and alloc[0] >= 0.01 and abs(sum(alloc) - 1) < 1e-6
    assert regret(clear) == pytest.approx(2000 * (301 / 2002 - 201 / 2002), rel=1e-6)
    unbounded = [ArmStats("1", n=100, total=500, squares=100 * 26, low=2, high=8),
                 ArmStats("2", n=100, total=450, squares=100 * 21, low=2, high=8)]  # fmt: skip
    assert unbounded[0].posterior(False)[0] == "normal" and thompson(unbounded, seed=2)[0] > 0.9


# --- the CLI and a client -------------------------------------------------------------------------


def test_experiment_cli_and_fleet_status(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    result = run_cli("experiment", "mlp", "--arm", "1", "--arm", "2", "--policy", "fixed:50,50", "--reward",
                     "clicked", "--registry", store.root, "--keys", keys)  # fmt: skip
    assert result.code == 0, result.err
    assert "experiment (fixed, reward clicked): 1 50%, 2 50%" in result.out
    rewards(store, {"1": 0.2, "2": 0.4}, 200, at=datetime.now(UTC))
    status = run_cli("fleet", "status", "mlp", "--registry", store.root)
    assert status.code == 0, status.err
    assert "experiment (fixed, reward clicked), epoch 0" in status.out
    assert "arm 2: 200 rewards" in status.out and "P(best)" in status.out
    result = run_cli("experiment", "mlp", "--registry", store.root, "--keys", keys)
    assert result.code != 0 and "--arm V at least twice" in result.err
    result = run_cli("experiment", "mlp", "--off", "--registry", store.root, "--keys", keys)
    assert result.code == 0 and "no experiment" in result.out


@pytest.fixture
def served(registry: tuple[LocalStore, Path], tmp_path: Path) -> Iterator[str]:
    store, keys = registry
    with run_server(create_app(store, keys=keys, telemetry=tmp_path / "events.jsonl", pointer_seconds=0.0)) as url:
        yield url


def test_experiment_client_with_a_pinned_root_takes_an_arms_version(registry: tuple[LocalStore, Path],
                                                                     served: str, tmp_path: Path) -> None:  # fmt: skip
    """Version 2 is neither stable nor the candidate (3 is): only the signed experiment offers it."""
    store, keys = registry
    experiment(store, "mlp", _settings("fixed:0,1", ("1", "2")), keys=keys)
    root = keys / "root.json"
    with Client(served, "mlp", cache_dir=tmp_path / "cache", profile=DEVICE, root=root) as client:
        model = client.load()
        assert model.version == "2"
        model.feedback(1.0)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    (feedback,) = [e for e in events if e["event"] == "feedback"]
    assert feedback["version"] == "2" and feedback["reward"] == 1.0
