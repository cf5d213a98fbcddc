"""The Lambda manifest API as `sam build` packages it (handlers/Makefile), replaying API Gateway v2
events against a real S3 server (SeaweedFS) holding real published builds. Its answers are compared
with the Starlette server's over the same store: the same vendored selection code, the same JSON."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from registry_helpers import copy_build
from seaweed import ACCESS_KEY, SECRET_KEY, Seaweed, run_seaweed
from server_helpers import run_server

from packager.registry.publish import init_keys, publish, rollout
from packager.registry.s3 import S3Store
from packager.server import create_app

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events" / "manifest"
CLOUD_URL = "https://infer.example.com/v2/models/mlp"
CDN = "https://d111111abcdef8.cloudfront.net"
LINUX_ORT = '{"platform": "linux", "runtimes": {"onnxruntime": "1.20"}}'
SHIPPED = ["__init__.py", "errors.py", "vocab.py", "registry/__init__.py", "registry/names.py", "registry/docs.py",
           "registry/catalog.py", "registry/profile.py", "registry/resolve.py", "registry/store.py", "registry/s3.py",
           "server/__init__.py", "server/api.py", "server/apigw.py", "server/http.py", "server/resolver.py",
           "server/telemetry.py", "server/views.py", "resources/__init__.py", "resources/registry.toml",
           "resources/server.toml"]  # fmt: skip


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function's code as `sam build` makes it: the Makefile target, run into ARTIFACTS_DIR."""
    out = tmp_path_factory.mktemp("manifest-function")
    done = subprocess.run(["make", "--makefile", str(ROOT / "handlers" / "Makefile"), "build-ManifestFunction"],
                          env={**os.environ, "ARTIFACTS_DIR": str(out)}, cwd=out, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with run_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield patch
    patch.undo()


def s3(seaweed: Seaweed, prefix: str) -> S3Store:
    return S3Store.from_url(f"s3://{seaweed.bucket}/{prefix}", endpoint_url=seaweed.endpoint)


@dataclass(frozen=True)
class Registries:
    keys: Path
    v2: Path


@pytest.fixture(scope="module")
def registries(seaweed: Seaweed, env: pytest.MonkeyPatch, built_mlp: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Registries:  # fmt: skip
    """Two registries in the bucket, ``plain`` (unsigned) and ``signed``: version 1 stable, 2 at 50%."""
    work = tmp_path_factory.mktemp("registries")
    v2 = copy_build(built_mlp, work / "dist", "2")
    keys = work / "keys"
    for prefix in ("plain", "signed"):
        store = s3(seaweed, prefix)
        signing = keys if prefix == "signed" else None
        if signing is not None:
            init_keys(signing, store)
        publish(built_mlp, store, keys=signing, cloud_url=CLOUD_URL)
        publish(v2, store, keys=signing, cloud_url=CLOUD_URL)
        rollout(store, "mlp", "2", percent=50, keys=signing)
    return Registries(keys=keys, v2=v2)


def load_handler(artifact_dir: Path, seaweed: Seaweed, env: pytest.MonkeyPatch, prefix: str, *,
                 cdn: str = CDN, ttl: str = "0") -> ModuleType:  # fmt: skip
    """A cold start of the built function, configured as templates/service.yaml configures it."""
    env.setenv("REGISTRY_BUCKET", seaweed.bucket)
    env.setenv("REGISTRY_PREFIX", prefix)
    env.setenv("PACKAGER_S3_ENDPOINT_URL", seaweed.endpoint)
    env.setenv("ARTIFACTS_BASE_URL", cdn)
    env.setenv("POINTER_TTL_SECONDS", ttl)
    # the function's packager modules are byte for byte the ones this process has imported
    # (test_manifest_build_ships_packagers_own_modules), so the handler runs with those
    sys.modules.pop("manifest", None)
    sys.path.insert(0, str(artifact_dir))
    try:
        module = importlib.import_module("manifest")
    finally:
        sys.path.remove(str(artifact_dir))
    assert Path(module.__file__).parent == artifact_dir  # type: ignore[arg-type]
    return module


@pytest.fixture(scope="module")
def plain(artifact_dir: Path, seaweed: Seaweed, env: pytest.MonkeyPatch, registries: Registries) -> ModuleType:
    return load_handler(artifact_dir, seaweed, env, "plain")


@pytest.fixture(scope="module")
def signed(artifact_dir: Path, seaweed: Seaweed, env: pytest.MonkeyPatch, registries: Registries) -> ModuleType:
    return load_handler(artifact_dir, seaweed, env, "signed")


@pytest.fixture(scope="module")
def servers(seaweed: Seaweed, registries: Registries) -> Iterator[dict[str, httpx.Client]]:
    """`packager serve`'s app over each registry, served on 127.0.0.1, to compare answers with."""
    with contextlib.ExitStack() as stack:
        clients = {}
        for prefix in ("plain", "signed"):
            url = stack.enter_context(run_server(create_app(s3(seaweed, prefix), pointer_seconds=0)))
            clients[prefix] = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        yield clients


def event(method: str, path: str, *, query: dict[str, str] | None = None, body: str | None = None,
          headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A recorded HTTP API event (tests/events/manifest/) with another method, path, query and body."""
    recorded = json.loads((EVENTS / ("resolve.json" if method == "POST" else "manifest.json")).read_text())
    recorded.update(rawPath=path, rawQueryString=urlencode(query or {}), pathParameters={"proxy": path[1:]})
    recorded["requestContext"]["http"].update(method=method, path=path)
    recorded["headers"].update(headers or {})
    recorded.pop("queryStringParameters", None)
    recorded.pop("body", None)
    if query:
        recorded["queryStringParameters"] = query
    if body is not None:
        recorded["body"] = body
    return recorded


def invoke(handler: ModuleType, request: dict[str, Any]) -> Answer:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:manifest"
    context = SimpleNamespace(
        function_name="manifest", memory_limit_in_mb=512, aws_request_id="r1", invoked_function_arn=arn
    )
    result = handler.handler(request, context)
    return Answer(result["statusCode"], {k.lower(): v for k, v in result.get("headers", {}).items()},
                  result.get("body") or "")  # fmt: skip


def call(handler: ModuleType, method: str, path: str, **kwargs: Any) -> Answer:
    return invoke(handler, event(method, path, **kwargs))


def cdn_urls(doc: Any) -> Any:
    """The server's relative artifact URLs as the function writes them (CloudFront's)."""
    text = re.sub(r'"/v1/artifacts/([0-9a-f]{64})"', rf'"{CDN}/artifacts/sha256/\1"', json.dumps(doc))
    return json.loads(text)


def random_profile(rng: random.Random, i: int) -> dict[str, Any]:
    profile: dict[str, Any] = {"platform": rng.choice(["linux", "android", "ios", "web", "macos", "windows"]),
                               "device_id": f"device-{i}"}  # fmt: skip
    names = rng.sample(["onnxruntime", "tflite", "c", "tfjs", "coreml"], rng.randint(0, 2))
    profile["runtimes"] = {name: rng.choice(["1.12", "1.17.0", "1.20", "2.16", "c99"]) for name in names}
    optional = {"arch": ["x86_64", "amd64", "arm64"], "memory_mb": [0.5, 64, 2048], "max_download_mb": [0.005, 50],
                "storage_free_mb": [0.01, 1000], "latency_budget_ms": [0.001, 1, 100]}  # fmt: skip
    for key, values in optional.items():
        if rng.random() < 0.5:
            profile[key] = rng.choice(values)
    return profile


def test_manifest_build_ships_packagers_own_modules(artifact_dir: Path) -> None:
    shipped = sorted(p.relative_to(artifact_dir / "packager").as_posix()
                     for p in (artifact_dir / "packager").rglob("*") if p.is_file())  # fmt: skip
    assert shipped == sorted(SHIPPED)
    for name in SHIPPED:  # copied as they are: no import rewritten
        assert (artifact_dir / "packager" / name).read_bytes() == (ROOT / "packager" / name).read_bytes(), name
    assert sorted(p.name for p in artifact_dir.iterdir()) == ["manifest.py", "packager"]


def test_manifest_build_imports_only_what_it_ships(artifact_dir: Path) -> None:
    code = (
        "import json, sys, manifest; "
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items() "
        "if n.split('.')[0] in ('packager', 'starlette', 'onnx', 'onnxruntime', 'tensorflow', 'torch', 'uvicorn')}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=artifact_dir, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(artifact_dir), "REGISTRY_BUCKET": "registry",
                               "AWS_DEFAULT_REGION": "us-east-1"}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported and all(name.split(".")[0] == "packager" for name in imported), sorted(imported)
    assert all(Path(path).is_relative_to(artifact_dir / "packager") for path in imported.values()), imported


def test_manifest_build_fails_when_a_shipped_module_imports_one_left_out(tmp_path: Path) -> None:
    copy = tmp_path / "handlers"
    copy.mkdir()
    makefile = (ROOT / "handlers" / "Makefile").read_text()
    assert " server/resolver.py " in makefile
    (copy / "Makefile").write_text(makefile.replace(" server/resolver.py ", " "))  # packager.server.api imports it
    (copy / "manifest.py").write_text((ROOT / "handlers" / "manifest.py").read_text())
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(["make", "--makefile", str(copy / "Makefile"), "build-ManifestFunction", f"ROOT={ROOT}"],
                          env={**os.environ, "ARTIFACTS_DIR": str(out)}, cwd=out, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "imports packager.server.resolver, which handlers/Makefile does not copy" in done.stderr


def test_manifest_replays_the_recorded_resolve_event(plain: ModuleType) -> None:
    answer = invoke(plain, json.loads((EVENTS / "resolve.json").read_text()))
    assert answer.status == 200 and answer.headers["cache-control"] == "private, no-store"
    result = answer.json()
    assert result["model"] == "mlp" and result["variant"]["runtime"]["name"] == "onnxruntime"
    assert result["variant"]["url"] == f"{CDN}/artifacts/sha256/{result['variant']['sha256']}"


@pytest.mark.parametrize("prefix", ["plain", "signed"])
def test_manifest_resolve_equals_the_server_for_generated_profiles(
    prefix: str, plain: ModuleType, signed: ModuleType, servers: dict[str, httpx.Client]
) -> None:
    handler = plain if prefix == "plain" else signed
    rng, cohorts, chosen = random.Random(61), set(), set()
    for i in range(150):
        profile = random_profile(rng, i)
        ours = call(handler, "POST", "/v1/models/mlp/resolve", body=json.dumps(profile))
        theirs = servers[prefix].post("/v1/models/mlp/resolve", json=profile)
        assert (ours.status, theirs.status_code) == (200, 200), (ours.body, theirs.text)
        mine, expected = ours.json(), cdn_urls(theirs.json())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mine.pop("expires"))
        expected.pop("expires")
        assert mine == expected, profile
        cohorts.add(mine["cohort"])
        chosen.add(mine["variant"] and mine["variant"]["id"])
    assert cohorts == {"stable", "candidate"} and None in chosen and len(chosen) > 2


@pytest.mark.parametrize("prefix", ["plain", "signed"])
def test_manifest_catalog_equals_the_server(prefix: str, plain: ModuleType, signed: ModuleType,
                                            servers: dict[str, httpx.Client]) -> None:  # fmt: skip
    handler = plain if prefix == "plain" else signed
    ours = invoke(handler, json.loads((EVENTS / "manifest.json").read_text()))
    theirs = servers[prefix].get("/v1/models/mlp/manifest")
    assert ours.status == 200 and ours.json() == cdn_urls(theirs.json())
    assert (ours.json()["tuf"] is not None) == (prefix == "signed")
    again = call(handler, "GET", "/v1/models/mlp/manifest", headers={"if-none-match": ours.headers["etag"]})
    assert again.status == 304 and again.body == ""


def test_manifest_documents_are_the_bytes_the_server_serves(signed: ModuleType,
                                                            servers: dict[str, httpx.Client]) -> None:  # fmt: skip
    for path in ["/v1/models/mlp/versions/1", "/v1/models/mlp/versions/2", "/v1/models/mlp/channels/stable",
                 "/v1/tuf/root.json", "/v1/tuf/timestamp.json", "/v1/tuf/1.root.json"]:  # fmt: skip
        ours, theirs = call(signed, "GET", path), servers["signed"].get(path)
        assert (ours.status, ours.body) == (theirs.status_code, theirs.text), path
        assert ours.headers["etag"] == theirs.headers["etag"], path
        assert ours.headers["cache-control"] == theirs.headers["cache-control"], path


def test_manifest_artifact_redirects_to_cloudfront(plain: ModuleType) -> None:
    variant = call(plain, "POST", "/v1/models/mlp/resolve", body=LINUX_ORT).json()["fallbacks"][0]
    answer = call(plain, "GET", f"/v1/artifacts/{variant['sha256']}")
    assert answer.status == 302 and answer.headers["location"] == f"{CDN}/artifacts/sha256/{variant['sha256']}"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_manifest_artifact_without_cloudfront_redirects_to_presigned_s3(artifact_dir: Path, seaweed: Seaweed,
                                                                        env: pytest.MonkeyPatch,
                                                                        registries: Registries) -> None:  # fmt: skip
    handler = load_handler(artifact_dir, seaweed, env, "plain", cdn="")
    variant = call(handler, "POST", "/v1/models/mlp/resolve", body=LINUX_ORT).json()["variant"]
    assert variant["url"] == f"/v1/artifacts/{variant['sha256']}"  # the server's relative URL
    answer = call(handler, "GET", variant["url"])
    assert answer.status == 302 and answer.headers["location"].startswith(seaweed.endpoint)
    data = httpx.get(answer.headers["location"]).content
    assert hashlib.sha256(data).hexdigest() == variant["sha256"] and len(data) == variant["bytes"]


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/v1/models/nope/manifest", None, None),
        ("GET", "/v1/models/bad..name/manifest", None, None),
        ("GET", "/v1/models/mlp/manifest", {"channel": "a" * 65}, None),
        ("GET", "/v1/models/mlp/manifest", {"channel": "beta"}, None),
        ("GET", "/v1/models/mlp/versions/9", None, None),
        ("GET", "/v1/models/mlp/channels/.hidden", None, None),
        ("GET", "/v1/tuf/evil.json", None, None),
        ("GET", "/v1/artifacts/" + "0" * 64, None, None),
        ("GET", "/v1/artifacts/XYZ", None, None),
        ("POST", "/v1/models/mlp/resolve", None, "not json"),
        ("POST", "/v1/models/mlp/resolve", None, '{"platform": "toaster"}'),
        ("POST", "/v1/models/mlp/resolve", None, '{"platform": "linux", "ram": 3}'),
        ("POST", "/v1/models/mlp/resolve", None, json.dumps({"platform": "linux", "os_version": "x" * 70000})),
        ("POST", "/v1/telemetry", None, json.dumps({"events": [{"event": "load", "model": "mlp"}] * 101})),
        ("POST", "/v1/telemetry", None, json.dumps({"events": [{"event": "explode", "model": "mlp"}]})),
        ("POST", "/v1/telemetry", None, json.dumps({"events": [{"event": "load", "model": "nope"}]})),
        ("DELETE", "/v1/models/mlp/manifest", None, None),
    ],
)
def test_manifest_refuses_what_the_server_refuses(
    plain: ModuleType,
    servers: dict[str, httpx.Client],
    method: str,
    path: str,
    query: dict[str, str] | None,
    body: str | None,
) -> None:
    ours = call(plain, method, path, query=query, body=body)
    theirs = servers["plain"].request(method, path, params=query, content=body)
    assert 400 <= ours.status < 500
    assert (ours.status, ours.json()) == (theirs.status_code, theirs.json())


@pytest.mark.parametrize("origin", ["https://page.example", None])
def test_manifest_answers_cors_as_the_server(plain: ModuleType, servers: dict[str, httpx.Client],
                                             origin: str | None) -> None:  # fmt: skip
    """No CorsConfiguration on the HTTP API: the function grants CORS itself, as the server does."""
    given = {"origin": origin} if origin else {}
    asks = {**given, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    for method, path, headers in [("OPTIONS", "/v1/models/mlp/resolve", asks),
                                  ("GET", "/v1/models/mlp/manifest", given)]:  # fmt: skip
        ours = call(plain, method, path, headers=headers)
        theirs = servers["plain"].request(method, path, headers=headers)
        assert ours.status == theirs.status_code
        cors = {k: v for k, v in theirs.headers.items() if k.startswith("access-control-") or k == "vary"}
        assert cors and {k: ours.headers.get(k) for k in cors} == cors


def test_manifest_unknown_route_is_a_json_404(plain: ModuleType) -> None:
    answer = call(plain, "GET", "/v1/nothing/here")
    assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"


def test_manifest_refuses_writes_with_where_to_write(plain: ModuleType) -> None:
    answer = call(plain, "POST", "/v1/models/mlp/versions", body="{}")
    assert answer.status == 404
    assert "packager publish, rollout or rollback --registry" in answer.json()["error"]["message"]


def test_manifest_telemetry_is_stored_under_telemetry(plain: ModuleType, seaweed: Seaweed) -> None:
    store = s3(seaweed, "plain")
    before = set(store.list("telemetry/"))
    events = [{"event": "load", "model": "mlp", "version": "1", "ms": 3.5}, {"event": "predict", "model": "mlp"}]
    answer = call(plain, "POST", "/v1/telemetry", body=json.dumps({"events": events}))
    assert answer.status == 202 and answer.json() == {"accepted": 2}
    (key,) = set(store.list("telemetry/")) - before
    assert key.startswith("telemetry/model=mlp/date=") and key.endswith(".jsonl.gz")  # one segment a request
    blob = store.get(key)
    assert blob is not None
    stored = [json.loads(line) for line in gzip.decompress(blob.data).splitlines()]
    assert [{k: v for k, v in e.items() if k != "received"} for e in stored] == events


def test_manifest_healthz_names_the_kind_of_store_not_its_address(signed: ModuleType, seaweed: Seaweed) -> None:
    answer = call(signed, "GET", "/healthz")
    assert answer.status == 200
    assert answer.json() == {"status": "ok", "store": "s3", "signed": True}
    assert seaweed.bucket not in answer.body


def test_manifest_rereads_the_pointer_after_its_ttl(artifact_dir: Path, seaweed: Seaweed, env: pytest.MonkeyPatch,
                                                    registries: Registries, built_mlp: Path) -> None:  # fmt: skip
    store = s3(seaweed, "ttl")
    publish(built_mlp, store, cloud_url=CLOUD_URL)
    publish(registries.v2, store, cloud_url=CLOUD_URL)
    handler = load_handler(artifact_dir, seaweed, env, "ttl", ttl="30")
    clock = [1000.0]
    handler.REGISTRY.clock = lambda: clock[0]

    def stable() -> str:
        answer = call(handler, "POST", "/v1/models/mlp/resolve", body='{"platform": "linux"}')
        return str(answer.json()["version"])

    assert stable() == "1"
    rollout(store, "mlp", "2", percent=100)  # promote: 2 is stable now
    clock[0] += 29
    assert stable() == "1"  # a warm container trusts its pointer for the TTL
    clock[0] += 2
    assert stable() == "2"


def test_manifest_function_answers_under_awslambdaric_with_its_own_packager(
    artifact_dir: Path, seaweed: Seaweed, registries: Registries, servers: dict[str, httpx.Client], tmp_path: Path
) -> None:
    """The built function as Lambda runs it: the runtime interface client under the runtime's
    Python, isolated (-I), with the function's own packager package on its path, Powertools and
    boto3 beside it (what the layer and the runtime give), against SeaweedFS."""
    import platform

    from packager import cache
    from packager.config import cache_dir
    from packager.runtimes import RuntimeUnavailable
    from packager.runtimes.aws_lambda import local_tools, runtime_python
    from packager.tools import pip
    from packager.tools.lambda_runtime import LocalFunction, http_event

    arch = "arm64" if platform.machine() == "aarch64" else platform.machine()
    try:
        python, version = runtime_python("python3.12", arch)
    except RuntimeUnavailable as exc:  # an outside thing: no Python 3.12 on this machine
        pytest.skip(str(exc))
    tools = local_tools(python, version, cache_dir())
    boto = ["boto3==1.44.5"]  # the runtime has boto3; the function imports it when it opens the store
    site = cache_dir() / "lambda-local" / f"boto3-{cache.key(version, boto)}"
    cache.cached(site, lambda staging: pip.install_for_interpreter(python, boto, staging / "site"))
    task = tmp_path / "task"
    shutil.copytree(artifact_dir, task)
    env = {"REGISTRY_BUCKET": seaweed.bucket, "REGISTRY_PREFIX": "plain", "PACKAGER_S3_ENDPOINT_URL": seaweed.endpoint,
           "ARTIFACTS_BASE_URL": "", "POINTER_TTL_SECONDS": "0", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY}  # fmt: skip
    function = LocalFunction(python=python, task_root=task, paths=[*tools, site / "site"], handler="manifest.handler",
                             runtime="python3.12", memory_mb=512, timeout_s=30, env=env)  # fmt: skip
    try:
        profile = {"platform": "linux", "arch": "x86_64", "device_id": "d1", "runtimes": {"onnxruntime": "1.20"}}
        answer = function.invoke(http_event("POST", "/v1/models/mlp/resolve", json.dumps(profile)))
        assert answer["statusCode"] == 200, answer
        ours = json.loads(answer["body"])
        theirs = servers["plain"].post("/v1/models/mlp/resolve", json=profile).json()
        assert ours["variant"] is not None, ours
        assert (ours["version"], ours["cohort"], ours["variant"]["id"]) == (
            theirs["version"], theirs["cohort"], theirs["variant"]["id"])  # fmt: skip
        health = function.invoke(http_event("GET", "/healthz"))
        assert health["statusCode"] == 200 and json.loads(health["body"])["store"] == "s3"
    finally:
        function.close()
