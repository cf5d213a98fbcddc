"""The ``onnxruntime`` runtime: a .onnx or .ort file in onnxruntime's CPU provider."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from packager.runtimes import InputSpec, RuntimeUnavailable, dims

TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
         "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
         "tensor(bool)": "bool", "tensor(string)": "str"}  # fmt: skip


class OrtRunner:
    """``path`` in onnxruntime's CPU provider. ``threads``: intra- and inter-op threads (the build
    uses one, for stable timings; None lets onnxruntime choose, as a device app would).
    ``ort_format``: the file is an ORT flatbuffer whatever its name (an installed copy is named by
    its hash)."""

    def __init__(self, path: Path, *, threads: int | None = 1, ort_format: bool | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable("onnxruntime is not installed here (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = threads
        options.log_severity_level = 3
        if ort_format if ort_format is not None else path.suffix == ".ort":
            options.add_session_config_entry("session.load_model_format", "ORT")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.input_specs = [InputSpec(i.name, TYPES.get(i.type), dims(i.shape)) for i in self._session.get_inputs()]
        self.runtime_label = f"onnxruntime {ort.__version__}"

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._outputs, dict(inputs))
        return dict(zip(self._outputs, values, strict=True))

    def close(self) -> None:
        self._session = None
