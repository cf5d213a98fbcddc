"""The cloud endpoint's runtime: the Open Inference Protocol v2 (KServe's REST protocol), which
packager's Lambda handler and Triton both speak. The device client falls back to it; the build's
Lambda check (``packager.runtimes.aws_lambda``) sends the same tensors.

    GET  {model_url}          metadata: inputs and outputs with datatype and shape (readiness)
    POST {model_url}/infer    {"inputs": [{"name", "shape", "datatype", "data"}]} -> {"outputs": [...]}

``model_url`` is ``{url}/v2/models/{model}``; a published ``cloud.url`` that already ends with
``/v2/models/{model}`` is used as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from packager.errors import CloudError

if TYPE_CHECKING:
    import httpx

DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
             "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}  # fmt: skip
DTYPES = {v: k for k, v in DATATYPES.items()}


def model_url(url: str, model: str) -> str:
    base = url.rstrip("/")
    suffix = f"/v2/models/{model}"
    return base if base.endswith(suffix) else base + suffix


class CloudRunner:
    """A model served by an OIP v2 endpoint; ``predict`` sends one JSON request per call.
    It owns ``http`` and closes it with ``close``."""

    def __init__(self, http: httpx.Client, url: str, model: str) -> None:
        self.http = http
        self.url = model_url(url, model)
        self.runtime_label = f"open-inference-v2 {self.url}"
        meta = self._call("GET", self.url)
        self.inputs = {t["name"]: t for t in meta.get("inputs", [])}

    def _call(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        import httpx

        try:
            response = self.http.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise CloudError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            detail = response.text[:200]
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = response.json()["error"]["message"]
            raise CloudError(f"{method} {url} answered {response.status_code}: {detail}")
        try:
            doc = response.json()
        except ValueError as exc:
            raise CloudError(f"{method} {url} did not answer JSON") from exc
        if not isinstance(doc, dict):
            raise CloudError(f"{method} {url} answered {type(doc).__name__}, not an object")
        return doc

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = {"inputs": [encode(name, np.asarray(value), self.inputs.get(name)) for name, value in inputs.items()]}
        doc = self._call("POST", f"{self.url}/infer", body)
        try:
            return {out["name"]: decode(out) for out in doc["outputs"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise CloudError(f"the endpoint's outputs are not OIP v2 tensors: {exc}") from exc

    def close(self) -> None:
        self.http.close()


def encode(name: str, value: np.ndarray, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """One input tensor as OIP JSON, in the datatype the endpoint declares (else the array's)."""
    datatype = (meta or {}).get("datatype") or DATATYPES.get(value.dtype.name)
    if datatype not in DTYPES:
        raise CloudError(f"input {name!r}: dtype {value.dtype} has no Open Inference Protocol datatype")
    value = value.astype(DTYPES[datatype], copy=False)
    return {"name": name, "shape": list(value.shape), "datatype": datatype, "data": value.ravel().tolist()}


def decode(tensor: Mapping[str, Any]) -> np.ndarray:
    """One output tensor of OIP JSON as an array; ValueError for a datatype the protocol lacks."""
    dtype = DTYPES.get(tensor["datatype"])
    if dtype is None:
        raise ValueError(f"unknown datatype {tensor['datatype']!r}")
    return np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
