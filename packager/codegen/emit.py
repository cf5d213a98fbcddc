"""The generator proper: one C function per batch size, one C statement per node."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from packager.codegen import layout, render
from packager.codegen.graph import ALIGN, Graph, Shared, attrs, c_type, plan, prepare
from packager.codegen.ml import ML_EMITTERS
from packager.codegen.ops import EMITTERS, TYPED, fuse_biases, fuse_pools, fuse_relus, temp_floats
from packager.errors import UnsupportedOpError

TILE = 16  # samples per call of the batch-tile function (Gemm/MatMul see M = TILE)
TILE_ARENA = 65536  # floats: no tile when its workspace would outgrow the L2 cache (a CNN's)...
TILE_WEIGHTS = 8  # ...unless its products' weights outweigh the workspace this many times (a transformer's:
#                   each call streams them all, and a tile of samples shares one pass over them)
TILE_ARENA_MAX = 1 << 22  # floats (16 MiB): the tile's workspace, at most


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
    products = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    if products and _symbolic_batch(src) and _tiles(model, products, _body(Graph(model, Shared(prefix))).arena):
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


def _tiles(model: Any, products: list[Any], arena: int) -> bool:
    """Whether a batch tile pays: its workspace stays in the L2 cache, or the products' constant
    weights are many times the workspace (then sharing one pass over them wins)."""
    if arena * TILE <= TILE_ARENA:
        return True
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    weights = sum(sizes.get(n.input[1], 0) for n in products)
    return weights >= TILE_WEIGHTS * arena and arena * TILE <= TILE_ARENA_MAX


def _symbolic_batch(src: Path) -> bool:
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    dims = [i.type.tensor_type.shape.dim for i in model.graph.input]
    return bool(dims) and all(d and (d[0].dim_param or d[0].dim_value == 0) for d in dims)


def generate(model: Any, prefix: str, meta: dict[str, str], tiled: Any = None) -> CSource:
    """C99 source and header for a prepared model (inputs and outputs of any type C_TYPES
    lists). ``tiled``, the same model prepared at batch TILE, adds a function that runs TILE
    samples at once."""
    shared = Shared(prefix)
    one = _body(Graph(model, shared))
    tile = _body(Graph(tiled, shared)) if tiled is not None else None
    graph = one.graph
    code = render.source(prefix, meta, one, tile, [*shared.weights.lines, *shared.tables.lines])
    header = render.header(prefix, meta, graph, max(one.arena, tile.arena if tile else 0))
    return CSource(code=code, header=header, input_size=graph.size(graph.inputs[0]),
                   output_size=graph.size(graph.main) if graph.main else 0,
                   workspace_floats=max(one.arena, tile.arena if tile else 0),
                   ops=_count(graph), tile=tile.graph.shapes[tile.graph.inputs[0]][0] if tile else 1)  # fmt: skip


def _count(graph: Graph) -> dict[str, int]:
    ops: dict[str, int] = {}
    for node in graph.nodes:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def _body(graph: Graph) -> Body:
    _check(graph)
    graph.fused_bias = fuse_biases(graph)
    graph.fused_relu = fuse_relus(graph)
    graph.fused_pool = fuse_pools(graph)
    graph.turned = layout.turn(graph)
    temps = {i: temp_floats(graph, node) for i, node in enumerate(graph.nodes)}
    offsets, scratch, arena = plan(graph, {i: n for i, n in temps.items() if n})
    parked = {}
    for name in graph.outputs:  # room for the outputs predict() does not return
        if name != graph.main:
            parked[name] = arena
            arena += -(-graph.floats(name) // ALIGN) * ALIGN
    outputs = {name: f"y{k}" for k, name in enumerate(graph.outputs)}
    inputs = {name: f"x{k}" for k, name in enumerate(graph.inputs)}

    def ref(name: str) -> str:
        """A pointer to the tensor, of its C type."""
        if name in graph.consts:
            return graph.weights.add(graph.consts[name], name, graph.consts[name].dtype)
        if name in inputs:
            return inputs[name]
        if name in outputs:
            return outputs[name]
        if graph.dtype(name) == np.float32:
            return f"(ws + {offsets[name]})"
        return f"(({graph.ctype(name)} *)(ws + {offsets[name]}))"

    lines = []
    for i, node in enumerate(graph.nodes):
        graph.scratch = f"(ws + {scratch[i]})" if i in scratch else "0"
        lines.append(f"    /* {node.op_type} {node.name} */")
        lines.append(
            "    " + EMITTERS[node.op_type](graph, node, ref if node.op_type in TYPED else _floats(graph, node, ref))
        )
    for name in graph.outputs:  # an output folded to a constant (no node writes it)
        if name in graph.consts:
            lines.append(f"    memcpy({outputs[name]}, {ref(name)}, {graph.size(name)} * sizeof(*{outputs[name]}));")
    return Body(graph=graph, lines=lines, arena=arena, parked=parked)


def _check(graph: Graph) -> None:
    unsupported = sorted({n.op_type for n in graph.nodes if not _supported(n)})
    if unsupported:
        raise UnsupportedOpError(
            f"target 'static-lib' cannot take op(s) {', '.join(unsupported)}: packager's C generator does not "
            f"implement them (it does: {', '.join(sorted(SUPPORTED_OPS))})"
        )
    if not graph.inputs or not graph.outputs:
        raise UnsupportedOpError("target 'static-lib' takes models with at least one input and one output")
    for node in graph.nodes:
        if node.op_type in ("If", "Loop", "Scan"):  # left after folding: its condition is computed at run time
            EMITTERS[node.op_type](graph, node, lambda name: name)
        for name in [*node.input, *node.output]:
            if name and (name not in graph.shapes or -1 in graph.shapes[name]):
                raise UnsupportedOpError(f"static-lib: the shape of '{name}' ({node.op_type}) is not known once the "
                                         "inputs' shapes are fixed (it depends on the data)")  # fmt: skip
    _check_types(graph)


def _supported(node: Any) -> bool:
    if node.op_type in ML_EMITTERS:
        return node.domain == "ai.onnx.ml"
    return node.op_type in EMITTERS and node.domain in ("", "ai.onnx")


def _check_types(graph: Graph) -> None:
    import onnx

    for value in [*graph.model.graph.input, *graph.model.graph.output]:
        if value.name in graph.consts:
            continue
        if value.type.tensor_type.elem_type == onnx.TensorProto.STRING:
            raise UnsupportedOpError(
                f"target 'static-lib' cannot take or return '{value.name}': it holds strings (string class labels, "
                "say), and the C API passes numbers",
                hint="train with integer class labels, or build the onnx target",
            )
        c_type(graph.dtype(value.name))


def _floats(graph: Graph, node: Any, ref: Callable[[str], str]) -> Callable[[str], str]:
    """``ref`` for an emitter whose kernels take float32 only: a tensor of another type is refused."""

    def checked(name: str) -> str:
        if graph.dtype(name) != np.float32:
            raise UnsupportedOpError(f"static-lib: {node.op_type} on {graph.dtype(name).name} tensors is not "
                                     "supported (float32 only)")  # fmt: skip
        return ref(name)

    return checked


def _ml(emit: Callable[..., str]) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    def checked(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        _floats(graph, node, ref)(node.input[0])  # features are float32; labels may be int64
        return emit(graph, node, ref, attrs(node), graph.tables)

    return checked


EMITTERS.update({op: _ml(emit) for op, emit in ML_EMITTERS.items()})
TYPED.update(ML_EMITTERS)
SUPPORTED_OPS = frozenset(EMITTERS)
