"""ONNX files, and the normalisation every importer's output goes through."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from packager.errors import ModelInputError, first_line
from packager.spec import Preprocessing, Signature, TensorSpec

BATCH = "batch"


def load(path: Path):  # -> onnx.ModelProto
    """Read and check an ONNX file; any failure is a one-line ModelInputError."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelInputError(
            f"'{path.name}' is not a valid ONNX model: {first_line(exc) or 'cannot be parsed'}",
            hint="check that the file was fully written; re-export it from its framework",
        ) from exc
    check(model, path.name)
    return model


def check(model, label: str) -> None:  # model: onnx.ModelProto
    import onnx

    if not model.graph.node or not model.graph.output:
        raise ModelInputError(
            f"'{label}' is not a valid ONNX model: it has no graph (truncated or not ONNX)",
            hint="check that the file was fully written; re-export it from its framework",
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelInputError(
            f"'{label}' is not a valid ONNX model: {first_line(exc)}",
            hint="run `python -m onnx.checker` on it; re-export it from its framework",
        ) from exc


def graph_inputs(model) -> list:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def name_batch_dim(model) -> None:
    """Name the batch dim ``batch`` across the graph.

    The batch is the symbolic dim that the inputs share: the symbol found in the most inputs
    (``input [batch, sequence]`` and ``state [2, batch, 128]`` share ``batch``), ties going to
    the one nearest the front. When no symbol is shared (one input, or unnamed dims), it is each
    input's symbolic first dim, as exporters put it. Inputs without the dim (a scalar sample
    rate) have no batch.
    """
    inputs = graph_inputs(model)
    shared = _shared_symbol(inputs)
    renames: dict[str, str] = {}
    if shared is not None:
        renames[shared] = BATCH
    else:
        for value in inputs:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].dim_param and dims[0].dim_param != BATCH:
                renames[dims[0].dim_param] = BATCH
            elif dims and not dims[0].dim_param and dims[0].dim_value == 0 and value.type.tensor_type.HasField("shape"):
                dims[0].dim_param = BATCH
    batched = all(_dims(v) and _dims(v)[0] in (BATCH, *renames) for v in inputs)
    for value in model.graph.output if batched else ():
        dims = value.type.tensor_type.shape.dim
        # Exporters give the output batch its own symbol (tf2onnx: unk__41); it is the batch.
        if dims and dims[0].dim_param and dims[0].dim_param not in (BATCH, *renames) and BATCH not in _dims(value):
            renames[dims[0].dim_param] = BATCH
    if not renames:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _dims(value) -> list[str]:
    return [d.dim_param for d in value.type.tensor_type.shape.dim]


def _shared_symbol(inputs: list) -> str | None:
    """The symbolic dim named in the most inputs (at least two), or None."""
    found: Counter[str] = Counter()
    first_at: dict[str, tuple[int, int]] = {}
    for i, value in enumerate(inputs):
        for axis, name in enumerate(_dims(value)):
            if name and name not in {n for n in _dims(value)[:axis]}:
                found[name] += 1
                first_at.setdefault(name, (axis, i))
    candidates = [name for name, n in found.items() if n >= 2]
    if not candidates:
        return None
    return min(candidates, key=lambda name: (-found[name], first_at[name]))


def signature(model) -> Signature:
    from onnx import helper

    def spec(value) -> TensorSpec:
        ttype = value.type.tensor_type
        dims: list[int | str] = []
        for i, dim in enumerate(ttype.shape.dim):
            if dim.dim_param:
                dims.append(dim.dim_param)
            elif dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            else:
                dims.append(BATCH if i == 0 else f"d{i}")
        dtype = helper.tensor_dtype_to_np_dtype(ttype.elem_type) if ttype.elem_type else np.dtype("O")
        name = "string" if dtype == np.dtype("O") else np.dtype(dtype).name
        return TensorSpec(name=value.name, dtype=name, shape=tuple(dims))

    return Signature(
        inputs=tuple(spec(v) for v in graph_inputs(model)),
        outputs=tuple(spec(v) for v in model.graph.output),
    )


def op_histogram(model) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        counts[f"{node.domain}::{node.op_type}" if node.domain else node.op_type] += 1
    return dict(sorted(counts.items()))


def fold_preprocessing(model, prep: Preprocessing) -> None:
    """Put ``(x - mean) / std * scale`` in front of the (single, float) input, in place."""
    from onnx import TensorProto, helper, numpy_helper

    if prep.empty:
        return
    inputs = graph_inputs(model)
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ModelInputError(
            "preprocessing can only be folded into a model with one float32 input",
            hint="remove [tool.packager.preprocessing] or bake it into the model yourself",
        )
    name = inputs[0].name
    rank = len(inputs[0].type.tensor_type.shape.dim)
    if any(out.name == name for out in model.graph.output):
        raise ModelInputError("preprocessing cannot be folded: the input is also an output")
    folded = f"{name}__packager_pre"
    # Consumers of the input now read the normalised tensor; the input keeps its name.
    for node in model.graph.node:
        for i, inp in enumerate(node.input):
            if inp == name:
                node.input[i] = folded
    candidates = [("Sub", prep.mean), ("Div", prep.std), ("Mul", (prep.scale,) if prep.scale else None)]
    steps = [(op, values) for op, values in candidates if values is not None]
    current, nodes, inits = name, [], []
    for index, (op, values) in enumerate(steps):
        const = f"{name}__packager_{op.lower()}"
        inits.append(numpy_helper.from_array(prep.constant(tuple(values), rank), const))
        out = folded if index == len(steps) - 1 else f"{const}_out"
        nodes.append(helper.make_node(op, [current, const], [out], name=f"packager_pre_{op.lower()}"))
        current = out
    model.graph.initializer.extend(inits)
    for i, node in enumerate(nodes):
        model.graph.node.insert(i, node)
