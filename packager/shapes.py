"""Shapes fixed from the samples, for the targets that need static shapes.

static-lib, the onnx2tf path (tflite, tfjs, Core ML from ONNX or torch) and Core ML take a graph
whose every dim is known. Height, width and sequence are fixed at one sample's shape (the
samples were made or checked against ``--input-shape``); the batch stays where the target wants
it. With the shapes known, onnxruntime's constant folding turns the shape arithmetic (Shape,
Gather, Range, ConstantOfShape, an ``If`` on a folded condition) into constants, so the
converters see only the compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packager import batching
from packager.errors import UnsupportedOpError, first_line
from packager.spec import BATCH, ModelSpec, TensorSpec


def one_sample(spec: ModelSpec) -> dict[str, list[int]]:
    """Each input's shape in one sample: the batch axis 1, every other dim as the samples have it
    (1 for a symbolic dim when there are no samples yet, as for ``packager inspect``)."""
    if not spec.samples:
        return {t.name: list(t.concrete(1)) for t in spec.signature.inputs}
    first = batching.take(spec.samples, spec.signature.inputs, 0, 1)
    return {t.name: [int(d) for d in first[t.name].shape] for t in spec.signature.inputs}


def fix(model, shapes: Mapping[str, list[int]], batch: int = 1) -> None:  # model: onnx.ModelProto
    """Set every input's dims to ``shapes`` (the dim named ``batch`` to ``batch``) and forget what
    the graph said of the other shapes: inference works them out again."""
    for value in model.graph.input:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = shapes[value.name]
        for axis, dim in enumerate(dims):
            size = batch if dim.dim_param == BATCH else wanted[axis]
            dim.Clear()
            dim.dim_value = size
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param or not dim.dim_value:
                is_batch = dim.dim_param == BATCH
                dim.Clear()
                if is_batch:
                    dim.dim_value = batch
    del model.graph.value_info[:]


def folded(src: Path | Any, shapes: Mapping[str, list[int]], out: Path, batch: int = 1) -> Path:
    """``src`` (a path, or an onnx.ModelProto, changed in place) with its inputs fixed (see
    ``fix``), constants folded by onnxruntime ("basic": the optimizations that keep the graph
    portable), written to ``out``."""
    import onnx
    import onnxruntime as ort

    model = src if isinstance(src, onnx.ModelProto) else onnx.load(str(src))
    fix(model, shapes, batch)
    fixed = out.with_name(out.stem + ".fixed.onnx")
    onnx.save(model, str(fixed))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise UnsupportedOpError(
            f"onnxruntime cannot load the model with its shapes fixed to {dict(shapes)}: {first_line(exc)}",
            hint="pass --input-shape NAME=D,D,... (or samples of the shape the model takes)",
        ) from exc
    finally:
        fixed.unlink(missing_ok=True)
    return out


def fixed_signature(spec: ModelSpec) -> dict[str, list[dict[str, object]]]:
    """The signature as a static-shape variant has it: every dim but the batch fixed, inputs at
    one sample's shape and outputs at the source model's, from its reference outputs."""
    inputs = one_sample(spec)
    first = batching.take(spec.reference, spec.signature.outputs, 0, 1) if spec.reference else {}

    def entry(t: TensorSpec, dims: list[int] | None) -> dict[str, object]:
        if dims is None:
            return t.to_json()
        shape = [BATCH if i == t.batch_axis else int(d) for i, d in enumerate(dims)]
        return {"name": t.name, "dtype": t.dtype, "shape": shape}

    return {
        "inputs": [entry(t, inputs.get(t.name)) for t in spec.signature.inputs],
        "outputs": [entry(t, list(first[t.name].shape) if t.name in first else None) for t in spec.signature.outputs],
    }
