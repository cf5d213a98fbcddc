"""Reductions and normalisation: the Reduce family (axes from the attribute or, from opset 13/18,
the constant second input; keepdims; noop_with_empty_axes) and LayerNormalization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import Graph, attrs
from packager.errors import UnsupportedOpError

# op -> the code of pk_reduce in kernels.c
REDUCE = {"ReduceSum": 0, "ReduceMean": 1, "ReduceMax": 2, "ReduceMin": 3, "ReduceProd": 4, "ReduceL1": 5,
          "ReduceL2": 6, "ReduceLogSum": 7, "ReduceLogSumExp": 8, "ReduceSumSquare": 9}  # fmt: skip


def reduced_axes(graph: Graph, node: Any) -> list[int] | None:
    """The axes ``node`` reduces, sorted; None when it reduces nothing (an empty list with
    noop_with_empty_axes)."""
    a = attrs(node)
    rank = len(graph.shapes[node.input[0]])
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in graph.consts:
            raise UnsupportedOpError(f"static-lib: {node.op_type} with axes computed at run time is not supported")
        axes = [int(v) for v in np.asarray(graph.consts[node.input[1]]).reshape(-1)]
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if not axes:
        return None if int(a.get("noop_with_empty_axes", 0)) else list(range(rank))
    return sorted({axis % rank for axis in axes}) if rank else []


def _output_strides(shape: tuple[int, ...], axes: list[int]) -> list[int]:
    """Per input dim, the stride of the output along it (0 along a reduced dim)."""
    strides, step = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        if d not in axes:
            strides[d] = step
            step *= shape[d]
    return strides


def _reduce(code: int) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    def emit(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        shape = graph.shapes[node.input[0]] or (1,)  # a scalar: one value reduced
        axes = reduced_axes(graph, node) if graph.shapes[node.input[0]] else [0]
        if axes is None:  # noop_with_empty_axes: the input as it is, which only the plain reductions are
            if code not in (0, 1, 2, 3, 4):
                raise UnsupportedOpError(f"static-lib: {node.op_type} with noop_with_empty_axes and no axes is "
                                         "not supported")  # fmt: skip
            axes = []
        ny = graph.size(node.output[0])
        count = int(np.prod([shape[d] for d in axes])) if axes else 1
        dims = ", ".join(str(int(v)) for v in shape)
        strides = ", ".join(str(v) for v in _output_strides(shape, axes))
        return (f"pk_reduce({code}, {ref(node.input[0])}, {ref(node.output[0])}, (double *){graph.scratch}, "
                f"{len(shape)}, (int[]){{{dims}}}, (int[]){{{strides}}}, {ny}, {count});")  # fmt: skip

    return emit


def reduce_scratch(graph: Graph, node: Any) -> int:
    """Floats of scratch a reduction needs: a double per output value."""
    return 2 * graph.size(node.output[0]) if node.op_type in REDUCE else 0


def _layernorm(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    a = attrs(node)
    shape = graph.shapes[node.input[0]]
    axis = int(a.get("axis", -1)) % len(shape)
    inner = int(np.prod(shape[axis:]))
    outer = int(np.prod(shape[:axis]))
    for name in node.input[1:]:
        if name and graph.size(name) != inner:
            raise UnsupportedOpError("static-lib: LayerNormalization with a scale or bias broadcast over the "
                                     "normalised dims is not supported")  # fmt: skip
    bias = ref(node.input[2]) if len(node.input) > 2 and node.input[2] else "0"
    eps = float(a.get("epsilon", 1e-5))
    stats = [ref(name) if name else "0" for name in [*node.output[1:3], "", ""][:2]]
    return (f"pk_layernorm({ref(node.input[0])}, {ref(node.input[1])}, {bias}, {ref(node.output[0])}, {stats[0]}, "
            f"{stats[1]}, {outer}, {inner}, {eps!r}f);")  # fmt: skip


# op -> (the start of the sum, its step with v, the result from S and the count n), in double
TYPED = {"ReduceSum": ("0", "S[j] += v", "S[j]"), "ReduceMean": ("0", "S[j] += v", "S[j] / n"),
         "ReduceMax": ("-INFINITY", "if (v > S[j]) S[j] = v", "S[j]"),
         "ReduceMin": ("INFINITY", "if (v < S[j]) S[j] = v", "S[j]"), "ReduceProd": ("1", "S[j] *= v", "S[j]"),
         "ReduceL1": ("0", "S[j] += fabs(v)", "S[j]"), "ReduceL2": ("0", "S[j] += v * v", "sqrt(S[j])"),
         "ReduceLogSum": ("0", "S[j] += v", "log(S[j])"), "ReduceLogSumExp": ("0", "S[j] += exp(v)", "log(S[j])"),
         "ReduceSumSquare": ("0", "S[j] += v * v", "S[j]")}  # fmt: skip


def _reduce_any(code: int) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    """float32 through pk_reduce; the other types (float64, integers, bool) in one loop that sums
    in double into the scratch, one value per output."""
    floats = _reduce(code)

    def emit(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        if graph.dtype(node.input[0]) == np.float32:
            return floats(graph, node, ref)
        shape = graph.shapes[node.input[0]] or (1,)
        axes = reduced_axes(graph, node) if graph.shapes[node.input[0]] else [0]
        out = node.output[0]
        t = graph.ctype(out)
        if axes is None:  # noop_with_empty_axes: the input as it is
            if node.op_type not in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"):
                raise UnsupportedOpError(f"static-lib: {node.op_type} with noop_with_empty_axes and no axes is "
                                         "not supported")  # fmt: skip
            return f"memcpy({ref(out)}, {ref(node.input[0])}, {graph.size(out) * graph.dtype(out).itemsize});"
        start, step, result = TYPED[node.op_type]
        ny = graph.size(out)
        count = int(np.prod([shape[d] for d in axes])) if axes else 1
        dims = ",".join(str(int(v)) for v in shape)
        strides = ",".join(str(v) for v in _output_strides(tuple(shape), axes))
        value = graph.load(node.input[0], "x[i]")
        final = graph.store(out, f"({graph.value_type(out)})({result})")
        if graph.dtype(out).kind == "b":
            final = f"(pk_uint8)(({result}) != 0)"
        return (f"{{ const {graph.ctype(node.input[0])} *x = {ref(node.input[0])}; {t} *y = {ref(out)}; "
                f"double *S = (double *){graph.scratch}; const double n = {count}; (void)n; "
                f"for (size_t j = 0; j < {ny}; ++j) S[j] = {start}; "
                f"for (size_t i = 0; i < {graph.size(node.input[0])}; ++i) {{ const double v = (double){value}; "
                f"const size_t j = pk_at(i, {len(shape)}, (const int[]){{{dims}}}, (const long[]){{{strides}}}); "
                f"{step}; }} for (size_t j = 0; j < {ny}; ++j) y[j] = {final}; }}")  # fmt: skip

    return emit


EMITTERS: dict[str, Callable[[Graph, Any, Callable[[str], str]], str]] = {
    **{op: _reduce_any(code) for op, code in REDUCE.items()}, "LayerNormalization": _layernorm,
}  # fmt: skip
