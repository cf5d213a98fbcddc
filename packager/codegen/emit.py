"""The generator proper: one C function per batch size, one C statement per node."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.codegen import render
from packager.codegen.graph import ALIGN, Graph, Shared, attrs, plan, prepare
from packager.codegen.ml import ML_EMITTERS
from packager.codegen.ops import EMITTERS, fuse_pools, fuse_relus, temp_floats
from packager.errors import UnsupportedOpError

TILE = 16  # samples per call of the batch-tile function (Gemm/MatMul see M = TILE)
TILE_ARENA = 65536  # floats: no tile when its workspace would outgrow the L2 cache (a CNN's)


@dataclass
class CSource:
    """What generate() returns: the C file, its header, and facts about the model."""

    code: str
    header: str
    input_size: int
    output_size: int
    workspace_floats: int
    ops: dict[str, int] = field(default_factory=dict)
    tile: int = 1


@dataclass
class Body:
    """One model function: its statements, arena size and where predict() parks other outputs."""

    graph: Graph
    lines: list[str]
    arena: int
    parked: dict[str, int]


def build_source(src: Path, work: Path, prefix: str, meta: dict[str, str],
                 shapes: Mapping[str, list[int]] | None = None) -> CSource:  # fmt: skip
    """Prepare ``src`` at batch 1 (other dims fixed at ``shapes``, one sample's), and at a batch
    tile when the model has matrix products and a symbolic batch (a graph that hard-codes batch 1
    gets no tile), then generate."""
    model = prepare(src, work, shapes=shapes)
    tiled = None
    products = any(n.op_type in ("Gemm", "MatMul") for n in model.graph.node)
    if products and _symbolic_batch(src) and _body(Graph(model, Shared(prefix))).arena * TILE <= TILE_ARENA:
        try:
            tiled = prepare(src, work, TILE, shapes)
        except UnsupportedOpError:
            tiled = None
    try:
        return generate(model, prefix, meta, tiled)
    except UnsupportedOpError:
        if tiled is None:
            raise
        return generate(model, prefix, meta)


def _symbolic_batch(src: Path) -> bool:
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    dims = [i.type.tensor_type.shape.dim for i in model.graph.input]
    return bool(dims) and all(d and (d[0].dim_param or d[0].dim_value == 0) for d in dims)


def generate(model: Any, prefix: str, meta: dict[str, str], tiled: Any = None) -> CSource:
    """C99 source and header for a prepared model (one float input; float outputs, and int64
    labels of classifiers). ``tiled``, the same model prepared at batch TILE, adds a function
    that runs TILE samples at once."""
    shared = Shared(prefix)
    one = _body(Graph(model, shared))
    tile = _body(Graph(tiled, shared)) if tiled is not None else None
    graph = one.graph
    code = render.source(prefix, meta, one, tile, [*shared.weights.lines, *shared.tables.lines])
    header = render.header(prefix, meta, graph, max(one.arena, tile.arena if tile else 0))
    return CSource(code=code, header=header, input_size=graph.size(graph.inputs[0]),
                   output_size=graph.size(graph.main), workspace_floats=max(one.arena, tile.arena if tile else 0),
                   ops=_count(graph), tile=tile.graph.shapes[tile.graph.inputs[0]][0] if tile else 1)  # fmt: skip


def _count(graph: Graph) -> dict[str, int]:
    ops: dict[str, int] = {}
    for node in graph.nodes:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def _body(graph: Graph) -> Body:
    _check(graph)
    graph.fused_relu = fuse_relus(graph)
    graph.fused_pool = fuse_pools(graph)
    temps = {i: temp_floats(graph, node) for i, node in enumerate(graph.nodes)}
    offsets, scratch, arena = plan(graph, {i: n for i, n in temps.items() if n})
    parked = {}
    for name in graph.outputs:  # room for the outputs predict() does not return
        if name != graph.main:
            parked[name] = arena
            arena += -(-graph.size(name) * (2 if name in graph.int_outputs else 1) // ALIGN) * ALIGN
    outputs = {name: f"y{k}" for k, name in enumerate(graph.outputs)}

    def ref(name: str) -> str:
        if name in graph.consts and graph.consts[name].dtype.kind == "f":
            return graph.weights.add(graph.consts[name], name)
        if name == graph.inputs[0]:
            return "x"
        if name in outputs:
            return outputs[name]
        return f"(ws + {offsets[name]})"

    lines = []
    for i, node in enumerate(graph.nodes):
        graph.scratch = f"(ws + {scratch[i]})" if i in scratch else "0"
        lines.append(f"    /* {node.op_type} {node.name} */")
        lines.append("    " + EMITTERS[node.op_type](graph, node, ref))
    for name in graph.outputs:  # an output folded to a constant (no node writes it)
        if name in graph.consts and graph.consts[name].dtype.kind == "f":
            lines.append(f"    memcpy({outputs[name]}, {ref(name)}, {graph.size(name)} * sizeof(float));")
    return Body(graph=graph, lines=lines, arena=arena, parked=parked)


def _check(graph: Graph) -> None:
    unsupported = sorted({n.op_type for n in graph.nodes if not _supported(n)})
    if unsupported:
        raise UnsupportedOpError(
            f"target 'static-lib' cannot take op(s) {', '.join(unsupported)}: packager's C generator does not "
            f"implement them (it does: {', '.join(sorted(SUPPORTED_OPS))})"
        )
    if len(graph.inputs) != 1 or not graph.main:
        raise UnsupportedOpError(
            f"target 'static-lib' takes models with one float input and at least one float output (this one has "
            f"{len(graph.inputs)} inputs and {len(graph.outputs) - len(graph.int_outputs)} float outputs)"
        )
    _check_types(graph)


def _supported(node: Any) -> bool:
    if node.op_type in ML_EMITTERS:
        return node.domain == "ai.onnx.ml"
    return node.op_type in EMITTERS and node.domain in ("", "ai.onnx")


def _check_types(graph: Graph) -> None:
    import onnx

    for value in [*graph.model.graph.input, *graph.model.graph.output]:
        if value.name in graph.consts or value.name in graph.int_outputs:
            continue
        if value.type.tensor_type.elem_type == onnx.TensorProto.STRING:
            raise UnsupportedOpError(
                f"target 'static-lib' cannot return '{value.name}': it holds strings (string class labels), and the "
                "C API returns numbers",
                hint="train with integer class labels, or build the onnx target",
            )
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise UnsupportedOpError(
                f"target 'static-lib' takes float32 inputs and outputs; '{value.name}' is not float32"
            )
    for node in graph.nodes:
        for name in node.output:
            if name in graph.int_outputs and node.op_type not in ("TreeEnsembleClassifier", "LinearClassifier"):
                raise UnsupportedOpError(f"static-lib: the int64 output '{name}' comes from {node.op_type}; only "
                                         "classifier labels may be int64")  # fmt: skip
        for name in node.input:
            if name in graph.int_outputs:
                raise UnsupportedOpError(f"static-lib: {node.op_type} reads the int64 tensor '{name}'")


def _ml(emit: Callable[..., str]) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    return lambda graph, node, ref: emit(graph, node, ref, attrs(node), graph.tables)


EMITTERS.update({op: _ml(emit) for op, emit in ML_EMITTERS.items()})
SUPPORTED_OPS = frozenset(EMITTERS)
