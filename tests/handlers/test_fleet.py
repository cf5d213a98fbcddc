"""The fleet function on AWS (handlers/fleet.py) as `sam build` packages it (handlers/Makefile,
build-FleetFunction), against a real S3 server (SeaweedFS) holding a signed registry with a gated
rollout and devices' telemetry: a replayed scheduled event runs the controller, which signs its
decision; replayed HTTP API events read the fleet routes with the tokens of the secret that
`packager fleet secret` prints. Last, the function with its own DuckDB and python-tuf under
awslambdaric, as Lambda runs it."""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))

from registry_helpers import copy_build
from seaweed import ACCESS_KEY, SECRET_KEY, Seaweed, run_seaweed

from packager.fleet.gates import Plan, parse_gate
from packager.registry.channels import read_pointer
from packager.registry.docs import iso
from packager.registry.publish import init_keys, publish, rollout
from packager.registry.s3 import S3Store
from packager.server.fleet import UPLOT
from packager.server.telemetry import TelemetrySink
from packager.server.tokens import add_token

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
STARTED = timedelta(minutes=20)  # the rollout's first step began this long before the test


@dataclass(frozen=True)
class Fleet:
    seaweed: Seaweed
    keys: Path
    secret: Path
    tokens: dict[str, str]
    build: Path
    work: Path


def build(into: Path, **settings: str) -> Path:
    done = subprocess.run(["make", "--makefile", str(ROOT / "handlers" / "Makefile"), "build-FleetFunction",
                           *(f"{k}={v}" for k, v in settings.items())],
                          env={**os.environ, "ARTIFACTS_DIR": str(into)}, cwd=into, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return into


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function's code without its pip step: this process has DuckDB and python-tuf."""
    return build(tmp_path_factory.mktemp("fleet-function"), SKIP_DEPS="1")


@pytest.fixture(scope="module")
def fleet(built_mlp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A signed registry in the bucket: 1 stable, 2 in a gated rollout at 1% since 20 minutes,
    with enough good reports of 2 for its gate to pass; the function's secret in a file."""
    work = tmp_path_factory.mktemp("fleet")
    patch = pytest.MonkeyPatch()
    for name, value in {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        patch.setenv(name, value)
    with run_seaweed(work / "seaweed") as seaweed:
        keys = work / "keys"
        registry(seaweed, "reg", built_mlp, keys, work)
        tokens_path = work / "tokens.json"
        tokens = {"mlp": add_token(tokens_path, "mlp"), "other": add_token(tokens_path, "digits")}
        printed = run_cli("fleet", "secret", "--keys", keys, "--tokens", tokens_path)
        assert printed.code == 0, printed.err
        secret = work / "secret.json"
        secret.write_text(printed.out)
        yield Fleet(seaweed=seaweed, keys=keys, secret=secret, tokens=tokens, build=built_mlp, work=work)
    patch.undo()


def registry(seaweed: Seaweed, prefix: str, build: Path, keys: Path, work: Path) -> S3Store:
    """The registry under ``prefix``: the rollout of 2 at 1% begun ``STARTED`` ago, its reports."""
    store = S3Store.from_url(f"s3://{seaweed.bucket}/{prefix}", endpoint_url=seaweed.endpoint)
    init_keys(keys, store)
    publish(build, store, keys=keys)
    publish(copy_build(build, work / f"dist-{prefix}", "2"), store, keys=keys)
    began = datetime.now(UTC).replace(microsecond=0) - STARTED
    plan = Plan(version="2", steps=(1, 5, 25, 100), gates=(parse_gate("load_failure_rate <= 0.05"),),
                min_devices=300, min_minutes=15, step_started=iso(began))  # fmt: skip
    rollout(store, "mlp", "2", percent=1, keys=keys, plan=plan.to_json(), now=began)
    report(store, began + timedelta(minutes=5))
    return store


def report(store: S3Store, at: datetime) -> None:
    rng, events = random.Random(3), []
    for version in ("1", "2"):
        for d in range(400):
            base = {"model": "mlp", "version": version, "variant": "onnx-fp32", "device_id": f"{version}-{d}"}
            events.append({**base, "event": "load", "ok": rng.random() > 0.002})
            events += [{**base, "event": "predict", "ms": rng.gauss(20, 2)} for _ in range(2)]
    sink = TelemetrySink(store, None, buffered=True)
    sink.write(events, received=at)
    sink.flush(at)


@pytest.fixture(scope="module")
def handler(artifact_dir: Path, fleet: Fleet) -> Iterator[ModuleType]:
    """A cold start of the built function, configured as templates/service.yaml configures it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("REGISTRY_BUCKET", fleet.seaweed.bucket)
    patch.setenv("REGISTRY_PREFIX", "reg")
    patch.setenv("PACKAGER_S3_ENDPOINT_URL", fleet.seaweed.endpoint)
    patch.setenv("FLEET_SECRET_FILE", str(fleet.secret))
    patch.setenv("TICK_MINUTES", "5")
    sys.modules.pop("fleet", None)
    sys.path.insert(0, str(artifact_dir))
    try:
        module = importlib.import_module("fleet")
    finally:
        sys.path.remove(str(artifact_dir))
    assert Path(module.__file__).parent == artifact_dir  # type: ignore[arg-type]
    yield module
    patch.undo()
    sys.modules.pop("fleet", None)


def http(path: str, *, token: str | None = None, query: dict[str, str] | None = None,
         method: str = "GET") -> dict[str, Any]:  # fmt: skip
    """A recorded HTTP API event (tests/events/manifest/) with another path, query and token."""
    recorded = json.loads((EVENTS / "manifest" / "manifest.json").read_text())
    recorded.update(rawPath=path, rawQueryString=urlencode(query or {}), pathParameters={"m": path.split("/")[-2]})
    recorded["requestContext"]["http"].update(method=method, path=path)
    recorded.pop("queryStringParameters", None)
    if token is not None:
        recorded["headers"]["authorization"] = f"Bearer {token}"
    return recorded


def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    context = SimpleNamespace(function_name="fleet", memory_limit_in_mb=1024, aws_request_id="r1",
                              invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fleet")  # fmt: skip
    result: dict[str, Any] = module.handler(event, context)
    return result


def scheduled() -> dict[str, Any]:
    return dict(json.loads((EVENTS / "fleet" / "scheduled.json").read_text()))


def test_fleet_build_ships_the_fleet_and_the_page(artifact_dir: Path) -> None:
    package = artifact_dir / "packager"
    for module in ("fleet/controller.py", "fleet/dashboard.py", "server/fleet.py", "server/tokens.py",
                   "registry/signing.py", "templates/browser/dashboard.html"):  # fmt: skip
        assert (package / module).read_bytes() == (ROOT / "packager" / module).read_bytes(), module
    assert not (package / "cli.py").exists() and not (package / "targets").exists()


def test_fleet_secret_holds_the_online_keys_and_the_tokens_only(fleet: Fleet) -> None:
    secret = json.loads(fleet.secret.read_text())
    assert sorted(secret["keys"]) == ["snapshot.pem", "targets.pem", "timestamp.pem"]  # never root.pem
    assert len(secret["tokens"]["tokens"]) == 2
    refused = run_cli("fleet", "secret")
    assert refused.code != 0 and "--keys" in refused.err


def test_fleet_scheduled_event_runs_the_controller_and_signs_its_decision(handler: ModuleType, fleet: Fleet) -> None:
    result = invoke(handler, scheduled())
    (decision,) = result["decisions"]
    assert (decision["model"], decision["action"], decision["percent"]) == ("mlp", "advance", 5), decision
    store = S3Store.from_url(f"s3://{fleet.seaweed.bucket}/reg", endpoint_url=fleet.seaweed.endpoint)
    pointer = read_pointer(store, "mlp", "stable")  # read through the signed copy
    assert (pointer.candidate, pointer.percent) == ("2", 5)
    assert pointer.history[-1]["decision"] == "advance" and pointer.history[-1]["gates"][0]["verdict"] == "pass"
    # the next pass has nothing new to decide: the new step has its minimum minutes to run
    assert [d["action"] for d in invoke(handler, scheduled())["decisions"]] == ["hold"]


def test_fleet_routes_answer_with_the_secrets_tokens(handler: ModuleType, fleet: Fleet) -> None:
    answer = invoke(handler, http("/v1/models/mlp/fleet", token=fleet.tokens["mlp"], query={"window": "1h"}))
    assert answer["statusCode"] == 200, answer
    rows = {(r["version"], r["variant"]): r for r in json.loads(answer["body"])["rows"]}
    assert rows[("2", None)]["loads"] == 400 and rows[("1", None)]["devices"] == 400
    data = invoke(handler, http("/v1/models/mlp/dashboard", token=fleet.tokens["mlp"], query={"window": "1h"}))
    assert data["statusCode"] == 200 and json.loads(data["body"])["series"]["step_seconds"] == 60
    assert invoke(handler, http("/v1/models/mlp/fleet"))["statusCode"] == 401
    assert invoke(handler, http("/v1/models/mlp/fleet", token=fleet.tokens["other"]))["statusCode"] == 403
    bad = invoke(handler, http("/v1/models/mlp/fleet", token=fleet.tokens["mlp"], query={"window": "1y"}))
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"]["code"] == "bad_request"


def test_fleet_dashboard_page_loads_uplot_pinned_by_its_hash(handler: ModuleType) -> None:
    page = invoke(handler, http("/dashboard/mlp"))
    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert UPLOT["uPlot.iife.min.js"] in page["body"] and "/vendor/" not in page["body"]
    assert invoke(handler, http("/dashboard/nothing-here"))["statusCode"] == 404
    assert invoke(handler, http("/dashboard/mlp", method="POST"))["statusCode"] == 405


def test_fleet_function_runs_under_awslambdaric_with_its_own_packages(fleet: Fleet, tmp_path: Path) -> None:
    """The function as Lambda runs it: the runtime interface client under the runtime's Python,
    isolated (-I), with the function's own packager, DuckDB and python-tuf (installed by the
    Makefile for this machine's platform), Powertools and boto3 beside it."""
    import platform

    from packager import cache
    from packager.config import cache_dir
    from packager.runtimes import RuntimeUnavailable
    from packager.runtimes.aws_lambda import local_tools, runtime_python
    from packager.tools import pip
    from packager.tools.lambda_runtime import LocalFunction

    arch = "arm64" if platform.machine() == "aarch64" else platform.machine()
    try:
        python, version = runtime_python("python3.12", arch)
    except RuntimeUnavailable as exc:  # an outside thing: no Python 3.12 on this machine
        pytest.skip(str(exc))
    (tmp_path / "task").mkdir()
    task = build(tmp_path / "task", FLEET_ARCH=platform.machine(), FLEET_PYTHON=version, PYTHON=sys.executable)
    keys = tmp_path / "keys"
    registry(fleet.seaweed, "ric", fleet.build, keys, tmp_path)  # a registry of its own: its tick advances
    printed = run_cli("fleet", "secret", "--keys", keys, "--tokens", fleet.work / "tokens.json")
    assert printed.code == 0, printed.err
    tools = local_tools(python, version, cache_dir())
    boto = ["boto3==1.44.5"]
    site = cache_dir() / "lambda-local" / f"boto3-{cache.key(version, boto)}"
    cache.cached(site, lambda staging: pip.install_for_interpreter(python, boto, staging / "site"))
    secret = tmp_path / "secret.json"
    secret.write_text(printed.out)
    env = {"REGISTRY_BUCKET": fleet.seaweed.bucket, "REGISTRY_PREFIX": "ric",
           "PACKAGER_S3_ENDPOINT_URL": fleet.seaweed.endpoint, "FLEET_SECRET_FILE": str(secret),
           "TICK_MINUTES": "5", "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}  # fmt: skip
    function = LocalFunction(python=python, task_root=task, paths=[*tools, site / "site"], handler="fleet.handler",
                             runtime="python3.12", memory_mb=1024, timeout_s=120, env=env)  # fmt: skip
    try:
        answer = function.invoke(http("/v1/models/mlp/dashboard", token=fleet.tokens["mlp"], query={"window": "1h"}))
        assert answer["statusCode"] == 200, answer
        assert json.loads(answer["body"])["candidate"] == "2"
        ticked = function.invoke(scheduled(), timeout_s=120)
        assert [(d["model"], d["action"], d["percent"]) for d in ticked["decisions"]] == [("mlp", "advance", 5)]
        store = S3Store.from_url(f"s3://{fleet.seaweed.bucket}/ric", endpoint_url=fleet.seaweed.endpoint)
        assert read_pointer(store, "mlp", "stable").percent == 5  # signed by the function's python-tuf
    finally:
        function.close()
