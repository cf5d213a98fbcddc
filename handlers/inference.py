"""Lambda inference handler speaking the Open Inference Protocol (v2) over an HTTP API.

Runs inside the bundle that packager's lambda targets emit; it never imports packager. The model
and its signature sit next to this file in ``model/`` (or come from S3 at init when the bundle
was built with the model outside the zip). Routes:

    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{model}                 name, versions, inputs and outputs
    POST /v2/models/{model}/infer           {"inputs": [{"name", "shape", "datatype", "data"}]}

Bad requests get a 400 whose JSON body names the field: {"error": {"code", "message"}}.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

MODEL_DIR = Path(os.environ.get("PACKAGER_MODEL_DIR") or Path(__file__).resolve().parent / "model")
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", 6 * 1024 * 1024))  # Lambda's sync payload
DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
             "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}  # fmt: skip

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-inference"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "packager"))
tracer = Tracer(disabled=os.environ.get("PACKAGER_TRACING", "0") != "1")
app = APIGatewayHttpResolver()


class RequestError(Exception):
    """A client mistake: answered with its status and a message that names the field."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _load_signature() -> dict[str, Any]:
    return json.loads((MODEL_DIR / "signature.json").read_text())


def _model_path(signature: dict[str, Any]) -> Path:
    """The bundled model, or the S3 copy cached in /tmp after its sha256 checks out."""
    uri = os.environ.get("MODEL_S3_URI")
    if not uri:
        return MODEL_DIR / signature.get("model_file", "model.onnx")
    want = os.environ.get("MODEL_SHA256") or signature["model_sha256"]
    cached = Path(os.environ.get("MODEL_CACHE_DIR", "/tmp")) / f"model-{want[:16]}.onnx"
    if cached.is_file() and _sha256(cached) == want:
        return cached
    import boto3  # in the Lambda runtime; imported only for S3-hosted models

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    partial = cached.with_suffix(".part")
    boto3.client("s3").download_file(bucket, key, str(partial))
    got = _sha256(partial)
    if got != want:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"model at {uri} has sha256 {got}, expected {want}")
    partial.replace(cached)
    return cached


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Lambda gives vCPUs in proportion to memory; use what this sandbox may run on.
    options.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = True
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# Loaded once per sandbox, at init, outside the handler.
SIGNATURE = _load_signature()
SESSION = _session(_model_path(SIGNATURE))
MAX_BATCH = int(os.environ.get("MAX_BATCH", SIGNATURE.get("max_batch", 64)))
INPUTS = {t["name"]: t for t in SIGNATURE["inputs"]}
OUTPUTS = [t["name"] for t in SIGNATURE["outputs"]]


def _tensor_meta(t: dict[str, Any]) -> dict[str, Any]:
    shape = [-1 if isinstance(d, str) else d for d in t["shape"]]
    return {"name": t["name"], "datatype": DATATYPES.get(t["dtype"], "BYTES"), "shape": shape}


def _check_model(model: str) -> None:
    if model != SIGNATURE["name"]:
        served = SIGNATURE["name"]
        raise RequestError(404, "model_not_found", f"model '{model}' is not served here; this is '{served}'")


@app.get("/v2/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get("/v2/models/<model>")
def model_metadata(model: str) -> dict[str, Any]:
    _check_model(model)
    return {
        "name": SIGNATURE["name"], "versions": [SIGNATURE["version"]], "platform": "onnxruntime_onnx",
        "inputs": [_tensor_meta(t) for t in SIGNATURE["inputs"]],
        "outputs": [_tensor_meta(t) for t in SIGNATURE["outputs"]],
        "max_batch": MAX_BATCH,
    }  # fmt: skip


@app.post("/v2/models/<model>/infer")
def infer(model: str) -> dict[str, Any]:
    _check_model(model)
    request = _parse_body()
    feeds, batch = _feeds(request)
    wanted = _requested_outputs(request)
    start = time.perf_counter()
    values = SESSION.run(wanted, feeds)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=batch)
    response: dict[str, Any] = {
        "model_name": SIGNATURE["name"], "model_version": SIGNATURE["version"],
        "outputs": [_encode(name, value) for name, value in zip(wanted, values, strict=True)],
    }  # fmt: skip
    if "id" in request:
        response["id"] = request["id"]
    return response


def _parse_body() -> dict[str, Any]:
    event = app.current_event
    raw = (event.decoded_body or "") if event.body is not None else ""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_BODY_BYTES:
        raise RequestError(400, "body_too_large", f"request body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw:
        raise RequestError(400, "empty_body", 'request body is empty; send {"inputs": [...]}')
    try:
        request = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RequestError(400, "invalid_json", f"request body is not JSON: {detail}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError(400, "invalid_request", "request must be an object with an 'inputs' array")
    return request


def _feeds(request: dict[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    feeds: dict[str, np.ndarray] = {}
    batches = set()
    for index, item in enumerate(request["inputs"]):
        where = f"inputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, "invalid_input", f"{where} must be an object with a 'name'")
        name = item["name"]
        if name not in INPUTS:
            known = sorted(INPUTS)
            raise RequestError(400, "unknown_input", f"{where}: unknown input '{name}'; the model takes {known}")
        if name in feeds:
            raise RequestError(400, "duplicate_input", f"{where}: input '{name}' is given twice")
        feeds[name], batch = _decode(item, INPUTS[name], f"{where} ('{name}')")
        if batch is not None:
            batches.add(batch)
    missing = sorted(set(INPUTS) - set(feeds))
    if missing:
        raise RequestError(400, "missing_input", f"missing input(s) {missing}")
    if len(batches) > 1:
        raise RequestError(400, "batch_mismatch", f"inputs have different batch sizes {sorted(batches)}")
    return feeds, batches.pop() if batches else 1


def _batch_axis(shape: list[Any]) -> int | None:
    """The batch's axis: the dim named "batch" (not always the first), else a symbolic first dim."""
    if "batch" in shape:
        return shape.index("batch")
    return 0 if shape and isinstance(shape[0], str) else None


def _decode(item: dict[str, Any], spec: dict[str, Any], where: str) -> tuple[np.ndarray, int | None]:
    expected = DATATYPES.get(spec["dtype"], "BYTES")
    if item.get("datatype") != expected:
        raise RequestError(
            400, "wrong_datatype", f"{where}: datatype is {item.get('datatype')!r}; expected '{expected}'"
        )
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(400, "invalid_shape", f"{where}: 'shape' must be a list of non-negative integers")
    model_shape = spec["shape"]
    fixed_ok = len(shape) == len(model_shape) and all(
        isinstance(m, str) or m == s for m, s in zip(model_shape, shape, strict=True)
    )
    if not fixed_ok:
        want = [m if isinstance(m, int) else -1 for m in model_shape]
        raise RequestError(400, "wrong_shape", f"{where}: shape {shape} does not fit the model's {want}")
    axis = _batch_axis(model_shape)
    batch = shape[axis] if axis is not None else None  # an input without a batch serves every sample
    if batch is not None and batch > MAX_BATCH:
        raise RequestError(400, "batch_too_large", f"{where}: batch {batch} is over this endpoint's limit {MAX_BATCH}")
    try:
        array = np.asarray(item.get("data"), dtype=np.dtype(spec["dtype"]))
    except (TypeError, ValueError):
        raise RequestError(400, "invalid_data", f"{where}: 'data' must be a list of {expected} values") from None
    if array.size != int(np.prod(shape)):
        need = int(np.prod(shape))
        raise RequestError(
            400, "wrong_data_size", f"{where}: 'data' has {array.size} values; shape {shape} needs {need}"
        )
    return array.reshape(shape), batch


def _requested_outputs(request: dict[str, Any]) -> list[str]:
    asked = request.get("outputs")
    if asked is None:
        return OUTPUTS
    if not isinstance(asked, list) or not all(isinstance(o, dict) and "name" in o for o in asked):
        raise RequestError(400, "invalid_outputs", "'outputs' must be a list of {\"name\": ...} objects")
    names = [o["name"] for o in asked]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise RequestError(400, "unknown_output", f"unknown output(s) {unknown}; the model gives {OUTPUTS}")
    return names


def _encode(name: str, value: np.ndarray) -> dict[str, Any]:
    value = np.asarray(value)
    return {"name": name, "datatype": DATATYPES.get(value.dtype.name, "BYTES"), "shape": list(value.shape),
            "data": value.reshape(-1).tolist()}  # fmt: skip


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(RequestError)
def _request_error(exc: RequestError) -> Response:
    metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    return _error(exc.status, exc.code, exc.message)


@app.not_found
def _not_found(exc: Exception) -> Response:
    return _error(404, "route_not_found", f"no route {app.current_event.http_method} {app.current_event.path}")


@app.exception_handler(Exception)
def _server_error(exc: Exception) -> Response:
    logger.exception("inference failed")
    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    return _error(500, "internal", "the model failed to run this request; see the function's logs")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
