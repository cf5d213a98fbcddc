"""The ``c`` runtime: packager's compiled C library through ctypes, called as its header declares:
``<prefix>_infer(inputs, batch, outputs, workspace)`` reads every input and fills every output,
listed in the header as ``<PREFIX>_INPUT<k>_SIZE n /* 'name' dtype */`` and
``<PREFIX>_OUTPUT<k>_SIZE ...``; ``<prefix>_signature()`` returns the model's signature as JSON.
Libraries built before ``_infer`` existed (one float input) are called through ``<prefix>_run``."""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np

from packager.runtimes import InputSpec, dims

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def prefix_of(name: str) -> str:
    """The library's symbol prefix from its file name: ``libmlp.so`` -> ``mlp``; ValueError if
    the name is not one packager gives its libraries."""
    stem = PurePosixPath(name).name.split(".")[0].removeprefix("lib")
    if not _PREFIX.fullmatch(stem):
        raise ValueError(f"{name!r} is not named as a packager C library (lib<prefix>.so)")
    return stem


def header_outputs(prefix: str, header: str, kind: str = "OUTPUT") -> list[tuple[str, int, np.dtype]]:
    """Every output (or with ``kind="INPUT"`` input) the generated header lists: (name, values
    per sample, dtype), in order."""
    pattern = rf"#define {prefix.upper()}_{kind}\d+_SIZE (\d+) /\* '(.*)' (\w+) \*/"
    return [(name, int(size), np.dtype(dtype)) for size, name, dtype in re.findall(pattern, header)]


def arrays_in(listed: list[tuple[str, int, np.dtype]], inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The caller's inputs in the library's order, each contiguous in its listed type; KeyError
    names a missing one."""
    found = []
    for name, _, dtype in listed:
        if name not in inputs:
            raise KeyError(f"the library takes input '{name}' (it takes {', '.join(n for n, _, _ in listed)})")
        found.append(np.ascontiguousarray(inputs[name], dtype=dtype))
    return found


class CRunner:
    """``library`` (a .so) loaded with ctypes; ``header``: its .h text; ``prefix``: its symbols'
    prefix. ``label``: how the runtime is named (the build names its compiler)."""

    def __init__(self, library: Path, header: str, prefix: str, *, label: str = "c (ctypes)") -> None:
        self.outputs = header_outputs(prefix, header)
        if not self.outputs:
            raise ValueError(f"{prefix}.h lists no outputs: not a header of packager's C library")
        self.inputs = header_outputs(prefix, header, "INPUT")
        self.lib = ctypes.CDLL(str(library))  # OSError for a file that is not a library of this host
        self.run_fn = getattr(self.lib, f"{prefix}_infer" if self.inputs else f"{prefix}_run")
        self.run_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self.run_fn.restype = ctypes.c_int
        signature_fn = getattr(self.lib, f"{prefix}_signature")
        signature_fn.restype = ctypes.c_char_p
        self.signature = json.loads(signature_fn() or b"{}")
        self.shapes = {o["name"]: o["shape"] for o in self.signature.get("outputs", [])}
        inputs = self.signature.get("inputs", [])
        self.input_specs = [InputSpec(i["name"], i["dtype"], dims(i["shape"])) for i in inputs]
        self.runtime_label = label

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.inputs:
            arrays = arrays_in(self.inputs, inputs)
            given: object = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
        else:  # a library of one float input, from before _infer
            (x,) = inputs.values()
            arrays = [np.ascontiguousarray(x, dtype=np.float32)]
            given = arrays[0].ctypes.data
        batch = len(arrays[0]) if arrays[0].ndim else 1
        results = [np.zeros((batch, size), dtype) for _, size, dtype in self.outputs]
        pointers = (ctypes.c_void_p * len(results))(*[r.ctypes.data for r in results])
        if self.run_fn(given, batch, pointers, None) != 0:
            raise RuntimeError("the C library's run returned an error (a NULL pointer)")
        return {name: result.reshape([batch, *self.shapes.get(name, ["batch", size])[1:]])
                for (name, size, _), result in zip(self.outputs, results, strict=True)}  # fmt: skip

    def close(self) -> None:
        self.run_fn = None
