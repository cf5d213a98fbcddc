"""The Lambda inference handler, called in-process with the API Gateway v2 events in tests/events."""

from __future__ import annotations

import base64
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from conftest import models

EVENTS = Path(__file__).parents[1] / "events"


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    folder = tmp_path_factory.mktemp("model")
    models.make_onnx_mlp(folder, "model.onnx")
    signature = {
        "name": "mlp", "version": "1", "model_file": "model.onnx", "model_sha256": "unused", "max_batch": 64,
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
    }  # fmt: skip
    (folder / "signature.json").write_text(json.dumps(signature))
    mp = pytest.MonkeyPatch()
    mp.setenv("PACKAGER_MODEL_DIR", str(folder))
    mp.setenv("POWERTOOLS_METRICS_NAMESPACE", "tests")
    sys.modules.pop("packager.handlers.inference", None)
    module = importlib.import_module("packager.handlers.inference")
    module.MODEL_FILE = folder / "model.onnx"  # for the comparison below
    yield module
    mp.undo()
    sys.modules.pop("packager.handlers.inference", None)


def context() -> SimpleNamespace:
    return SimpleNamespace(function_name="inference", memory_limit_in_mb=1024, aws_request_id="req-1",
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:inference")  # fmt: skip


def call(handler: ModuleType, name: str, **changes: object) -> tuple[int, dict]:
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(changes)
    result = handler.handler(event, context())
    return result["statusCode"], json.loads(result["body"])


def test_infer_returns_the_model_outputs(handler: ModuleType) -> None:
    status, body = call(handler, "infer_ok")
    assert status == 200
    assert body["id"] == "42" and body["model_name"] == "mlp"
    (out,) = body["outputs"]
    assert out["name"] == "logits" and out["shape"] == [2, 10] and out["datatype"] == "FP32"
    expected = ort.InferenceSession(str(handler.MODEL_FILE)).run(None, {"x": np.full((2, 64), 0.5, np.float32)})[0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 10), expected, atol=1e-6)


def test_infer_accepts_a_base64_body(handler: ModuleType) -> None:
    event = json.loads((EVENTS / "infer_ok.json").read_text())
    status, _ = call(handler, "infer_ok", body=base64.b64encode(event["body"].encode()).decode(), isBase64Encoded=True)
    assert status == 200


def test_metadata_and_health(handler: ModuleType) -> None:
    status, body = call(handler, "metadata")
    assert status == 200
    assert body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert call(handler, "ready") == (200, {"ready": True})


# Shared with the native engine's handler (test_native_inference.py): the same requests, the same answers.
BAD_REQUESTS = json.loads((Path(__file__).parent / "bad_requests.json").read_text())


@pytest.mark.parametrize(
    ("event", "status", "code", "fragment"),
    [pytest.param(c["event"], c["status"], c["code"], c["fragment"], id=c["event"]) for c in BAD_REQUESTS],
)
def test_bad_requests_get_a_precise_error(handler: ModuleType, event: str, status: int, code: str,
                                           fragment: str) -> None:  # fmt: skip
    got_status, body = call(handler, event)
    assert got_status == status
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]


def test_oversized_body_is_refused_before_parsing(handler: ModuleType) -> None:
    huge = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}],
                       "padding": "x" * (6 * 1024 * 1024)})  # fmt: skip
    status, body = call(handler, "infer_ok", body=huge)
    assert status == 400 and body["error"]["code"] == "body_too_large"


class FakeS3:
    """Stands in for boto3's S3 client in this unit test of the handler's own download logic."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.calls = payload, []

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        self.calls.append((bucket, key))
        Path(filename).write_bytes(self.payload)


def test_model_from_s3_is_checked_and_cached(handler: ModuleType, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import hashlib
    import types

    payload = handler.MODEL_FILE.read_bytes()
    sha = hashlib.sha256(payload).hexdigest()
    fake = FakeS3(payload)
    monkeypatch.setitem(sys.modules, "boto3", types.SimpleNamespace(client=lambda name: fake))
    monkeypatch.setenv("MODEL_S3_URI", "s3://models/mlp/model.onnx")
    monkeypatch.setenv("MODEL_SHA256", sha)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    path = handler._model_path({"model_file": "model.onnx"})
    assert path.read_bytes() == payload and fake.calls == [("models", "mlp/model.onnx")]
    assert handler._model_path({"model_file": "model.onnx"}) == path and len(fake.calls) == 1  # cached
    monkeypatch.setenv("MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="has sha256"):
        handler._model_path({"model_file": "model.onnx"})
    assert not list(tmp_path.glob("*.part"))
