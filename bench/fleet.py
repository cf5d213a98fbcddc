"""The fleet simulator: simulated devices against the read API, with a simulated clock the
controller also reads, and what the controller decides.

    python bench/fleet.py [--seeds 50] [--devices 10000] [--scenarios good,failures,slow,experiment]
                          [--activity 0.2] [--out bench/results/fleet.json]

One signed registry per run: version 1 (a real onnx build of the tests' MLP) stable and a copy as
version 2. The server is `packager serve`'s own app (``create_app``) with the simulation's clock:
events are received, and segments dated, at simulated time. Devices call its transport-free read
API (``app.api.answer``, what the ASGI adapter and the Lambda function run beneath their
transports): each tick (5 simulated minutes) every device opens its app with probability
``--activity``: it resolves with its profile (its own device id), loads the version it was sent
(failing as the scenario says), predicts 4 times (latencies drawn per version) and, in an
experiment, reports one reward; its events go out as one telemetry batch, through the Python
client's own Telemetry class (predict sampling and all). During a rollout a device sent the
stable version reports a session with probability ``--stable-reports`` (0.1): stable's figures
are the second sample of the relative gates' two-sample tests, and a tenth of a 99% cohort still
outnumbers the candidate's at every step but the last, while posting every stable session would
cost the simulation ten times the time.
After each tick the server's segments are written (as its timer does) and the controller ticks
at the simulated time (`packager fleet tick`).

Scenarios:
  good        version 2 behaves like 1: a gated rollout should reach 100%
  failures    version 2 fails to load 2 points more often (0.2% -> 2.2%): halted
  slow        version 2 takes 40% longer: halted by the p95 gate
  experiment  arms 1 and 2 with rewards 0.10 and 0.15, Thompson against a fixed 50/50 split, to
              20,000 rewards: the better arm's share and the regret ratio
  drift       stable only, devices counting their inputs over the build's reference bins (the
              inputs drawn from the build's samples); from hour 2 a third of the features shift
              by half a standard deviation, and a run without the shift beside it: is drift
              flagged within two 1-hour windows, and never without the shift?

Gates (every rollout): load_failure_rate <= stable + 0.01, p95_ms <= 1.2 * stable,
error_rate <= stable + 0.005; steps 1,5,25,100; min 50 devices and 15 minutes a step.

A second part measures the ingest path on loopback: `packager serve` (uvicorn, one worker) and
one client posting batches of 100 events from 8 threads for --ingest-seconds; events/s and the
stored bytes per event (the gzip'd segments over the events).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICK = timedelta(minutes=5)
GATES = ("load_failure_rate <= stable + 0.01", "p95_ms <= 1.2 * stable", "error_rate <= stable + 0.005")
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Behaviour:
    """How a version behaves on devices."""

    load_failure: float = 0.002
    median_ms: float = 20.0
    error: float = 0.001
    reward: float = 0.10


STABLE = Behaviour()
SCENARIOS: dict[str, Behaviour] = {
    "good": Behaviour(),
    "failures": Behaviour(load_failure=0.022),
    "slow": Behaviour(median_ms=28.0),
    "experiment": Behaviour(reward=0.15),
}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Transport:
    """What the client's Telemetry posts through: the read API's telemetry route, no socket."""

    def __init__(self, app: Any, address: str) -> None:
        self.app, self.address = app, address

    def post(self, path: str, json: Any = None, timeout: float | None = None) -> Any:
        from packager.server.api import Call

        answer = self.app.api.answer(Call("POST", path, body=_dumps(json), client=self.address))
        return _Response(answer.status, answer.body)


@dataclass
class _Response:
    status_code: int
    body: Any

    @property
    def text(self) -> str:
        return bytes(self.body).decode(errors="replace")


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Run:
    scenario: str
    seed: int
    outcome: str = "undecided"  # promoted | halted | undecided (horizon reached)
    max_percent: int = 0
    exposed: float = 0.0  # the share of all devices ever sent version 2
    minutes: float = 0.0
    decisions: list[str] = field(default_factory=list)


def make_build(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    import models  # the tests' model scripts

    tmp.mkdir(parents=True, exist_ok=True)
    model = models.make_onnx_mlp(tmp)
    x, _ = models.digits(200)
    import numpy as np

    samples = tmp / "samples.npz"
    np.savez(samples, x=x / 16.0)
    subprocess.run([sys.executable, "-m", "packager", "build", str(model), "-t", "onnx", "--precision", "fp32",
                    "--samples", str(samples), "--out", str(tmp / "dist"), "--no-latency"],
                   check=True, capture_output=True)  # fmt: skip
    return tmp / "dist" / model.stem / "1"


def make_registry(build: Path, folder: Path) -> tuple[Any, Path, str]:
    from packager.registry.publish import init_keys, publish
    from packager.registry.store import LocalStore

    store, keys = LocalStore(folder / "registry"), folder / "keys"
    init_keys(keys, store, now=START)
    publish(build, store, keys=keys, now=START)
    second = folder / "v2" / build.parent.name / "2"
    shutil.copytree(build, second)
    record = json.loads((second / "build.json").read_text())
    record["model"]["version"] = "2"
    (second / "build.json").write_text(json.dumps(record))
    publish(second, store, keys=keys, now=START)
    return store, keys, build.parent.name


class Fleet:
    """``devices`` simulated devices, each with a profile like the Python client's."""

    def __init__(self, devices: int, rng: random.Random) -> None:
        arches = ("x86_64", "aarch64")
        self.profiles = []
        for i in range(devices):
            profile = {"platform": "linux", "arch": rng.choice(arches), "runtimes": {"onnxruntime": "1.20.1"},
                       "memory_mb": rng.choice((2048, 4096, 8192)), "device_id": f"sim-{i:05d}"}  # fmt: skip
            self.profiles.append(_dumps(profile))
        self.ids = [f"sim-{i:05d}" for i in range(devices)]

    def step(self, app: Any, model: str, behaviours: dict[str, Behaviour], rng: random.Random, activity: float,
             rewards: bool, seen: set[str], arms_seen: list[int] | None,
             stable_reports: float = 1.0) -> tuple[int, float]:  # fmt: skip
        """One tick: every device opens its app with probability ``activity``; returns (rewards
        sent, their regret against the best arm). A device sent the stable version during a
        rollout reports a session with probability ``stable_reports``."""
        from packager.client.telemetry import Telemetry
        from packager.server.api import Call

        transport = Transport(app, "10.0.0.1")
        best = max(b.reward for b in behaviours.values())
        sent, regret = 0, 0.0
        for index, body in enumerate(self.profiles):
            if rng.random() >= activity:
                continue
            answer = app.api.answer(Call("POST", f"/v1/models/{model}/resolve", body=body))
            if answer.status != 200:
                raise SystemExit(f"resolve answered {answer.status}: {bytes(answer.body)[:200]!r}")
            resolution = json.loads(bytes(answer.body))
            version, variant = resolution["version"], resolution["variant"]["id"]
            if version == "2":
                seen.add(self.ids[index])
            if arms_seen is not None and "arm" in resolution:
                arms_seen[resolution["arm"]] += 1
            behaviour = behaviours[version]
            if resolution["cohort"] == "stable" and rng.random() >= stable_reports:
                continue
            tele = Telemetry(transport, model=model, device_id=self.ids[index], queue=256, batch=100,  # type: ignore[arg-type]
                             seconds=5)  # fmt: skip
            tele.record("resolve", version=version, variant=variant, ms=2.0)
            if rng.random() < behaviour.load_failure:
                tele.record("load", version=version, variant=variant, ok=False, detail="failed in onnxruntime")
            else:
                tele.record("load", version=version, variant=variant, ok=True, ms=30.0)
                for _ in range(4):
                    if rng.random() < behaviour.error:
                        tele.record("error", version=version, variant=variant, detail="predict raised")
                    else:
                        tele.predicted(rng.lognormvariate(math.log(behaviour.median_ms), 0.25), version=version,
                                       variant=variant)  # fmt: skip
                if rewards:
                    tele.record("feedback", version=version, variant=variant,
                                reward=float(rng.random() < behaviour.reward))  # fmt: skip
                    sent += 1
                    regret += best - behaviour.reward
            tele.flush()
        return sent, regret


def server(store: Any, keys: Path, clock: Clock) -> Any:
    from packager.server.app import create_app

    loose = {"address_requests_per_second": 1e9, "address_burst": 1e9, "device_events_per_second": 1e9,
             "device_burst": 1e9, "model_events_per_day": 10**12}  # fmt: skip
    # pointers are read again after each tick (view.forget), when the controller may have moved them
    return create_app(store, keys=keys, pointer_seconds=1e9, clock=clock, overrides={"telemetry": loose})


def run_rollout(build: Path, scenario: str, seed: int, args: argparse.Namespace, work: Path) -> Run:
    from packager.fleet.controller import tick
    from packager.fleet.gates import Plan, parse_gate
    from packager.registry.channels import read_pointer
    from packager.registry.docs import iso
    from packager.registry.publish import rollout

    folder = work / f"{scenario}-{seed}"
    store, keys, model = make_registry(build, folder)
    clock = Clock(START)
    plan = Plan(version="2", steps=(1, 5, 25, 100), gates=tuple(parse_gate(g) for g in GATES), min_devices=50,
                min_minutes=15, step_started=iso(START))  # fmt: skip
    rollout(store, model, "2", percent=1, keys=keys, plan=plan.to_json(), now=START)
    app = server(store, keys, clock)
    rng = random.Random(seed)
    fleet = Fleet(args.devices, rng)
    behaviours = {"1": STABLE, "2": SCENARIOS[scenario]}
    run, seen = Run(scenario, seed, max_percent=1), set()
    horizon = START + timedelta(hours=args.hours)
    while clock.now < horizon:
        fleet.step(app, model, behaviours, rng, args.activity, False, seen, None, args.stable_reports)
        clock.now += TICK
        app.state.service.telemetry.flush(clock.now)
        app.state.service.view.forget(model)
        for decision in tick(store, keys=keys, now=clock.now, tick_minutes=5.0):
            run.decisions.append(f"{(clock.now - START).total_seconds() / 60:.0f}m {decision.action} "
                                 f"{decision.percent}%: {decision.reason}"[:300])  # fmt: skip
            run.max_percent = max(run.max_percent, decision.percent if decision.action == "advance" else 0)
        pointer = read_pointer(store, model, "stable")
        if pointer.stable == "2":
            run.outcome, run.max_percent = "promoted", 100
            break
        if pointer.candidate is None:
            run.outcome = "halted"
            break
        run.max_percent = max(run.max_percent, pointer.percent)
    run.minutes = (clock.now - START).total_seconds() / 60
    run.exposed = len(seen) / args.devices
    shutil.rmtree(folder, ignore_errors=True)
    return run


def run_drift(build: Path, shift: bool, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Stable only; devices count a sample of their inputs over the reference bins. With ``shift``,
    from hour 2 a third of the features move by half their standard deviation. The controller's
    drift report runs at the end of every hour (a 1-hour window)."""
    import numpy as np

    from packager.client.telemetry import Telemetry
    from packager.fleet.drift import counts, report_for
    from packager.registry.channels import read_pointer
    from packager.server.api import Call

    folder = work / f"drift-{shift}-{seed}"
    store, keys, model = make_registry(build, folder)
    ref = json.loads((build / "build.json").read_text())["model"]["reference"]
    with np.load(build / "validation" / "samples.npz") as data:
        (name,) = data.files
        values = data[name]
    moved = list(range(0, values.shape[1], 3))
    step = np.zeros(values.shape[1], values.dtype)
    step[moved] = 0.5 * values[:, moved].std(axis=0)
    clock = Clock(START)
    app = server(store, keys, clock)
    rng = random.Random(seed)
    pick = np.random.default_rng(seed)
    fleet = Fleet(args.devices, rng)
    shift_at = START + timedelta(hours=2)
    transport = Transport(app, "10.0.0.1")
    flagged: list[float] = []
    while clock.now < START + timedelta(hours=5):
        for index, body in enumerate(fleet.profiles):
            if rng.random() >= args.drift_activity:
                continue
            answer = app.api.answer(Call("POST", f"/v1/models/{model}/resolve", body=body))
            resolution = json.loads(bytes(answer.body))
            tele = Telemetry(transport, model=model, device_id=fleet.ids[index], queue=64, batch=100,  # type: ignore[arg-type]
                             seconds=5)  # fmt: skip
            rows = values[pick.integers(0, len(values), 4)]
            if shift and clock.now >= shift_at:
                rows = rows + step
            tele.counted(counts(ref, {name: rows}, {}), version=resolution["version"],
                         variant=resolution["variant"]["id"])  # fmt: skip
            tele.flush()
        clock.now += TICK
        app.state.service.telemetry.flush(clock.now)
        if (clock.now - START) % timedelta(hours=1) == timedelta(0):
            pointer = read_pointer(store, model, "stable")
            found = report_for(store, pointer, timedelta(hours=1), clock.now)
            if any(v["drifted"] for v in found["versions"].values()):
                flagged.append((clock.now - START).total_seconds() / 3600)
    shutil.rmtree(folder, ignore_errors=True)
    return {"shift": shift, "seed": seed, "shift_at_hour": 2 if shift else None, "flagged_at_hours": flagged}


def run_experiment(build: Path, policy: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from packager.fleet.controller import tick
    from packager.fleet.experiment import start
    from packager.registry.channels import read_pointer
    from packager.registry.publish import experiment

    folder = work / f"experiment-{policy}-{seed}"
    store, keys, model = make_registry(build, folder)
    clock = Clock(START)
    settings = start(arms=["1", "2"], policy=policy, reward="clicked", epoch_minutes=5, now=START)
    experiment(store, model, settings, keys=keys, now=START)
    app = server(store, keys, clock)
    rng = random.Random(seed)
    fleet = Fleet(args.devices, rng)
    behaviours = {"1": STABLE, "2": SCENARIOS["experiment"]}
    rewards, regret, arms = 0, 0.0, [0, 0]
    while rewards < args.rewards:
        sent, lost = fleet.step(app, model, behaviours, rng, args.activity, True, set(), arms)
        rewards, regret = rewards + sent, regret + lost
        clock.now += TICK
        app.state.service.telemetry.flush(clock.now)
        app.state.service.view.forget(model)
        tick(store, keys=keys, now=clock.now, tick_minutes=5.0)
    allocation = (read_pointer(store, model, "stable").experiment or {})["allocation"]
    shutil.rmtree(folder, ignore_errors=True)
    return {"policy": policy, "seed": seed, "rewards": rewards, "regret": round(regret, 3),
            "better_arm_allocation": round(float(allocation[1]), 4), "assigned": arms,
            "minutes": (clock.now - START).total_seconds() / 60}  # fmt: skip


INGEST_SERVER = """
import sys
import uvicorn
from pathlib import Path
from packager.registry.store import LocalStore
from packager.server.app import create_app

loose = {"address_requests_per_second": 1e9, "address_burst": 1e9, "device_events_per_second": 1e9,
         "device_burst": 1e9, "model_events_per_day": 10**12}
app = create_app(LocalStore(Path(sys.argv[1])), overrides={"telemetry": loose})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", loop="uvloop", http="httptools")
"""


def ingest(build: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Events/s through `packager serve`'s app on uvicorn (one worker, its own process) on
    loopback, from 8 client threads posting batches of 100 events; stored bytes per event."""
    import signal
    import socket

    import httpx

    store, _keys, model = make_registry(build, work / "ingest")
    batches = _batches(model)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", INGEST_SERVER, str(store.root), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        accepted, elapsed = _post_for(url, batches, args.ingest_seconds)
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's shutdown runs the lifespan's last segment write
        proc.wait(timeout=60)
    stored = sum(p.stat().st_size for p in (Path(store.root) / "telemetry").rglob("*.gz"))
    segments = len(list((Path(store.root) / "telemetry").rglob("*.gz")))
    return {"events": accepted, "seconds": round(elapsed, 2), "events_per_s": round(accepted / elapsed),
            "stored_bytes": stored, "segments": segments, "bytes_per_event": round(stored / max(accepted, 1), 1),
            "goal_events_per_s": 5000, "goal_bytes_per_event": 200, "client": "8 threads, httpx, batches of 100",
            "httpx": httpx.__version__}  # fmt: skip


def _batches(model: str) -> list[bytes]:
    """200 batches of 100 events, as clients send them: predicts, loads and feedback."""
    rng = random.Random(0)
    batches = []
    for b in range(200):
        events = []
        for i in range(100):
            kind = rng.choice(("predict", "predict", "predict", "load", "feedback"))
            event: dict[str, Any] = {"event": kind, "model": model, "version": "1", "variant": "onnx-fp32",
                                     "device_id": f"dev-{b:03d}-{i % 10}",
                                     "at": f"2026-01-05T09:{i % 60:02d}:00.{rng.randrange(10**6):06d}Z"}  # fmt: skip
            if kind == "predict":
                event["ms"] = round(rng.lognormvariate(3, 0.25), 3)
            elif kind == "load":
                event["ok"] = True
            else:
                event["reward"] = float(rng.random() < 0.1)
            events.append(event)
        batches.append(_dumps({"events": events}))
    return batches


def _wait(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {url} did not start")


def _post_for(url: str, batches: list[bytes], seconds: float) -> tuple[int, float]:
    import httpx

    accepted, lock = 0, threading.Lock()
    stop = time.monotonic() + seconds

    def post(offset: int) -> None:
        nonlocal accepted
        mine, i = 0, offset
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < stop:
                r = client.post("/v1/telemetry", content=batches[i % len(batches)],
                                headers={"content-type": "application/json"})  # fmt: skip
                mine += 100 if r.status_code == 202 else 0
                i += 1
        with lock:
            accepted += mine

    started = time.monotonic()
    threads = [threading.Thread(target=post, args=(k * 25,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted, time.monotonic() - started


def summarize(runs: list[Run], experiments: list[dict[str, Any]], drifts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if drifts:
        shifted = [d for d in drifts if d["shift"]]
        first = [min((h for h in d["flagged_at_hours"] if h > 2), default=None) for d in shifted]
        out["drift"] = {"seeds": len(shifted),
                        "flagged_within_two_windows": sum(f is not None and f <= 4 for f in first),
                        "flagged_before_the_shift": sum(any(h <= 2 for h in d["flagged_at_hours"]) for d in shifted),
                        "flagged_without_a_shift": sum(bool(d["flagged_at_hours"]) for d in drifts
                                                       if not d["shift"])}  # fmt: skip
    for scenario in ("good", "failures", "slow"):
        mine = [r for r in runs if r.scenario == scenario]
        if not mine:
            continue
        out[scenario] = {"seeds": len(mine), "promoted": sum(r.outcome == "promoted" for r in mine),
                         "halted": sum(r.outcome == "halted" for r in mine),
                         "undecided": sum(r.outcome == "undecided" for r in mine),
                         "max_exposed": round(max(r.exposed for r in mine), 4),
                         "median_minutes": statistics.median(r.minutes for r in mine),
                         "max_percent": max(r.max_percent for r in mine)}  # fmt: skip
    thompson = [e for e in experiments if e["policy"] == "thompson"]
    fixed = {e["seed"]: e for e in experiments if e["policy"] != "thompson"}
    if thompson:
        ratios = [e["regret"] / fixed[e["seed"]]["regret"] for e in thompson if fixed.get(e["seed"], {}).get("regret")]
        out["experiment"] = {"seeds": len(thompson),
                             "better_arm_allocation_min": min(e["better_arm_allocation"] for e in thompson),
                             "better_arm_allocation_median": statistics.median(e["better_arm_allocation"]
                                                                               for e in thompson),
                             "regret_ratio_median": round(statistics.median(ratios), 4) if ratios else None,
                             "regret_ratio_max": round(max(ratios), 4) if ratios else None}  # fmt: skip
    return out


def verdicts(summary: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's bars, each true, false, or None where its scenario did not run."""
    good, fail, slow, exp = (summary.get(k) for k in ("good", "failures", "slow", "experiment"))
    bad = [s for s in (fail, slow) if s]
    return {
        "bad_halted_within_5pct_every_seed": (all(s["halted"] == s["seeds"] and s["max_exposed"] <= 0.05 for s in bad)
                                              if bad else None),
        "good_promoted_all_but_one": None if not good else good["promoted"] >= good["seeds"] - 1,
        "thompson_better_arm_90pct": None if not exp else exp["better_arm_allocation_median"] >= 0.9,
        "thompson_regret_le_0_4_fixed": None if not exp or exp["regret_ratio_median"] is None
        else exp["regret_ratio_median"] <= 0.4,
        "drift_flagged_within_two_windows_never_without_shift": None if not summary.get("drift") else (
            summary["drift"]["flagged_within_two_windows"] == summary["drift"]["seeds"]
            and summary["drift"]["flagged_before_the_shift"] == 0 and summary["drift"]["flagged_without_a_shift"] == 0),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--activity", type=float, default=0.5, help="chance a device opens its app in a tick")
    parser.add_argument("--stable-reports", type=float, default=0.1,
                        help="during a rollout, the share of stable devices' sessions reported")  # fmt: skip
    parser.add_argument("--hours", type=float, default=24.0, help="simulated horizon of a rollout")
    parser.add_argument("--rewards", type=int, default=20000)
    parser.add_argument("--scenarios", default="good,failures,slow,experiment,drift")
    parser.add_argument("--merge", type=Path, nargs="+", help="combine result files of disjoint seeds into --out")
    parser.add_argument("--drift-activity", type=float, default=0.02,
                        help="drift runs: chance a device opens its app (and counts 4 calls) in a tick")  # fmt: skip
    parser.add_argument("--ingest-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    scenarios = [s for s in args.scenarios.split(",") if s]
    started = time.monotonic()
    runs: list[Run] = []
    experiments: list[dict[str, Any]] = []
    drifts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="packager-fleet-") as tmp:
        work = Path(tmp)
        build = make_build(work / "build")
        figures = {"ingest": ingest(build, args, work)} if args.ingest_seconds > 0 else {}
        print(json.dumps(figures), flush=True)
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for scenario in scenarios:
                if scenario == "drift":
                    for shift in (True, False):
                        drifts.append(run_drift(build, shift, seed, args, work))
                        print(json.dumps(drifts[-1]), flush=True)
                elif scenario == "experiment":
                    for policy in ("thompson", "fixed:50,50"):
                        experiments.append(run_experiment(build, policy, seed, args, work))
                        print(json.dumps(experiments[-1]), flush=True)
                else:
                    run = run_rollout(build, scenario, seed, args, work)
                    runs.append(run)
                    print(json.dumps({k: v for k, v in run.__dict__.items() if k != "decisions"}), flush=True)
            write(args, started, figures, runs, experiments, drifts, done=seed + 1 - args.seed_start)


def write(args: argparse.Namespace, started: float, figures: dict[str, Any], runs: list[Run],
          experiments: list[dict[str, Any]], drifts: list[dict[str, Any]], done: int) -> None:  # fmt: skip
    """The results so far (rewritten after every seed, so a run cut short keeps what it did)."""
    summary = summarize(runs, experiments, drifts)
    doc = {"machine": {"python": platform.python_version(), "cpus": _cpus()},
           "settings": {k: v for k, v in vars(args).items() if k not in ("out", "merge")},
           "seeds_done": done, "complete": done == args.seeds, "gates": list(GATES),
           "seconds": round(time.monotonic() - started, 1), **figures, "summary": summary,
           "verdicts": verdicts(summary), "runs": [r.__dict__ for r in runs], "experiments": experiments,
           "drift": drifts}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"seeds_done": done, "summary": summary, "verdicts": doc["verdicts"]}), flush=True)


def merge(paths: list[Path], out: Path) -> None:
    """One result file from several runs over disjoint seeds (e.g. one process per core)."""
    docs = [json.loads(p.read_text()) for p in paths]
    runs = [Run(**{**r, "decisions": r.get("decisions", [])}) for d in docs for r in d["runs"]]
    experiments = [e for d in docs for e in d["experiments"]]
    drifts = [x for d in docs for x in d.get("drift", [])]
    summary = summarize(runs, experiments, drifts)
    merged = {**docs[0], "merged_from": [str(p.name) for p in paths], "seeds_done": sum(d["seeds_done"] for d in docs),
              "complete": all(d["complete"] for d in docs), "seconds": max(d["seconds"] for d in docs),
              "summary": summary, "verdicts": verdicts(summary), "runs": [r.__dict__ for r in runs],
              "experiments": experiments, "drift": drifts}  # fmt: skip
    merged["settings"] = {
        **{k: v for k, v in merged["settings"].items() if k not in ("out", "merge")},
        "seeds": merged["seeds_done"],
        "seed_start": 0,
    }
    out.write_text(json.dumps(merged, indent=1) + "\n")
    print(json.dumps({"seeds_done": merged["seeds_done"], "summary": summary, "verdicts": merged["verdicts"]}))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
