"""Loading an installed variant in its runtime: onnxruntime, LiteRT (ai-edge-litert), or the C
library through ctypes. Each runtime is imported only when a variant of it is loaded.

Installed files are content-addressed (named by their sha256), so loaders get each file's
original name beside its path: onnxruntime is told the ORT format explicitly, and the C
library's symbol prefix comes from its name (``libmlp.so`` -> ``mlp_run``).
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from packager.errors import ClientError, LoadError

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class InputSpec:
    """What a loaded variant takes for one input: None where it takes anything (a symbolic dim,
    or a runtime that does not say)."""

    name: str
    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None


ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
             "tensor(bool)": "bool", "tensor(string)": "str"}  # fmt: skip


def _dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape)


class Runner(Protocol):
    label: str

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Files:
    """An installed variant: its main file and the sidecars its runtime reads, by original name."""

    main: str  # the main file's path in the build (e.g. onnx/onnx-fp32/model.onnx)
    paths: Mapping[str, Path]  # original path -> installed path

    def main_path(self) -> Path:
        return self.paths[self.main]

    def sidecar(self, name: str) -> Path:
        for original, path in self.paths.items():
            if PurePosixPath(original).name == name:
                return path
        raise LoadError(f"the variant has no {name} beside {self.main}")


def c_prefix(main: str) -> str:
    """The C library's symbol prefix from its file name: ``libmlp.so`` -> ``mlp``."""
    stem = PurePosixPath(main).name.split(".")[0].removeprefix("lib")
    if not _PREFIX.fullmatch(stem):
        raise LoadError(f"{main!r} is not named as a packager C library (lib<prefix>.so)")
    return stem


def load(runtime: str, files: Files) -> Runner:
    """The variant in ``runtime``; LoadError (with the runtime's own message) when it cannot be."""
    loaders: dict[str, Callable[[Files], Runner]] = {"onnxruntime": OrtRunner, "tflite": LiteRunner, "c": CRunner}
    if runtime not in loaders:
        raise LoadError(f"this client cannot run {runtime!r} variants (it runs {', '.join(loaders)})")
    try:
        return loaders[runtime](files)
    except LoadError:
        raise
    except ImportError as exc:
        raise LoadError(f"the {runtime} runtime is not installed here: {exc}") from exc
    except Exception as exc:  # runtimes raise their own types (Fail, RuntimeError, OSError...)
        raise LoadError(f"{runtime} could not load {files.main}: {type(exc).__name__}: {exc}"[:600]) from exc


class OrtRunner:
    """onnxruntime's CPU provider; .ort files are loaded as the ORT format."""

    def __init__(self, files: Files) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if files.main.endswith(".ort"):
            options.add_session_config_entry("session.load_model_format", "ORT")
        self.session = ort.InferenceSession(str(files.main_path()), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_specs = [InputSpec(i.name, ORT_TYPES.get(i.type), _dims(i.shape)) for i in self.session.get_inputs()]
        self.label = f"onnxruntime {ort.__version__}"

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, dict(inputs)), strict=True))

    def close(self) -> None:
        self.session = None


class LiteRunner:
    """LiteRT's interpreter through the model's serving signature, one sample per invoke (as the
    build validated it), with layout.json mapping source names and axis orders."""

    def __init__(self, files: Files) -> None:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        self.layout = json.loads(files.sidecar("layout.json").read_text())
        self.interpreter = Interpreter(model_path=str(files.main_path()), num_threads=1)
        self.signature = self.interpreter.get_signature_runner("serving_default")
        self.details = {**self.signature.get_input_details(), **self.signature.get_output_details()}
        self.input_specs = [InputSpec(e["source"]) for e in self.layout["inputs"]]  # quantized ones take floats too
        self.label = f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(inputs.values())))
        if count == 1:  # one sample: as it is (an input without a batch axis may be a scalar)
            return self._one(inputs)
        rows = [self._one({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(count)]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    def _one(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for entry in self.layout["inputs"]:
            x = inputs[entry["source"]]
            x = np.ascontiguousarray(np.transpose(x, entry["perm"])) if entry["perm"] else x
            feeds[entry["name"]] = _quantize(x, self.details[entry["name"]])
        result = self.signature(**feeds)
        out = {}
        for entry in self.layout["outputs"]:
            y = _dequantize(result[entry["name"]], self.details[entry["name"]])
            out[entry["source"]] = np.transpose(y, entry["perm"]) if entry["perm"] else y
        return out

    def close(self) -> None:
        self.signature = self.interpreter = None


def _quantize(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and np.issubdtype(x.dtype, np.floating):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _dequantize(y: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and detail["quantization"][0]:
        scale, zero = detail["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y


class CRunner:
    """packager's compiled C library via ctypes: ``<prefix>_run(in, batch, outputs, workspace)``,
    outputs as its header lists them (``<PREFIX>_OUTPUT<k>_SIZE n /* 'name' dtype */``)."""

    def __init__(self, files: Files) -> None:
        prefix = c_prefix(files.main)
        header = files.sidecar(f"{prefix}.h").read_text()
        pattern = rf"#define {prefix.upper()}_OUTPUT\d+_SIZE (\d+) /\* '(.*)' (int64|float32) \*/"
        self.outputs = [(name, int(size), np.dtype(dtype)) for size, name, dtype in re.findall(pattern, header)]
        if not self.outputs:
            raise LoadError(f"{prefix}.h lists no outputs: not a header of packager's C library")
        self.lib = ctypes.CDLL(str(files.main_path()))
        self.run = getattr(self.lib, f"{prefix}_run")
        self.run.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self.run.restype = ctypes.c_int
        signature = getattr(self.lib, f"{prefix}_signature")
        signature.restype = ctypes.c_char_p
        described = json.loads(signature() or b"{}")
        self.shapes = {o["name"]: o["shape"] for o in described.get("outputs", [])}
        self.input_specs = [InputSpec(i["name"], i["dtype"], _dims(i["shape"])) for i in described.get("inputs", [])]
        self.label = "c (ctypes)"

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        x = np.ascontiguousarray(x, dtype=np.float32)
        results = [np.zeros((len(x), size), dtype) for _, size, dtype in self.outputs]
        pointers = (ctypes.c_void_p * len(results))(*[r.ctypes.data for r in results])
        if self.run(x.ctypes.data, len(x), pointers, None) != 0:
            raise ClientError("the C library's run returned an error (a NULL pointer)")
        return {name: result.reshape([len(x), *self.shapes.get(name, ["batch", size])[1:]])
                for (name, size, _), result in zip(self.outputs, results, strict=True)}  # fmt: skip

    def close(self) -> None:
        self.run = None
