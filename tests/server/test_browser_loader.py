"""The browser loader (/v1/client.js) in headless Chromium against a real server on 127.0.0.1.

The registry holds a real ``-t ort-web`` build of the digits MLP (fp32 only, so that tampering
with its one model file leaves no device fallback). The page is the server's own demo page: the
runtime's script tag and client.js's, nothing else loaded. The cloud endpoint is a test double
of the Open Inference Protocol: a Starlette app that runs the build's canonical ONNX in
onnxruntime (with CORS, as a cross-origin endpoint must answer a browser).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import run_cli
from server_helpers import run_server
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from packager.registry.docs import shadow_settings
from packager.registry.names import artifact_key
from packager.registry.publish import publish, shadow
from packager.registry.store import LocalStore
from packager.resources import template_path
from packager.server import create_app
from packager.tools import browser

pytestmark = pytest.mark.skipif(browser.find_chromium() is None or browser.node_modules() is None,
                                reason="needs Chromium and npm ci (playwright-core, onnxruntime-web)")  # fmt: skip


@pytest.fixture(scope="session")
def web_build(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    out = tmp_path_factory.mktemp("web") / "dist"
    result = run_cli("build", mlp_onnx, "-t", "ort-web", "--precision", "fp32", "--samples", mlp_samples,
                     "--out", out)  # fmt: skip
    assert result.code == 0, result.err
    return out / "mlp" / "1"


@pytest.fixture(scope="session")
def tfjs_build(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    out = tmp_path_factory.mktemp("tfjs") / "dist"
    result = run_cli("build", mlp_onnx, "-t", "tfjs", "--precision", "fp32", "--samples", mlp_samples, "--out", out)
    assert result.code == 0, result.err
    return out / "mlp" / "1"


@dataclass
class Oip:
    url: str
    calls: list[str]


@pytest.fixture(scope="module")
def oip(web_build: Path) -> Iterator[Oip]:
    """A stand-in for the cloud endpoint: OIP v2 infer over the source model in onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(web_build / "source" / "model.onnx"), providers=["CPUExecutionProvider"])
    calls: list[str] = []

    async def infer(request: Request) -> JSONResponse:
        calls.append(request.path_params["m"])
        body = await request.json()
        feeds = {t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in body["inputs"]}
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(names, feeds)
        return JSONResponse({"model_name": request.path_params["m"], "outputs": [
            {"name": n, "shape": list(y.shape), "datatype": "FP32", "data": y.reshape(-1).tolist()}
            for n, y in zip(names, outputs, strict=True)]})  # fmt: skip

    app = Starlette(routes=[Route("/v2/models/{m}/infer", infer, methods=["POST"])],
                    middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"],
                                           allow_headers=["content-type"])])  # fmt: skip
    with run_server(app) as url:
        yield Oip(url=url, calls=calls)


@dataclass
class Web:
    url: str
    registry: Path
    client: httpx.Client
    paths: list[str]  # every request's path, in order

    def downloads(self, sha256: str) -> int:
        return self.paths.count(f"/v1/artifacts/{sha256}")


def recording(app: Any, paths: list[str]) -> Any:
    """``app`` behind an ASGI wrapper that records each request's path."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await app(scope, receive, send)

    return wrapper


@pytest.fixture
def web(web_build: Path, oip: Oip, tmp_path: Path) -> Iterator[Web]:
    """A server of its own (tests change the store) over the build, cloud endpoint = the double."""
    registry, paths = tmp_path / "registry", []
    publish(web_build, LocalStore(registry), cloud_url=f"{oip.url}/v2/models/mlp")
    with run_server(recording(create_app(LocalStore(registry)), paths)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:  # fmt: skip
        yield Web(url=url, registry=registry, client=client, paths=paths)


@pytest.fixture
def page(web: Web) -> Iterator[browser.BrowserPage]:
    opened = browser.BrowserPage(None, f"{web.url}/demo/mlp?runtime=onnxruntime-web")
    try:
        yield opened
    finally:
        opened.close()


def reference(build: Path, count: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    samples, ref = np.load(build / "validation" / "samples.npz"), np.load(build / "validation" / "reference.npz")
    return {k: v[:count] for k, v in samples.items()}, {k: v[:count] for k, v in ref.items()}


def model_artifacts(web_build: Path) -> list[str]:
    build = json.loads((web_build / "build.json").read_text())
    return [f["sha256"] for v in build["variants"] for f in v["files"] if f["path"].endswith(".onnx")]


def test_demo_page_has_only_the_runtime_and_loader_script_tags(web: Web) -> None:
    html = web.client.get("/demo/mlp", params={"runtime": "onnxruntime-web"}).text
    sources = re.findall(r'<script src="([^"]+)"></script>', html)
    assert sources == ["/vendor/onnxruntime-web/ort.wasm.min.js", "/v1/client.js"]
    assert html.count("<script") == 3  # the two tags and the page's own inline script


def test_browser_loader_predicts_like_the_reference(web: Web, web_build: Path, page: browser.BrowserPage) -> None:
    ready = page.ready
    assert (ready["variant"], ready["runtime"], ready["source"]) == ("ort-web-fp32", "onnxruntime-web", "network")
    assert ready["errors"] == []
    inputs, expected = reference(web_build, 16)
    got = page.predict(inputs)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=1e-4)
    assert (got[name].argmax(1) == want.argmax(1)).all()


def test_browser_loader_loads_a_tfjs_graph_model_from_its_shards(tfjs_build: Path, tmp_path: Path) -> None:
    publish(tfjs_build, LocalStore(tmp_path / "registry"))
    with run_server(create_app(LocalStore(tmp_path / "registry"))) as url:
        opened = browser.BrowserPage(None, f"{url}/demo/mlp?runtime=tfjs")
        try:
            assert (opened.ready["variant"], opened.ready["runtime"]) == ("tfjs-fp32", "tfjs")
            inputs, expected = reference(tfjs_build, 4)  # a batch, though the graph model takes one row
            got = opened.predict(inputs)
        finally:
            opened.close()
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=1e-4)


def test_browser_loader_refuses_tampered_bytes_and_uses_the_cloud(web: Web, web_build: Path, oip: Oip) -> None:
    for sha in model_artifacts(web_build):
        path = web.registry / artifact_key(sha)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    calls = len(oip.calls)
    opened = browser.BrowserPage(None, f"{web.url}/demo/mlp?runtime=onnxruntime-web")
    try:
        ready = opened.ready
        assert (ready["source"], ready["variant"]) == ("cloud", None)
        assert len(ready["errors"]) == 1 and "sha256 mismatch" in ready["errors"][0], ready["errors"]
        inputs, expected = reference(web_build, 4)
        got = opened.predict(inputs)
    finally:
        opened.close()
    assert len(oip.calls) > calls
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=1e-4)


def test_browser_loader_second_load_comes_from_cache_storage(web: Web, web_build: Path,
                                                            page: browser.BrowserPage) -> None:  # fmt: skip
    (model,) = model_artifacts(web_build)
    assert page.ready["source"] == "network"
    assert web.downloads(model) == 1
    resolves = web.paths.count("/v1/models/mlp/resolve")
    again = page.goto(f"{web.url}/demo/mlp?runtime=onnxruntime-web")
    assert (again["source"], again["variant"]) == ("cache", "ort-web-fp32")
    assert web.paths.count("/v1/models/mlp/resolve") == resolves + 1  # the page did load again
    assert web.downloads(model) == 1  # verified from Cache Storage: no second download


def test_client_js_route_serves_the_template_with_an_etag(web: Web) -> None:
    response = web.client.get("/v1/client.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == template_path("browser", "client.js").read_bytes()
    tag = response.headers["etag"]
    assert tag == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert "max-age" in response.headers["cache-control"]
    assert web.client.get("/v1/client.js", headers={"If-None-Match": tag}).status_code == 304


@pytest.mark.parametrize("path", ["/vendor/onnxruntime-web/package.json", "/vendor/left-pad/index.js",
                                  "/vendor/tfjs/..%2F..%2Fpackage.json"])  # fmt: skip
def test_vendor_route_serves_only_the_listed_runtime_files(web: Web, path: str) -> None:
    response = web.client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_vendor_route_serves_wasm_with_its_media_type(web: Web) -> None:
    response = web.client.get("/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/wasm"


def test_openapi_lists_the_browser_routes(web: Web) -> None:
    paths: dict[str, Any] = web.client.get("/openapi.json").json()["paths"]
    assert {"/v1/client.js", "/demo/{m}", "/vendor/{package}/{file}"} <= set(paths)


def test_browser_loader_carries_a_streaming_models_state(model_dir: Path, tmp_path: Path) -> None:
    """A streaming model's state left out of predict() is the last call's stateN (zeros at first)."""
    import onnxruntime as ort
    from conftest import models

    onnx_model = models.make_onnx_streaming(model_dir)
    samples = models.streaming_samples(tmp_path / "s.npz")
    result = run_cli("build", onnx_model, "--samples", samples, "-t", "ort-web", "-p", "fp32", "--out", tmp_path / "d")
    assert result.code == 0, result.err
    publish(tmp_path / "d" / "streaming" / "1", LocalStore(tmp_path / "registry"))
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    chunks = [np.random.default_rng(i).standard_normal((1, 4)).astype(np.float32) for i in range(3)]
    sr, state, expected = np.array(16000, np.int64), np.zeros((2, 1, 3), np.float32), []
    for x in chunks:
        y, state = session.run(["y", "stateN"], {"x": x, "state": state, "sr": sr})
        expected.append(y)
    with run_server(create_app(LocalStore(tmp_path / "registry"))) as url:
        opened = browser.BrowserPage(None, f"{url}/demo/streaming?runtime=onnxruntime-web")
        try:
            assert opened.ready["variant"] == "ort-web-fp32", opened.ready
            got = [opened.predict({"x": x, "sr": sr})["y"] for x in chunks]
        finally:
            opened.close()
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_browser_loader_reports_its_load_and_a_sample_of_predictions(web_build: Path, oip: Oip,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    """Events go to /v1/telemetry as the Python client's do: resolve, load (ok), and the sampled
    predict calls with their latency (the demo page predicts once itself, then the test twice)."""
    registry, events_file = tmp_path / "registry", tmp_path / "events.jsonl"
    publish(web_build, LocalStore(registry), cloud_url=f"{oip.url}/v2/models/mlp")
    with run_server(create_app(LocalStore(registry), telemetry=events_file)) as url:
        page = browser.BrowserPage(None, f"{url}/demo/mlp?runtime=onnxruntime-web&telemetry_seconds=0.5")
        try:
            ready = page.ready
            inputs, _ = reference(web_build, 4)
            page.predict(inputs)
            page.predict(inputs)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and '"predict"' not in (
                    events_file.read_text() if events_file.exists() else ""):  # fmt: skip
                time.sleep(0.2)
        finally:
            page.close()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [e["event"] for e in events[:2]] == ["resolve", "load"], events
    load = events[1]
    assert (load["ok"], load["variant"], load["version"]) == (True, ready["variant"], "1")
    predicts = [e for e in events if e["event"] == "predict"]
    assert 2 <= len(predicts) <= 16 and all(e["ms"] >= 0 and e["variant"] == ready["variant"] for e in predicts)
    counts = [re.match(r"n=(\d+) sampled=(\d+) ", e["detail"]) for e in predicts if "detail" in e]  # one a flush
    assert all(counts) and sum(int(m.group(1)) for m in counts if m) == len(predicts)  # few calls: all sampled
    assert len({e["device_id"] for e in events}) == 1 and events[0]["device_id"]


def test_browser_loader_runs_a_shadow_beside_stable_and_reports_agreement(web_build: Path, oip: Oip,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    """Version 2 answers negated; the pointer shadows it on every call of every stable device. The
    page gets stable's answers, and the shadow runs report disagreement for version 2."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
    from registry_helpers import negated

    registry, events_file = tmp_path / "registry", tmp_path / "events.jsonl"
    store = LocalStore(registry)
    publish(web_build, store, cloud_url=f"{oip.url}/v2/models/mlp")
    publish(negated(web_build, tmp_path / "dist"), store)
    shadow(store, "mlp", shadow_settings("2", 100, 1.0, 10.0))
    with run_server(create_app(store, telemetry=events_file)) as url:
        page = browser.BrowserPage(None, f"{url}/demo/mlp?runtime=onnxruntime-web&telemetry_seconds=0.5")
        try:
            inputs, expected = reference(web_build, 4)
            got = page.predict(inputs)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and '"shadow"' not in (
                    events_file.read_text() if events_file.exists() else ""):  # fmt: skip
                time.sleep(0.2)
        finally:
            page.close()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4)
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    loads = {e["version"]: e for e in events if e["event"] == "load"}
    assert loads["2"]["ok"] and loads["1"]["ok"] and "shadow" in loads["2"]["detail"]
    shadows = [e for e in events if e["event"] == "shadow"]
    assert shadows and all(e["version"] == "2" and e["agree"] is False and e["diff"] > 0.1 for e in shadows)
    assert all(e["ms"] >= 0 and e["base_ms"] >= 0 for e in shadows)


def test_browser_loader_counts_inputs_over_the_reference_bins_as_python_does(web_build: Path, oip: Oip,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    """With every call counted, the page's inputs event holds exactly the counts the Python
    client's code gives for the same inputs and outputs: one definition of the bins."""
    from packager.fleet.drift import add, counts

    registry, events_file = tmp_path / "registry", tmp_path / "events.jsonl"
    publish(web_build, LocalStore(registry), cloud_url=f"{oip.url}/v2/models/mlp")
    ref = json.loads((web_build / "build.json").read_text())["model"]["reference"]
    inputs, expected = reference(web_build, 6)
    with run_server(create_app(LocalStore(registry), telemetry=events_file)) as url:
        page = browser.BrowserPage(
            None, f"{url}/demo/mlp?runtime=onnxruntime-web&telemetry_seconds=0.5&inputs_sample=1"
        )
        try:
            got = [page.predict({k: v[i : i + 3] for k, v in inputs.items()}) for i in (0, 3)]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and '"inputs"' not in (
                    events_file.read_text() if events_file.exists() else ""):  # fmt: skip
                time.sleep(0.2)
        finally:
            page.close()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    sent: dict[str, list[int]] = {}
    for event in (e for e in events if e["event"] == "inputs"):
        assert event["version"] == "1"
        add(sent, event["bins"])
    # the demo page predicts once itself, on the variant's sample.json: its inputs count too
    own = json.loads((web_build / "ort-web" / "ort-web-fp32" / "sample.json").read_text())
    wanted = counts(ref, {k: np.asarray(t["data"], np.float32).reshape(t["shape"]) for k, t in own.items()}, {})
    for i, outputs in zip((0, 3), got, strict=True):
        rows = {k: v[i : i + 3] for k, v in inputs.items()}
        add(wanted, counts(ref, rows, {k: np.asarray(v) for k, v in outputs.items()}))
    assert {k: v for k, v in sent.items() if k.startswith("in:")} == {
        k: v for k, v in wanted.items() if k.startswith("in:")
    }
    assert len(sent) == 65 and all(a >= b for a, b in zip(sent["out:logits"], wanted["out:logits"], strict=True))
    out = f"out:{next(iter(expected))}"
    assert sum(sent[out]) == 7 and sent[out] != [0] * 10  # the two calls' 6 rows and the demo's one
