"""ONNX → C99: a model compiled into plain C with no runtime dependency (libc and libm only).

``prepare`` fixes the batch to 1 and lets onnxruntime fold constants and fuse BatchNormalization
into Conv, expands the ops ONNX defines as functions and folds what the fixed shapes make
constant, so every tensor has a static shape; ``generate`` turns the graph into calls of the
kernels in kernels.c (float32) and per-element loops (the other types), with weights as
``static const`` arrays (float32 as ``%.9g``, exact) and one arena planned from tensor
lifetimes: no allocation on the predict path. The generated ``<prefix>_infer`` loops over the
batch.
"""

from __future__ import annotations

from pathlib import Path

from packager.codegen.emit import SUPPORTED_OPS, CSource, build_source, generate
from packager.codegen.graph import prepare

__all__ = ["SUPPORTED_OPS", "CSource", "build_source", "generate", "prepare"]

KERNELS = Path(__file__).with_name("kernels.c")
