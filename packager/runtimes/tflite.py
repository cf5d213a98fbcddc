"""The ``tflite`` runtime: a .tflite in LiteRT's interpreter (ai-edge-litert), through its
serving signature, one sample per invoke, with the variant's layout.json mapping the source
model's names and axis orders onto the converted graph's, and quantized inputs and outputs
converted from and to floats with the scale and zero point the model states."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packager.runtimes import InputSpec, RuntimeUnavailable


def to_variant(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    """An array in the source model's axis order, in the converted graph's (layout.json's perm)."""
    return np.ascontiguousarray(np.transpose(array, perm)) if perm else array


class LiteRunner:
    """``path`` in the LiteRT interpreter, one thread. ``layout``: the variant's layout.json.
    ``quiet``: silence the banner LiteRT prints to descriptor 2 on its first invoke (the build's
    terminal; a device app keeps its stderr as it is)."""

    def __init__(self, path: Path, layout: Mapping[str, Any], *, quiet: bool = False) -> None:
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise RuntimeUnavailable("ai-edge-litert is not installed here (pip install ai-edge-litert)") from exc
        self.layout = layout
        self._quiet = quiet
        with _quieted(quiet):
            self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.signature = self.interpreter.get_signature_runner("serving_default")
        self._io = {**self.signature.get_input_details(), **self.signature.get_output_details()}
        self.input_specs = [InputSpec(e["source"]) for e in layout["inputs"]]  # quantized ones take floats too
        self.runtime_label = f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')} (LiteRT interpreter)"

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(inputs.values())))
        if count == 1:  # one sample: as it is (an input without a batch axis may be a scalar)
            return self._one(inputs)
        rows = [self._one({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(count)]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    def _one(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for entry in self.layout["inputs"]:
            x = to_variant(inputs[entry["source"]], entry["perm"])
            feeds[entry["name"]] = quantize(x, self._io[entry["name"]])
        with _quieted(self._quiet):
            result = self.signature(**feeds)
        self._quiet = False  # the banner comes once
        out = {}
        for entry in self.layout["outputs"]:
            y = dequantize(result[entry["name"]], self._io[entry["name"]])
            out[entry["source"]] = np.transpose(y, entry["perm"]) if entry["perm"] else y
        return out

    def close(self) -> None:
        self.signature = self.interpreter = None


def _quieted(quiet: bool) -> Any:
    """Descriptor 2 silenced while LiteRT loads and first invokes, when ``quiet``."""
    if not quiet:
        return contextlib.nullcontext()
    from packager.importers.base import quiet_native_output

    return quiet_native_output()


def quantize(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """A float input as the integer tensor the model takes (its scale and zero point), else cast."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and np.issubdtype(x.dtype, np.floating):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def dequantize(y: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """A quantized output as floats; any other output as it is."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and detail["quantization"][0]:
        scale, zero = detail["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y
