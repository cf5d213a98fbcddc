"""The native engine's stdlib-only handler, called in-process with the events in tests/events,
over the MLP compiled to a real C library by packager's generator."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from conftest import models

from packager.resources import read_toml
from packager.spec import ModelSpec, Signature, TensorSpec
from packager.targets import lambda_native, static_lib

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "tests" / "events"
BAD_REQUESTS = json.loads((Path(__file__).parent / "bad_requests.json").read_text())
HOST_ARCH = "arm64" if platform.machine() == "aarch64" else "x86_64"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model/ as the native bundle holds it: signature.json and libmlp.so, built by packager."""
    folder = tmp_path_factory.mktemp("native-model")
    onnx_path = models.make_onnx_mlp(folder, "mlp.onnx")
    signature = Signature(inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 64)),),
                          outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", 10)),))  # fmt: skip
    spec = ModelSpec(name="mlp", version="1", source_format="onnx", source_path=onnx_path, source_sha256="-",
                     onnx_path=onnx_path, original_path=None, signature=signature)  # fmt: skip
    march = read_toml("lambda.toml")["arch"][HOST_ARCH]["march"]
    work = tmp_path_factory.mktemp("native-work")
    static_lib.compile_library(onnx_path, spec, folder, "mlp", march=march, work=work, static=False)
    base = {"name": "mlp", "version": "1", "model_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
            "max_batch": 64, "runtime": "python3.12", "arch": HOST_ARCH, **signature.to_json()}  # fmt: skip
    (folder / "signature.json").write_text(json.dumps(lambda_native.signature(base, folder / "libmlp.so")))
    return folder


@pytest.fixture(scope="module")
def handler(model_dir: Path) -> Iterator[ModuleType]:
    mp = pytest.MonkeyPatch()
    mp.setenv("PACKAGER_MODEL_DIR", str(model_dir))
    sys.modules.pop("packager.handlers.native_inference", None)
    yield importlib.import_module("packager.handlers.native_inference")
    mp.undo()
    sys.modules.pop("packager.handlers.native_inference", None)


def context() -> SimpleNamespace:
    return SimpleNamespace(function_name="inference", memory_limit_in_mb=128, aws_request_id="req-1",
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:inference")  # fmt: skip


def call(handler: ModuleType, name: str, **changes: object) -> tuple[int, dict]:
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(changes)
    result = handler.handler(event, context())
    assert result["headers"] == {"Content-Type": "application/json"}
    return result["statusCode"], json.loads(result["body"])


def test_native_infer_returns_the_model_outputs(handler: ModuleType, model_dir: Path) -> None:
    status, body = call(handler, "infer_ok")
    assert status == 200
    assert body["id"] == "42" and body["model_name"] == "mlp" and body["model_version"] == "1"
    (out,) = body["outputs"]
    assert out["name"] == "logits" and out["shape"] == [2, 10] and out["datatype"] == "FP32"
    session = ort.InferenceSession(str(model_dir / "mlp.onnx"))
    expected = session.run(None, {"x": np.full((2, 64), 0.5, np.float32)})[0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 10), expected, atol=1e-5)


def test_native_infer_accepts_a_base64_body(handler: ModuleType) -> None:
    event = json.loads((EVENTS / "infer_ok.json").read_text())
    status, _ = call(handler, "infer_ok", body=base64.b64encode(event["body"].encode()).decode(), isBase64Encoded=True)
    assert status == 200


def test_native_infer_flattens_nested_data(handler: ModuleType) -> None:
    body = {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [[0.5] * 64, [0.5] * 64]}]}
    nested_status, nested = call(handler, "infer_ok", body=json.dumps(body))
    _, flat = call(handler, "infer_ok")
    assert nested_status == 200 and nested["outputs"] == flat["outputs"]


def test_native_metadata_and_health(handler: ModuleType) -> None:
    status, body = call(handler, "metadata")
    assert status == 200
    assert body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert body["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert body["max_batch"] == 64
    assert call(handler, "ready") == (200, {"ready": True})
    live = json.loads((EVENTS / "ready.json").read_text())
    live["rawPath"] = live["requestContext"]["http"]["path"] = "/v2/health/live"
    assert json.loads(handler.handler(live, context())["body"]) == {"live": True}


@pytest.mark.parametrize(
    ("event", "status", "code", "fragment"),
    [pytest.param(c["event"], c["status"], c["code"], c["fragment"], id=c["event"]) for c in BAD_REQUESTS],
)
def test_native_bad_requests_get_the_same_errors_as_the_onnxruntime_handler(
    handler: ModuleType, event: str, status: int, code: str, fragment: str
) -> None:
    got_status, body = call(handler, event)
    assert got_status == status
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]


def test_native_oversized_body_is_refused_before_parsing(handler: ModuleType) -> None:
    huge = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}],
                       "padding": "x" * (6 * 1024 * 1024)})  # fmt: skip
    status, body = call(handler, "infer_ok", body=huge)
    assert status == 400 and body["error"]["code"] == "body_too_large"


def test_native_infer_writes_an_embedded_metric_line(handler: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    call(handler, "infer_ok")
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert {m["Name"] for m in directive["Metrics"]} == {"Requests", "InferenceLatency", "BatchSize"}
    assert record["BatchSize"] == 2 and record["Requests"] == 1 and record["InferenceLatency"] >= 0


def test_native_handler_imports_with_the_standard_library_only(model_dir: Path) -> None:
    # -S: no site-packages at all, so numpy, onnxruntime or Powertools could not be imported.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import native_inference as h; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'onnxruntime', 'packager'})); "
        "print(h.MODEL.output_size)"
    )
    env = {"PACKAGER_MODEL_DIR": str(model_dir), "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT / "handlers")], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "10"]


def test_native_handler_refuses_a_library_built_from_another_model(model_dir: Path, tmp_path: Path) -> None:
    for name in ("libmlp.so", "signature.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    signature = json.loads((tmp_path / "signature.json").read_text())
    (tmp_path / "signature.json").write_text(json.dumps(signature | {"model_sha256": "0" * 64}))
    code = "import sys; sys.path.insert(0, sys.argv[1]); import native_inference"
    done = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT / "handlers")], capture_output=True, text=True,
                          env={"PACKAGER_MODEL_DIR": str(tmp_path)}, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "libmlp.so was built from model" in done.stderr and "not this bundle's" in done.stderr
