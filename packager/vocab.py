"""The words shared by build.json, device profiles and the CLI (kept import-light)."""

from __future__ import annotations

SOURCE_FORMATS = frozenset({"onnx", "torch", "keras", "sklearn"})
PRECISIONS = ("fp32", "fp16", "int8")
RUNTIMES = ("onnxruntime", "onnxruntime-web", "tflite", "coreml", "tfjs", "c", "lambda", "triton")
FIDELITY_STATUSES = ("verified", "unverified", "failed")
