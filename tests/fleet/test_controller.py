"""Gated rollouts (packager/fleet/gates.py, controller.py): a real registry with versions 1 and 2
of a real build, devices' events written as the server writes them, and the controller's ticks at
simulated times."""

from __future__ import annotations

import json
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))

from conftest import run_cli
from registry_helpers import copy_build

from packager.errors import UsageError
from packager.fleet.controller import evaluate, tick
from packager.fleet.gates import Plan, alpha_at, mover, parse_gate, parse_steps, quantile_ranks, wilson
from packager.registry.channels import read_pointer
from packager.registry.docs import iso
from packager.registry.publish import init_keys, publish, rollout
from packager.registry.store import LocalStore
from packager.server.telemetry import TelemetrySink

START = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC)
GATES = ("load_failure_rate <= 0.01", "p95_ms <= 1.2 * stable", "error_rate <= stable + 0.005")


@pytest.fixture
def registry(built_mlp: Path, tmp_path: Path) -> tuple[LocalStore, Path]:
    """A signed registry: version 1 stable, version 2 in a gated rollout begun at START."""
    store, keys = LocalStore(tmp_path / "registry"), tmp_path / "keys"
    init_keys(keys, store)
    publish(built_mlp, store, keys=keys)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=keys)
    plan = Plan(version="2", steps=(1, 5, 25, 100), gates=tuple(parse_gate(g) for g in GATES), min_devices=500,
                min_minutes=15, step_started=iso(START))  # fmt: skip
    rollout(store, "mlp", "2", percent=1, keys=keys, plan=plan.to_json(), now=START)
    return store, keys


def report(store: LocalStore, version: str, devices: int, *, at: datetime, failures: float = 0.0,
           slow: float = 1.0, seed: int = 0) -> None:  # fmt: skip
    """Each device loads once (failing with probability ``failures``) and predicts 4 times, in
    about 20 ms (times ``slow``), with an error now and then."""
    rng = random.Random(seed)
    events = []
    for d in range(devices):
        base = {"model": "mlp", "version": version, "variant": "onnx-fp32", "device_id": f"{version}-{seed}-{d}"}
        events.append({**base, "event": "load", "ok": rng.random() >= failures})
        events += [{**base, "event": "predict", "ms": rng.gauss(20, 3) * slow} for _ in range(4)]
        if rng.random() < 0.002:
            events.append({**base, "event": "error"})
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(events, received=at)
    sink.flush(at)


def test_gate_parses_limits_fixed_and_relative_to_stable() -> None:
    assert parse_gate("load_failure_rate <= 0.01").limit(None) == 0.01
    assert parse_gate("p95_ms <= 1.2 * stable").limit(10.0) == pytest.approx(12.0)
    assert parse_gate("error_rate<=stable+0.005").limit(0.01) == pytest.approx(0.015)
    assert parse_gate("shadow_agreement >= stable - 0.01").limit(0.99) == pytest.approx(0.98)
    assert parse_gate("p95_ms <= 1.2 * stable").limit(None) is None  # no stable figure yet


@pytest.mark.parametrize("text", ["p95 <= 3", "load_failure_rate < 0.01", "p95_ms >= 3", "error_rate <= 2 * x", ""])
def test_gate_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError):
        parse_gate(text)


@pytest.mark.parametrize("text", ["1,5,25", "5,1,100", "0,100", "1,1,100", "a,100", ""])
def test_steps_must_rise_to_100(text: str) -> None:
    with pytest.raises(UsageError):
        parse_steps(text)


def test_wilson_bounds_and_the_error_budget() -> None:
    lower, upper = wilson(0, 100, 0.025)
    assert lower == 0.0 and upper == pytest.approx(1.96**2 / (100 + 1.96**2), rel=1e-3)
    lower, upper = wilson(50, 100, 0.025)
    assert lower == pytest.approx(0.4038, abs=1e-3) and upper == pytest.approx(0.5962, abs=1e-3)
    assert sum(alpha_at(0.05, k) for k in range(1, 100_000)) < 0.05
    assert math.isclose(sum(alpha_at(0.05, k) for k in range(1, 1_000_000)), 0.05, rel_tol=1e-4)


def test_mover_bounds_a_difference_of_shares_as_often_as_asked() -> None:
    """c - k*s below its lower bound (and above its upper) in about alpha of the draws, not more."""
    rng = np.random.default_rng(5)
    cases = [(0.01, 0.008, 1.0, 800, 20_000), (0.002, 0.002, 1.0, 400, 400), (0.05, 0.04, 1.2, 300, 5_000)]
    for c, s, k, n, m in cases:
        below = above = 0
        for hits, base in zip(rng.binomial(n, c, 4000), rng.binomial(m, s, 4000), strict=True):
            _, lower, upper = mover(int(hits), n, int(base), m, k, 0.05)
            below += lower > c - k * s
            above += upper < c - k * s
        assert below / 4000 < 0.075 and above / 4000 < 0.075, (c, s, k, below, above)


def test_mover_is_wilson_when_stable_is_known_exactly() -> None:
    _, lower, upper = mover(8, 800, 10**9, 10**12, 1.0, 0.01)
    low, high = wilson(8, 800, 0.01)
    assert lower == pytest.approx(low - 1e-3, abs=1e-6) and upper == pytest.approx(high - 1e-3, abs=1e-6)


def test_quantile_ranks_bound_the_quantile_as_often_as_asked() -> None:
    rng = np.random.default_rng(6)
    ranks = quantile_ranks(400, 0.95, 0.05)
    assert ranks is not None and ranks[0] < 380 < ranks[1] <= 400
    true = float(np.quantile(rng.lognormal(3, 0.3, 2_000_000), 0.95))
    draws = np.sort(rng.lognormal(3, 0.3, (3000, 400)), axis=1)
    assert (draws[:, ranks[0] - 1] > true).mean() < 0.07 and (draws[:, ranks[1] - 1] < true).mean() < 0.07
    assert quantile_ranks(60, 0.95, 0.025) is None  # too few calls to bound a p95 from above


def test_relative_gates_wait_for_enough_of_stable_to_compare_with(registry: tuple[LocalStore, Path]) -> None:
    """Stable's figure is a sample too: with a handful of stable devices the relative gates stay
    undecided (its p95 cannot be bounded, its error rate is wide), though the candidate is fine."""
    store, keys = registry
    report(store, "1", 15, at=START + timedelta(minutes=10))
    report(store, "2", 800, at=START + timedelta(minutes=10), seed=7)
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=16))
    verdicts = {v.gate: v for v in decision.verdicts}
    assert decision.action == "hold" and verdicts["p95_ms <= 1.2 * stable"].verdict == "undecided"
    report(store, "1", 3000, at=START + timedelta(minutes=20), seed=8)
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=21))
    assert decision.action == "advance", decision
    p95 = {v.gate: v for v in decision.verdicts}["p95_ms <= 1.2 * stable"]
    assert p95.upper is not None and p95.upper <= 0.05 and p95.trials == 3200


def test_controller_holds_until_a_step_has_seen_enough(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    report(store, "1", 2000, at=START + timedelta(minutes=3))
    report(store, "2", 600, at=START + timedelta(minutes=3), seed=1)
    early = evaluate(store, read_pointer(store, "mlp", "stable"), START + timedelta(minutes=5), tick_minutes=5)
    assert early is not None and early.action == "hold" and early.reason.startswith("waiting: 600 of 500 devices, 5")
    assert tick(store, keys=keys, now=START + timedelta(minutes=5))[0].action == "hold"
    assert read_pointer(store, "mlp", "stable").generation == 3  # a hold writes nothing


def test_controller_takes_a_good_candidate_through_every_step(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    now = START
    for step, (percent, nxt) in enumerate([(1, 5), (5, 25), (25, 100)]):
        assert read_pointer(store, "mlp", "stable").percent == percent
        report(store, "1", 3000, at=now + timedelta(minutes=10), seed=10 + step)
        report(store, "2", 800, at=now + timedelta(minutes=10), seed=20 + step)
        now += timedelta(minutes=16)
        (decision,) = tick(store, keys=keys, now=now)
        assert decision.action == ("promote" if nxt == 100 else "advance"), decision
        assert all(v.verdict == "pass" for v in decision.verdicts)
    pointer = read_pointer(store, "mlp", "stable")
    assert (pointer.stable, pointer.candidate, pointer.plan) == ("2", None, None)
    steps = [h for h in pointer.history if h.get("decision")]
    assert [h["decision"] for h in steps] == ["advance", "advance", "promote"]
    gate = steps[0]["gates"][0]
    assert gate["gate"] == "load_failure_rate <= 0.01" and gate["trials"] == 800 and gate["upper"] <= 0.01


def test_controller_halts_a_candidate_with_more_load_failures(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    report(store, "1", 3000, at=START + timedelta(minutes=10))
    report(store, "2", 800, at=START + timedelta(minutes=10), failures=0.05, seed=3)
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=16))
    assert decision.action == "halt" and "load_failure_rate <= 0.01" in decision.reason
    pointer = read_pointer(store, "mlp", "stable")
    assert (pointer.stable, pointer.candidate, pointer.percent, pointer.plan) == ("1", None, 0, None)
    last = pointer.history[-1]
    assert last["action"] == "halt" and last["candidate"] == "2" and last["decision"] == "halt"
    (failed,) = [g for g in last["gates"] if g["verdict"] == "fail"]
    assert failed["lower"] > 0.01 and failed["trials"] == 800


def test_controller_halts_a_slower_candidate(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    report(store, "1", 3000, at=START + timedelta(minutes=10))
    report(store, "2", 800, at=START + timedelta(minutes=10), slow=1.4, seed=4)
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=16))
    assert decision.action == "halt" and "p95_ms <= 1.2 * stable" in decision.reason


def test_a_rollout_by_hand_ends_the_plan(registry: tuple[LocalStore, Path]) -> None:
    store, keys = registry
    rollout(store, "mlp", "2", percent=50, keys=keys)
    assert read_pointer(store, "mlp", "stable").plan is None
    assert tick(store, keys=keys, now=START + timedelta(hours=1)) == []


def test_cli_gated_rollout_status_and_tick(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "registry")
    publish(built_mlp, store)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store)
    reg = str(store.root)
    refused = run_cli("rollout", "mlp", "--version", "2", "--gate", "load_failure_rate <= 0.01", "--registry", reg)
    assert refused.code != 0 and "--gate is for a gated rollout" in refused.err
    refused = run_cli("rollout", "mlp", "--version", "2", "--steps", "1,100", "--gate", "p95 <= 3", "--registry", reg)
    assert refused.code != 0 and "no metric 'p95'" in refused.err and read_pointer(store, "mlp", "stable").percent == 0
    done = run_cli("rollout", "mlp", "--version", "2", "--steps", "2,10,100", "--gate", "load_failure_rate <= 0.01",
                   "--gate", "p95_ms <= 1.2 * stable", "--min-devices", "50", "--registry", reg)  # fmt: skip
    assert done.code == 0, done.err
    assert "candidate 2 at 2%" in done.out and "gated: steps 2,10,100" in done.out
    status = run_cli("fleet", "status", "mlp", "--registry", reg)
    assert status.code == 0, status.err
    assert "gated rollout of 2: step 1 of 3" in status.out and "a tick now: hold (2%): waiting: 0 of 50" in status.out
    ticked = run_cli("fleet", "tick", "--registry", reg)
    assert ticked.code == 0 and "mlp/stable: hold (2%): waiting" in ticked.out


def test_a_halt_is_a_signed_pointer_devices_verify_and_its_replay_is_refused(built_mlp: Path, tmp_path: Path) -> None:
    """The controller's decision reaches a device only as signed metadata: a device with a pinned
    root takes the halt, refuses the older signed state replayed to it, and refuses a resolution
    to the halted version that the signed pointer no longer offers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
    from client_helpers import run_server

    from packager.client import Client
    from packager.registry.verify import VerificationError
    from packager.server import create_app

    now = datetime.now(UTC).replace(microsecond=0)
    store, keys = LocalStore(tmp_path / "registry"), tmp_path / "keys"
    root = init_keys(keys, store)
    publish(built_mlp, store, keys=keys)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=keys)
    plan = Plan(version="2", steps=(50, 100), gates=(parse_gate("load_failure_rate <= 0.01"),), min_devices=100,
                min_minutes=15, step_started=iso(now - timedelta(minutes=20)))  # fmt: skip
    rollout(store, "mlp", "2", percent=50, keys=keys, plan=plan.to_json())
    device = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": "1.20"}}
    before = (tmp_path / "registry" / "tuf" / "timestamp.json").read_bytes()
    with run_server(create_app(store, pointer_seconds=0.0)) as url:
        with Client(url, "mlp", cache_dir=tmp_path / "device", profile=device, root=root) as client:
            client.resolve()  # the device trusts the state before the halt
        report(store, "2", 800, at=now - timedelta(minutes=5), failures=0.05, seed=3)
        (decision,) = tick(store, keys=keys, now=now)
        assert decision.action == "halt"
        with Client(url, "mlp", cache_dir=tmp_path / "device", profile=device, root=root) as client:
            resolution = client.resolve()  # verified against the newly signed pointer
            assert resolution["version"] == "1"
            assert client.trust is not None
            with pytest.raises(VerificationError, match="does not offer"):
                client.trust.check_resolution(client.http, {**resolution, "version": "2"}, "stable")
        stamp = tmp_path / "registry" / "tuf" / "timestamp.json"
        stamp.chmod(0o644)
        stamp.write_bytes(before)  # the server replays the state from before the halt
        with (
            Client(url, "mlp", cache_dir=tmp_path / "device", profile=device, root=root) as client,
            pytest.raises(VerificationError, match="signed metadata rejected"),
        ):
            client.resolve()


@pytest.mark.parametrize(("shift", "action"), [(0.0, "promote"), (0.5, "halt")])
def test_controller_drift_gate(built_mlp: Path, tmp_path: Path, shift: float, action: str) -> None:
    """`drift_psi <= 0.2`: the candidate's devices count their inputs over its build's reference
    bins; the inputs as built pass, the same shifted by half a standard deviation halt."""
    import numpy as np

    from packager.fleet.drift import counts

    store, keys = LocalStore(tmp_path / "registry"), tmp_path / "keys"
    init_keys(keys, store, now=START)
    publish(built_mlp, store, keys=keys, now=START)
    publish(copy_build(built_mlp, tmp_path / "dist", "2"), store, keys=keys, now=START)
    plan = Plan(version="2", steps=(50, 100), gates=(parse_gate("drift_psi <= 0.2"),), min_devices=20,
                min_minutes=15, step_started=iso(START))  # fmt: skip
    rollout(store, "mlp", "2", percent=50, keys=keys, plan=plan.to_json(), now=START)
    ref = json.loads((built_mlp / "build.json").read_text())["model"]["reference"]
    with np.load(built_mlp / "validation" / "samples.npz") as data:
        x = {k: data[k] + shift * data[k].std(axis=0) for k in data.files}
    base = {"model": "mlp", "version": "2", "variant": "onnx-fp32", "event": "inputs"}
    rows = [{k: v[i * 10 : i * 10 + 10] for k, v in x.items()} for i in range(20)]  # 10 calls a device
    events = [{**base, "device_id": f"d{i}", "bins": counts(ref, rows[i], {})} for i in range(20)]
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(events, received=START + timedelta(minutes=10))
    sink.flush(START + timedelta(minutes=10))
    (decision,) = tick(store, keys=keys, now=START + timedelta(minutes=16))
    assert decision.action == action
    (verdict,) = decision.verdicts
    assert verdict.trials == 200 and (verdict.value > 0.2) == (action == "halt")


def test_drift_gate_is_an_upper_limit_on_a_number() -> None:
    with pytest.raises(UsageError, match="a drift gate is an upper limit"):
        parse_gate("drift_psi <= 1.2 * stable")
    with pytest.raises(UsageError, match="a drift gate is an upper limit"):
        parse_gate("drift_psi >= 0.1")
