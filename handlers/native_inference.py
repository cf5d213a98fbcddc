"""Lambda inference handler for a model compiled to C: the Open Inference Protocol (v2), stdlib only.

Runs inside the bundle that lambda-zip's native engine emits; it never imports packager, and
imports nothing outside the standard library (ctypes, array, json, base64): no numpy, no
onnxruntime, no Powertools, so the cold start is the interpreter's and the library's load.
``model/`` next to this file holds ``signature.json`` and ``lib<prefix>.so`` (packager's C
generator: ``<prefix>_predict(const float *in, size_t batch, float *out)``). Routes, request
checks and error bodies are those of handlers/inference.py:

    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{model}                 name, versions, inputs and outputs
    POST /v2/models/{model}/infer           {"inputs": [{"name", "shape", "datatype", "data"}]}

Bad requests get a 400 whose JSON body names the field: {"error": {"code", "message"}}. Each
invocation writes one CloudWatch embedded-metric (EMF) JSON line to stdout; failures are logged
as JSON lines too.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import sys
import time
import traceback
from array import array
from typing import Any

MODEL_DIR = os.environ.get("PACKAGER_MODEL_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", 6 * 1024 * 1024))  # Lambda's sync payload
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-inference")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "packager")
DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
             "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}  # fmt: skip
MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)")
INFER_ROUTE = re.compile(r"/v2/models/([^/]+)/infer")


class RequestError(Exception):
    """A client mistake: answered with its status and a message that names the field."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Model:
    """The compiled library, loaded once per sandbox; float32 in, float32 out, batch first."""

    def __init__(self, folder: str, signature: dict[str, Any]) -> None:
        prefix = signature["prefix"]
        self.lib = ctypes.CDLL(os.path.join(folder, signature["library"]))
        self.predict_fn = getattr(self.lib, f"{prefix}_predict")
        self.predict_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        self.predict_fn.restype = ctypes.c_int
        built_from = (ctypes.c_char * 65).in_dll(self.lib, f"{prefix}_model_sha256").value.decode()
        if built_from != signature["model_sha256"]:
            raise RuntimeError(f"{signature['library']} was built from model {built_from}, not this bundle's")
        self.input_size, self.output_size = int(signature["input_size"]), int(signature["output_size"])

    def predict(self, x: array, batch: int) -> array:
        y = array("f", bytes(4 * batch * self.output_size))
        if batch and self.predict_fn(x.buffer_info()[0], batch, y.buffer_info()[0]) != 0:
            raise RuntimeError("the library's predict returned an error")
        return y


def _load_signature() -> dict[str, Any]:
    with open(os.path.join(MODEL_DIR, "signature.json"), encoding="utf-8") as handle:
        return json.load(handle)


# Loaded once per sandbox, at init, outside the handler.
SIGNATURE = _load_signature()
MODEL = Model(MODEL_DIR, SIGNATURE)
MAX_BATCH = int(os.environ.get("MAX_BATCH", SIGNATURE.get("max_batch", 64)))
INPUTS = {t["name"]: t for t in SIGNATURE["inputs"]}
OUTPUTS = [t["name"] for t in SIGNATURE["outputs"]]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) event in, HTTP response out."""
    metrics: dict[str, float] = {"Requests": 1}
    try:
        status, body = 200, _route(event, metrics)
    except RequestError as exc:
        metrics["ClientErrors"] = 1
        status, body = exc.status, _error(exc.code, exc.message)
    except Exception:
        _log("ERROR", "inference failed", context, exception=traceback.format_exc())
        metrics["ServerErrors"] = 1
        status, body = 500, _error("internal", "the model failed to run this request; see the function's logs")
    _emit_metrics(metrics)
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
            "body": json.dumps(body, separators=(",", ":"))}  # fmt: skip


def _route(event: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    method, path = http.get("method", event.get("httpMethod", "")), event.get("rawPath") or event.get("path", "")
    if method == "GET" and path in ("/v2/health/live", "/v2/health/ready"):
        return {path.rsplit("/", 1)[1]: True}
    found = MODEL_ROUTE.fullmatch(path)
    if method == "GET" and found:
        _check_model(found.group(1))
        return _metadata()
    found = INFER_ROUTE.fullmatch(path)
    if method == "POST" and found:
        _check_model(found.group(1))
        return _infer(event, metrics)
    raise RequestError(404, "route_not_found", f"no route {method} {path}")


def _check_model(model: str) -> None:
    if model != SIGNATURE["name"]:
        served = SIGNATURE["name"]
        raise RequestError(404, "model_not_found", f"model '{model}' is not served here; this is '{served}'")


def _tensor_meta(t: dict[str, Any]) -> dict[str, Any]:
    shape = [-1 if isinstance(d, str) else d for d in t["shape"]]
    return {"name": t["name"], "datatype": DATATYPES.get(t["dtype"], "BYTES"), "shape": shape}


def _metadata() -> dict[str, Any]:
    return {
        "name": SIGNATURE["name"], "versions": [SIGNATURE["version"]], "platform": "packager_c",
        "inputs": [_tensor_meta(t) for t in SIGNATURE["inputs"]],
        "outputs": [_tensor_meta(t) for t in SIGNATURE["outputs"]],
        "max_batch": MAX_BATCH,
    }  # fmt: skip


def _infer(event: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    request = _parse_body(event)
    feeds, batch = _feeds(request)
    wanted = _requested_outputs(request)
    start = time.perf_counter()
    y = MODEL.predict(feeds[next(iter(INPUTS))], batch)
    metrics["InferenceLatency"] = (time.perf_counter() - start) * 1000.0
    metrics["BatchSize"] = batch
    out = SIGNATURE["outputs"][0]["shape"]
    shape = [batch, *out[1:]] if isinstance(out[0], str) else out
    response: dict[str, Any] = {
        "model_name": SIGNATURE["name"], "model_version": SIGNATURE["version"],
        "outputs": [{"name": name, "datatype": "FP32", "shape": shape, "data": y.tolist()} for name in wanted],
    }  # fmt: skip
    if "id" in request:
        response["id"] = request["id"]
    return response


def _parse_body(event: dict[str, Any]) -> dict[str, Any]:
    raw: str | bytes = event.get("body") or ""
    if raw and event.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
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


def _feeds(request: dict[str, Any]) -> tuple[dict[str, array], int]:
    feeds: dict[str, array] = {}
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
        batches.add(batch)
    missing = sorted(set(INPUTS) - set(feeds))
    if missing:
        raise RequestError(400, "missing_input", f"missing input(s) {missing}")
    if len(batches) > 1:
        raise RequestError(400, "batch_mismatch", f"inputs have different batch sizes {sorted(batches)}")
    return feeds, batches.pop() if batches else 0


def _decode(item: dict[str, Any], spec: dict[str, Any], where: str) -> tuple[array, int]:
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
    batch = shape[0] if shape and isinstance(model_shape[0], str) else 1
    if batch > MAX_BATCH:
        raise RequestError(400, "batch_too_large", f"{where}: batch {batch} is over this endpoint's limit {MAX_BATCH}")
    try:
        values = array("f", _flat(item.get("data")))
    except (TypeError, ValueError, OverflowError):
        raise RequestError(400, "invalid_data", f"{where}: 'data' must be a list of {expected} values") from None
    need = 1
    for dim in shape:
        need *= dim
    if len(values) != need:
        raise RequestError(
            400, "wrong_data_size", f"{where}: 'data' has {len(values)} values; shape {shape} needs {need}"
        )
    return values, batch


def _flat(data: Any) -> Any:
    """Row-major values; nested lists (as some clients send them) are flattened."""
    if isinstance(data, list) and data and isinstance(data[0], list):
        return [value for part in data for value in _flat(part)]
    return data


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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _emit_metrics(values: dict[str, float]) -> None:
    """One CloudWatch embedded-metric-format line: CloudWatch turns it into metrics, no API call."""
    units = {"InferenceLatency": "Milliseconds"}
    record: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [["service"]],
            "Metrics": [{"Name": k, "Unit": units.get(k, "Count")} for k in values],
        }]},
        "service": SERVICE, **values,
    }  # fmt: skip
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


def _log(level: str, message: str, context: Any, **extra: Any) -> None:
    record = {"level": level, "message": message, "service": SERVICE, "timestamp": time.time(),
              "function_request_id": getattr(context, "aws_request_id", None), **extra}  # fmt: skip
    sys.stdout.write(json.dumps(record) + "\n")
