"""Ops that move values without computing on them, where every parameter is a constant once the
shapes are fixed: Slice, Pad (constant, edge, reflect, wrap), Expand, Tile, Gather with constant
indices, Split. Each is one call of ``pk_remap``: per output dim a small table of the input index
it reads (or -1: the padding value), so no table grows with the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen import typed
from packager.codegen.graph import Graph, attrs, c_float, c_value, kernel
from packager.errors import UnsupportedOpError

Emit = Callable[[Graph, Any, Callable[[str], str]], str]


def _const(graph: Graph, node: Any, index: int, what: str) -> np.ndarray | None:
    """Input ``index`` of ``node`` as a constant array; None when the input is absent; refused
    when it is computed at run time."""
    if len(node.input) <= index or not node.input[index]:
        return None
    name = node.input[index]
    if name not in graph.consts:
        raise UnsupportedOpError(f"static-lib: {node.op_type} with its {what} computed at run time is not supported")
    return np.asarray(graph.consts[name])


def _remap(graph: Graph, node: Any, ref: Callable[[str], str], out: str, maps: list[list[int]],
           view: list[int], fill: float = 0.0) -> str:  # fmt: skip
    """The pk_remap call writing ``out`` from the node's first input seen with dims ``view``."""
    if int(np.prod([len(m) for m in maps])) != graph.size(out):
        raise UnsupportedOpError(f"static-lib: {node.op_type} gives a shape its output does not have")
    if not maps:  # a scalar: one value
        maps, view = [[0]], [1]
    strides, step = [0] * len(view), 1
    for d in range(len(view) - 1, -1, -1):
        strides[d] = step
        step *= view[d]
    offsets: list[int] = []
    flat: list[int] = []
    for m in maps:
        offsets.append(len(flat))
        flat.extend(m)
    shape = ", ".join(str(len(m)) for m in maps)
    table = ", ".join(str(v) for v in flat) or "0"
    dtype = graph.dtype(out)
    value = c_float(fill) if dtype == np.float32 else c_value(fill, dtype)
    return (f"{kernel('pk_remap', dtype)}({ref(node.input[0])}, {ref(out)}, {len(maps)}, (const int[]){{{shape}}}, "
            f"(const int[]){{{table}}}, (const int[]){{{', '.join(map(str, offsets))}}}, "
            f"(const long[]){{{', '.join(map(str, strides))}}}, {value});")  # fmt: skip


def _identity(n: int) -> list[int]:
    return list(range(n))


def _slice(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = list(graph.shapes[node.input[0]])
    a = attrs(node)
    if graph.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes, steps = list(a.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts = [int(v) for v in _const(graph, node, 1, "starts").reshape(-1)]  # type: ignore[union-attr]
        ends = [int(v) for v in _const(graph, node, 2, "ends").reshape(-1)]  # type: ignore[union-attr]
        found_axes, found_steps = _const(graph, node, 3, "axes"), _const(graph, node, 4, "steps")
        axes = [int(v) for v in found_axes.reshape(-1)] if found_axes is not None else list(range(len(starts)))
        steps = [int(v) for v in found_steps.reshape(-1)] if found_steps is not None else [1] * len(starts)
    maps = [_identity(n) for n in x]
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        maps[axis % len(x)] = _slice_map(x[axis % len(x)], int(start), int(end), int(step))
    return _remap(graph, node, ref, node.output[0], maps, x)


def _slice_map(n: int, start: int, end: int, step: int) -> list[int]:
    """The input indices one axis of Slice reads, by ONNX's clamping rules."""
    if step == 0:
        raise UnsupportedOpError("static-lib: Slice with a step of 0 is invalid")
    start, end = start + n if start < 0 else start, end + n if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), n), min(max(end, 0), n)
    else:
        start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
    return list(range(start, end, step))


def _pad(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = list(graph.shapes[node.input[0]])
    a = attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if graph.opset < 11:
        pads, fill, axes = list(a["pads"]), float(a.get("value", 0.0)), list(range(len(x)))
    else:
        pads = [int(v) for v in _const(graph, node, 1, "pads").reshape(-1)]  # type: ignore[union-attr]
        value, found_axes = _const(graph, node, 2, "constant value"), _const(graph, node, 3, "axes")
        fill = float(value.reshape(-1)[0]) if value is not None and value.size else 0.0
        axes = [int(v) % len(x) for v in found_axes.reshape(-1)] if found_axes is not None else list(range(len(x)))
    maps = [_identity(n) for n in x]
    for k, axis in enumerate(axes):
        maps[axis] = _pad_map(x[axis], pads[k], pads[k + len(axes)], mode, node)
    return _remap(graph, node, ref, node.output[0], maps, x, fill)


def _pad_map(n: int, before: int, after: int, mode: str, node: Any) -> list[int]:
    found = []
    for i in range(n + before + after):
        j = i - before
        if 0 <= j < n:
            found.append(j)
        elif mode == "constant":
            found.append(-1)
        elif mode == "edge":
            found.append(min(max(j, 0), n - 1))
        elif mode == "wrap":
            found.append(j % n)
        elif mode == "reflect":
            period = 2 * (n - 1)
            k = j % period if period else 0
            found.append(period - k if k >= n else k)
        else:
            raise UnsupportedOpError(f"static-lib: Pad mode {mode!r} is not supported")
    return found


def _expand(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    out = list(graph.shapes[node.output[0]])
    x = list(graph.shapes[node.input[0]])
    view = [1] * (len(out) - len(x)) + x
    maps = [[0] * o if v == 1 and o != 1 else _identity(o) for v, o in zip(view, out, strict=True)]
    return _remap(graph, node, ref, node.output[0], maps, view)


def _tile(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = list(graph.shapes[node.input[0]])
    repeats = [int(v) for v in _const(graph, node, 1, "repeats").reshape(-1)]  # type: ignore[union-attr]
    maps = [[i % n for i in range(n * r)] for n, r in zip(x, repeats, strict=True)]
    return _remap(graph, node, ref, node.output[0], maps, x)


def _gather(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = list(graph.shapes[node.input[0]])
    if node.input[1] not in graph.consts:  # token ids, say: rows copied at run time
        return typed.gather(graph, node, ref)
    indices = _const(graph, node, 1, "indices")
    assert indices is not None
    axis = int(attrs(node).get("axis", 0)) % len(x)
    n = x[axis]
    flat = [int(i) + n if int(i) < 0 else int(i) for i in indices.reshape(-1)]
    if any(not 0 <= i < n for i in flat):
        raise UnsupportedOpError(f"static-lib: Gather indices out of range for an axis of {n}")
    maps = [_identity(d) for d in x]
    maps[axis] = flat
    return _remap(graph, node, ref, node.output[0], maps, x)


def _split(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = list(graph.shapes[node.input[0]])
    axis = int(attrs(node).get("axis", 0)) % len(x)
    outputs = [name for name in node.output]
    sizes = [graph.shapes[name][axis] if name else 0 for name in outputs]
    if sum(sizes) != x[axis] or any(not name for name in outputs):
        raise UnsupportedOpError("static-lib: Split whose parts do not cover the axis is not supported")
    calls, offset = [], 0
    for name, size in zip(outputs, sizes, strict=True):
        maps = [_identity(d) for d in x]
        maps[axis] = list(range(offset, offset + size))
        offset += size
        calls.append(_remap(graph, node, ref, name, maps, x))
    return "\n    ".join(calls)


EMITTERS: dict[str, Emit] = {"Slice": _slice, "Pad": _pad, "Expand": _expand, "Tile": _tile, "Gather": _gather,
                             "Split": _split}  # fmt: skip
