"""The model as the generator sees it: static shapes, constants, C names, an arena plan."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packager.codegen.ml import Tables, ml_output_shapes
from packager.errors import UnsupportedOpError
from packager.spec import BATCH

ALIGN = 16  # floats: 64-byte aligned tensors in the arena


def prepare(src: Path, work: Path, batch: int = 1, shapes: Mapping[str, list[int]] | None = None):
    """The model at ``batch`` with every other dim fixed (``shapes``: one sample's input shapes;
    without them only a symbolic first dim is fixed), constants folded and BatchNormalization
    fused by onnxruntime, shapes inferred."""
    import onnx

    from packager import shapes as fixed_shapes

    model = onnx.load(str(src))
    if shapes is None:
        shapes = {}
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [batch if i == 0 and (d.dim_param or not d.dim_value) else d.dim_value or 1
                                  for i, d in enumerate(dims)]  # fmt: skip
            if dims and dims[0].dim_param:
                dims[0].dim_param = BATCH
    work.mkdir(parents=True, exist_ok=True)
    try:
        path = fixed_shapes.folded(model, shapes, work / f"folded{batch}.onnx", batch)
    except UnsupportedOpError as exc:
        raise UnsupportedOpError(f"static-lib: {exc.message}", hint="build the onnx target to see which op or type "
                                 "onnxruntime refuses") from exc  # fmt: skip
    folded = onnx.load(str(path))
    return onnx.shape_inference.infer_shapes(folded, strict_mode=True, data_prop=True)


def c_float(value: float) -> str:
    """A float32 as a C initializer: ``%.9g`` (exact), or the math.h macro of an infinity or NaN."""
    if value != value:
        return "NAN"
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "-INFINITY"
    return f"{value:.9g}"


class Weights:
    """float32 constants as ``static const float`` arrays, one per distinct content."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, str] = {}

    def add(self, value: np.ndarray, hint: str) -> str:
        flat = np.ascontiguousarray(value, np.float32).reshape(-1)
        key = hashlib.sha256(flat.tobytes()).hexdigest() + str(flat.size)
        if key not in self.names:
            cname = f"w{len(self.names)}_{re.sub(r'[^A-Za-z0-9_]', '_', hint)[-40:]}"
            numbers = ",".join(c_float(v) for v in flat.tolist()) if flat.size else "0"
            self.lines.append(f"static const float {cname}[{max(flat.size, 1)}] = {{{numbers}}};")
            self.names[key] = cname
        return self.names[key]


class Shared:
    """What the batch-1 and the batch-tile bodies of one library share: weights and tables."""

    def __init__(self, prefix: str) -> None:
        self.weights = Weights()
        self.tables = Tables(prefix)


class Graph:
    """Shapes, constants and C names of every tensor of a prepared model."""

    def __init__(self, model: Any, shared: Shared) -> None:
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.shapes: dict[str, tuple[int, ...]] = {k: tuple(v.shape) for k, v in self.consts.items()}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            dims = value.type.tensor_type.shape.dim
            if value.name not in self.shapes:
                self.shapes[value.name] = tuple(d.dim_value for d in dims)
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in graph.output]
        self.int_outputs = {o.name for o in graph.output if o.type.tensor_type.elem_type == 7}  # int64
        floats = [name for name in self.outputs if name not in self.int_outputs]
        self.main = floats[-1] if floats else ""
        self.shared = shared
        self.scratch = "0"  # C expression for the running node's scratch (set while emitting)
        self.fused_relu: dict[str, str] = {}  # Conv output -> the Relu output it writes instead
        self.fused_pool: dict[str, str] = {}  # Conv (or fused Relu) output -> the MaxPool output it writes
        self.tables = shared.tables
        self.weights = shared.weights
        self.nodes = [n for n in graph.node if n.op_type != "Constant"]
        for node in self.nodes:  # onnx infers no shapes for some ai.onnx.ml ops
            if node.domain == "ai.onnx.ml" and node.input[0] in self.shapes:
                for name, shape in zip(node.output, ml_output_shapes(node, self.shapes[node.input[0]]), strict=False):
                    if name and (name not in self.shapes or 0 in self.shapes[name] or not self.shapes[name]):
                        self.shapes[name] = shape
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)

    def written(self, name: str) -> str:
        """The tensor a node producing ``name`` really writes, once fusions are applied."""
        name = self.fused_relu.get(name, name)
        return self.fused_pool.get(name, name)

    def size(self, name: str) -> int:
        return int(np.prod(self.shapes[name])) if self.shapes[name] else 1


def attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def plan(graph: Graph, temps: dict[int, int]) -> tuple[dict[str, int], dict[int, int], int]:
    """First-fit offsets for intermediate tensors, freed after their last reader, and for the
    scratch a node needs while it runs (``temps``: node index -> floats)."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.input:
            last[name] = i
    skip = set(graph.consts) | set(graph.inputs) | set(graph.outputs)
    free: list[tuple[int, int]] = []  # (offset, size)
    offsets: dict[str, int] = {}
    top = 0
    live: dict[str, tuple[int, int]] = {}
    scratch: dict[int, int] = {}

    def take(size: int) -> int:
        nonlocal top
        slot = next((j for j, (_, s) in enumerate(free) if s >= size), None)
        if slot is None:
            top += size
            return top - size
        offset, s = free.pop(slot)
        if s > size:
            free.append((offset + size, s - size))
        return offset

    for i, node in enumerate(graph.nodes):  # a fused Conv writes its Relu's or pool's output: allocated there
        for name in [graph.written(n) for n in node.output]:
            if name in skip or not name or name in offsets:
                continue
            size = -(-graph.size(name) // ALIGN) * ALIGN
            offsets[name] = take(size)
            live[name] = (offsets[name], size)
        if temps.get(i):
            scratch[i] = take(-(-temps[i] // ALIGN) * ALIGN)
            free.append((scratch[i], -(-temps[i] // ALIGN) * ALIGN))
            free.sort()
        for name in {n for n in node.input if n in live and last.get(n) == i}:
            free.append(live.pop(name))
            free.sort()
    return offsets, scratch, max(top, ALIGN)
