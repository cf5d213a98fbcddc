"""Ops on tensors of any element type: integers, bool and float64 as well as float32.

Elementwise ops (arithmetic, comparison, logic, bitwise, Where, Cast, and the math of float64)
become one loop with an expression per element; an operand of the output's shape is read at
the same index, a broadcast one through ``pk_at``. float32 arithmetic keeps its own kernels
(ops.py); these loops take what those do not: other types, mixed types, more than two operands.
Gather with indices computed at run time, GatherElements, ArgMax/ArgMin and Shape/Size are here
too. An index out of range reads zeros instead of memory outside the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import FLOAT8, Graph, attrs
from packager.errors import UnsupportedOpError

Emit = Callable[[Graph, Any, Callable[[str], str]], str]
Ref = Callable[[str], str]

# op -> the expression of one element ({0}, {1}, ... the operands, as values of the output's
# type for arithmetic); variadic ops fold their operands left to right.
ARITHMETIC = {"Add": "{0} + {1}", "Sub": "{0} - {1}", "Mul": "{0} * {1}", "Sum": "{0} + {1}",
              "Max": "({0} >= {1} || {0} != {0} ? {0} : {1})",
              "Min": "({0} <= {1} || {0} != {0} ? {0} : {1})"}  # fmt: skip
COMPARE = {"Equal": "{0} == {1}", "Less": "{0} < {1}", "Greater": "{0} > {1}", "LessOrEqual": "{0} <= {1}",
           "GreaterOrEqual": "{0} >= {1}"}  # fmt: skip
LOGIC = {"And": "({0} && {1})", "Or": "({0} || {1})", "Xor": "(!{0} != !{1})", "Not": "!{0}"}
BITWISE = {"BitwiseAnd": "{0} & {1}", "BitwiseOr": "{0} | {1}", "BitwiseXor": "{0} ^ {1}", "BitwiseNot": "~{0}"}
# float64 math (and float32 for the ops without a kernel): C's double functions
DOUBLE_MATH = {"Exp": "exp({0})", "Log": "log({0})", "Sqrt": "sqrt({0})", "Sin": "sin({0})", "Cos": "cos({0})",
               "Tan": "tan({0})", "Asin": "asin({0})", "Acos": "acos({0})", "Atan": "atan({0})", "Sinh": "sinh({0})",
               "Cosh": "cosh({0})", "Asinh": "asinh({0})", "Acosh": "acosh({0})", "Atanh": "atanh({0})",
               "Erf": "erf({0})", "Ceil": "ceil({0})", "Floor": "floor({0})", "Round": "nearbyint({0})",
               "Reciprocal": "1.0 / {0}", "Sigmoid": "1.0 / (1.0 + exp(-{0}))", "Tanh": "tanh({0})",
               "Softplus": "({0} > 0 ? {0} + log1p(exp(-{0})) : log1p(exp({0})))",
               "Softsign": "{0} / (1.0 + fabs({0}))"}  # fmt: skip
SIGNED = {"Neg": "-{0}", "Abs": "({0} < 0 ? -{0} : {0})", "Sign": "(({0} > 0) - ({0} < 0))",
          "Relu": "({0} > 0 ? {0} : 0)"}  # fmt: skip


def broadcast_strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Per output dim, the operand's stride (0 along a dim it broadcasts)."""
    padded = [1] * (len(out) - len(shape)) + list(shape)
    strides, step = [0] * len(out), 1
    for d in range(len(out) - 1, -1, -1):
        strides[d] = 0 if padded[d] == 1 and out[d] != 1 else step
        step *= padded[d]
    return strides or [1]


def elementwise(graph: Graph, node: Any, ref: Ref, expr: str, names: list[str] | None = None,
                out: str | None = None, strides: dict[str, list[int]] | None = None,
                saturate: bool = True) -> str:  # fmt: skip
    """One loop writing ``out`` (the node's first output): element i is ``expr`` of the operands
    ``names`` (the node's inputs), broadcast to the output's shape (or read with the per-dim
    ``strides`` given for an operand: a per-axis parameter)."""
    names = names if names is not None else [n for n in node.input if n]
    out = out or node.output[0]
    shape = tuple(graph.shapes[out])
    total = graph.size(out)
    decls, values = [], []
    dims = ",".join(str(int(d)) for d in shape) or "1"
    for j, name in enumerate(names):
        decls.append(f"const {graph.ctype(name)} *a{j} = {ref(name)};")
        operand = tuple(graph.shapes[name])
        if strides and name in strides:
            steps = ",".join(str(s) for s in strides[name])
            value = f"a{j}[pk_at(i, {max(len(shape), 1)}, (const int[]){{{dims}}}, (const long[]){{{steps}}})]"
        elif operand == shape:
            value = f"a{j}[i]"
        elif graph.size(name) == 1:
            value = f"a{j}[0]"
        else:
            steps = ",".join(str(s) for s in broadcast_strides(operand, shape))
            value = f"a{j}[pk_at(i, {max(len(shape), 1)}, (const int[]){{{dims}}}, (const long[]){{{steps}}})]"
        values.append(graph.load(name, value))
    body = f"({graph.value_type(out)})({expr.format(*values)})"
    store = graph.store(out, body, saturate)
    return (f"{{ {' '.join(decls)} {graph.ctype(out)} *y = {ref(out)}; "
            f"for (size_t i = 0; i < {total}; ++i) y[i] = {store}; }}")  # fmt: skip


def _fold(expr: str, count: int) -> str:
    """A binary expression applied left to right over ``count`` operands: {0}, {1}, ... ."""
    found = "{0}"
    for k in range(1, count):
        found = expr.replace("{0}", "\x00").replace("{1}", "{" + str(k) + "}").replace("\x00", f"({found})")
    return found


def _kind(graph: Graph, name: str) -> str:
    return graph.dtype(name).kind  # f, i, u, b


def _float_kernel(graph: Graph, node: Any, names: list[str]) -> Emit | None:
    """The float32 kernel's emitter of a two-operand op whose tensors are all float32, else None."""
    from packager.codegen.ops import FLOAT_EMITTERS

    tensors = [*names, node.output[0]]
    if len(names) == 2 and all(graph.dtype(n) == np.float32 for n in tensors) and node.op_type in FLOAT_EMITTERS:
        return FLOAT_EMITTERS[node.op_type]
    return None


def _arith(graph: Graph, node: Any, ref: Ref) -> str:
    names = [n for n in node.input if n]
    out = node.output[0]
    found = _float_kernel(graph, node, names)
    if found is not None:
        return found(graph, node, ref)
    if _kind(graph, out) == "b":
        raise UnsupportedOpError(f"static-lib: {node.op_type} on bool tensors is invalid")
    if node.op_type == "Mean":
        return elementwise(graph, node, ref, f"({_fold('{0} + {1}', len(names))}) / {len(names)}", names=names)
    t = graph.value_type(out)
    typed = _fold(ARITHMETIC[node.op_type], len(names)).format(*[f"({t}){{{k}}}" for k in range(len(names))])
    return elementwise(graph, node, ref, typed, names=names)


def _div(graph: Graph, node: Any, ref: Ref) -> str:
    found = _float_kernel(graph, node, [n for n in node.input if n])
    if found is not None:
        return found(graph, node, ref)
    if _kind(graph, node.output[0]) == "f":
        return elementwise(graph, node, ref, "{0} / {1}")
    return elementwise(graph, node, ref, "({1} == 0 ? 0 : {0} / {1})")  # no trap on a zero divisor


def _mod(graph: Graph, node: Any, ref: Ref) -> str:
    fmod = int(attrs(node).get("fmod", 0))
    kind = _kind(graph, node.output[0])
    if kind == "f":
        if not fmod:
            raise UnsupportedOpError("static-lib: Mod of floats needs fmod=1 (ONNX)")
        return elementwise(graph, node, ref, "fmod({0}, {1})")
    if fmod or kind == "u":
        return elementwise(graph, node, ref, "({1} == 0 ? 0 : {0} % {1})")
    # the sign of the divisor, as Python's %
    return elementwise(graph, node, ref, "({1} == 0 ? 0 : ({0} % {1} != 0 && (({0} % {1} < 0) != ({1} < 0)) "
                                         "? {0} % {1} + {1} : {0} % {1}))")  # fmt: skip


def _pow(graph: Graph, node: Any, ref: Ref) -> str:
    if graph.dtype(node.output[0]) == np.float32 and graph.dtype(node.input[1]) == np.float32:
        from packager.codegen.ops import _binary

        return _binary(5)(graph, node, ref)
    return elementwise(graph, node, ref, "pow((double){0}, (double){1})")


def _compare(graph: Graph, node: Any, ref: Ref) -> str:
    return elementwise(graph, node, ref, COMPARE[node.op_type])


def _logic(graph: Graph, node: Any, ref: Ref) -> str:
    return elementwise(graph, node, ref, LOGIC[node.op_type])


def _bitwise(graph: Graph, node: Any, ref: Ref) -> str:
    if _kind(graph, node.output[0]) not in "iu":
        raise UnsupportedOpError(f"static-lib: {node.op_type} on {graph.dtype(node.output[0]).name} is invalid")
    return elementwise(graph, node, ref, BITWISE[node.op_type])


def _bitshift(graph: Graph, node: Any, ref: Ref) -> str:
    direction = attrs(node).get("direction", b"")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    bits = graph.dtype(node.output[0]).itemsize * 8
    op = "<<" if direction == "LEFT" else ">>"
    return elementwise(graph, node, ref, f"({{1}} >= {bits} ? 0 : {{0}} {op} {{1}})")


def _where(graph: Graph, node: Any, ref: Ref) -> str:
    return elementwise(graph, node, ref, "{0} ? {1} : {2}")


def cast_expr(source: np.dtype, target: np.dtype) -> str:
    """The C expression converting {0} of ``source`` (read as its value type) to ``target``."""
    if target.kind == "b":
        return "{0} != 0"
    if (source.kind == "f" or source.name in FLOAT8) and target.kind in "iu" and target.itemsize < 8:
        return "(int64_t){0}"  # through int64: C leaves a float outside the target's range undefined
    return "{0}"


def _cast(graph: Graph, node: Any, ref: Ref) -> str:
    source, target = graph.dtype(node.input[0]), graph.dtype(node.output[0])
    saturate = bool(int(attrs(node).get("saturate", 1)))
    if source == target:
        return f"memcpy({ref(node.output[0])}, {ref(node.input[0])}, {graph.size(node.output[0]) * target.itemsize});"
    return elementwise(graph, node, ref, cast_expr(source, target), names=[node.input[0]], saturate=saturate)


def _unary_any(graph: Graph, node: Any, ref: Ref) -> str:
    """Unary math on a type the float32 kernels do not take, or the float32 kernel when they do."""
    dtype = graph.dtype(node.input[0])
    if dtype == np.float32:
        from packager.codegen.ops import FLOAT_EMITTERS

        return FLOAT_EMITTERS[node.op_type](graph, node, ref)
    if node.op_type in SIGNED:
        if dtype.kind == "u" and node.op_type in ("Abs", "Relu"):
            return elementwise(graph, node, ref, "{0}", names=[node.input[0]])
        if dtype.kind == "b":
            raise UnsupportedOpError(f"static-lib: {node.op_type} on bool tensors is invalid")
        return elementwise(graph, node, ref, SIGNED[node.op_type], names=[node.input[0]])
    if node.op_type in DOUBLE_MATH and dtype.kind == "f":
        return elementwise(graph, node, ref, DOUBLE_MATH[node.op_type], names=[node.input[0]])
    if node.op_type in ("Ceil", "Floor", "Round") and dtype.kind in "iu":
        return elementwise(graph, node, ref, "{0}", names=[node.input[0]])
    raise UnsupportedOpError(f"static-lib: {node.op_type} on {dtype.name} tensors is not supported")


def _is(graph: Graph, node: Any, ref: Ref) -> str:
    if node.op_type == "IsNaN":
        return elementwise(graph, node, ref, "{0} != {0}")
    a = attrs(node)
    positive, negative = int(a.get("detect_positive", 1)), int(a.get("detect_negative", 1))
    tests = (["{0} == INFINITY"] if positive else []) + (["{0} == -INFINITY"] if negative else [])
    return elementwise(graph, node, ref, " || ".join(tests) or "0")


def _clip(graph: Graph, node: Any, ref: Ref) -> str:
    dtype = graph.dtype(node.input[0])
    if dtype == np.float32 and all(n in graph.consts for n in node.input[1:] if n):
        from packager.codegen.ops import FLOAT_EMITTERS

        return FLOAT_EMITTERS["Clip"](graph, node, ref)
    if graph.opset < 11:  # bounds as attributes
        a = attrs(node)
        lo, hi = float(a.get("min", -3.4e38)), float(a.get("max", 3.4e38))
        return elementwise(graph, node, ref, f"({{0}} < {lo!r} ? {lo!r} : {{0}} > {hi!r} ? {hi!r} : {{0}})",
                           names=[node.input[0]])  # fmt: skip
    expr, names = "{0}", [node.input[0]]
    for k, op in ((1, "<"), (2, ">")):  # the lower bound first: with min > max every value is max
        if len(node.input) > k and node.input[k]:
            names.append(node.input[k])
            j = len(names) - 1
            expr = f"(({expr}) {op} {{{j}}} ? {{{j}}} : ({expr}))"
    return elementwise(graph, node, ref, expr, names=names)


def gather(graph: Graph, node: Any, ref: Ref) -> str:
    """Gather with indices computed at run time (token ids into an embedding): whole rows copied."""
    x = list(graph.shapes[node.input[0]])
    axis = int(attrs(node).get("axis", 0)) % len(x)
    n = x[axis]
    outer, inner = int(np.prod(x[:axis])), int(np.prod(x[axis + 1 :]))
    count = graph.size(node.input[1])
    size = graph.dtype(node.output[0]).itemsize
    return (f"{{ const {graph.ctype(node.input[1])} *ix = {ref(node.input[1])}; const char *x = (const char *)"
            f"{ref(node.input[0])}; char *y = (char *){ref(node.output[0])}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t j = 0; j < {count}; ++j) {{ "
            f"long long k = (long long)ix[j]; if (k < 0) k += {n}; "
            f"char *to = y + (o * {count} + j) * {inner * size}; "
            f"if (k < 0 || k >= {n}) memset(to, 0, {inner * size}); "
            f"else memcpy(to, x + (o * {n} + (size_t)k) * {inner * size}, {inner * size}); }} }}")  # fmt: skip


def _gather_elements(graph: Graph, node: Any, ref: Ref) -> str:
    x, idx = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    axis = int(attrs(node).get("axis", 0)) % len(x)
    xstrides = [int(np.prod(x[d + 1 :])) for d in range(len(x))]
    skip = [0 if d == axis else s for d, s in enumerate(xstrides)]
    dims = ",".join(map(str, idx))
    return (f"{{ const {graph.ctype(node.input[1])} *ix = {ref(node.input[1])}; const {graph.ctype(node.input[0])} "
            f"*x = {ref(node.input[0])}; {graph.ctype(node.output[0])} *y = {ref(node.output[0])}; "
            f"for (size_t i = 0; i < {graph.size(node.output[0])}; ++i) {{ long long k = (long long)ix[i]; "
            f"if (k < 0) k += {x[axis]}; y[i] = k < 0 || k >= {x[axis]} ? 0 : x[pk_at(i, {len(idx)}, "
            f"(const int[]){{{dims}}}, (const long[]){{{','.join(map(str, skip))}}}) "
            f"+ (size_t)k * {xstrides[axis]}]; }} }}")  # fmt: skip


def _arg(graph: Graph, node: Any, ref: Ref) -> str:
    """ArgMax/ArgMin: the first (or with select_last_index the last) index of the extreme."""
    a = attrs(node)
    x = list(graph.shapes[node.input[0]]) or [1]
    axis = int(a.get("axis", 0)) % len(x)
    outer, n, inner = int(np.prod(x[:axis])), x[axis], int(np.prod(x[axis + 1 :]))
    better = ">" if node.op_type == "ArgMax" else "<"
    if int(a.get("select_last_index", 0)):
        better += "="
    return (f"{{ const {graph.ctype(node.input[0])} *x = {ref(node.input[0])}; pk_int64 *y = {ref(node.output[0])}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t j = 0; j < {inner}; ++j) {{ "
            f"const size_t at = o * {n * inner} + j; int64_t best = 0; "
            f"for (int64_t k = 1; k < {n}; ++k) "
            f"if (x[at + (size_t)k * {inner}] {better} x[at + (size_t)best * {inner}]) "
            f"best = k; y[o * {inner} + j] = best; }} }}")  # fmt: skip


def _constant(graph: Graph, node: Any, ref: Ref, value: np.ndarray) -> str:
    out = node.output[0]
    weights = graph.weights.add(value, out, graph.dtype(out))
    return f"memcpy({ref(out)}, {weights}, {graph.size(out) * graph.dtype(out).itemsize});"


def _shape(graph: Graph, node: Any, ref: Ref) -> str:
    dims = list(graph.shapes[node.input[0]])
    if node.op_type == "Size":
        return _constant(graph, node, ref, np.asarray(int(np.prod(dims)) if dims else 1, np.int64))
    a = attrs(node)
    start, end = int(a.get("start", 0)), a.get("end")
    return _constant(graph, node, ref, np.asarray(dims[start : None if end is None else int(end)], np.int64))


def _bitcast(graph: Graph, node: Any, ref: Ref) -> str:
    """The same bits seen as another type of the same width."""
    out = node.output[0]
    if graph.dtype(out).itemsize != graph.dtype(node.input[0]).itemsize:
        raise UnsupportedOpError("static-lib: BitCast between types of different widths is invalid")
    return f"memcpy({ref(out)}, {ref(node.input[0])}, {graph.size(out) * graph.dtype(out).itemsize});"


def _shaped_by_values(graph: Graph, node: Any, ref: Ref) -> str:
    """Range and ConstantOfShape of constants are folded before this; of inputs computed at run
    time their output's shape would depend on those values."""
    raise UnsupportedOpError(f"static-lib: {node.op_type} with inputs computed at run time is not supported (the "
                             "shape of its output depends on their values)")  # fmt: skip


def _control(graph: Graph, node: Any, ref: Ref) -> str:
    """An If whose condition is a constant is inlined before this (its branch's nodes); the rest of
    the control flow is refused with the reason."""
    if node.op_type == "Scan":
        raise UnsupportedOpError("static-lib: Scan is not supported (its body is not unrolled over the sequence)")
    what = {"If": "a condition", "Loop": "a trip count or condition"}[node.op_type]
    raise UnsupportedOpError(f"static-lib: {node.op_type} with {what} computed at run time is not supported (a "
                             "library runs one fixed sequence of kernels)")  # fmt: skip


def _unary_ops() -> dict[str, Emit]:
    return dict.fromkeys([*DOUBLE_MATH, *SIGNED], _unary_any)


EMITTERS: dict[str, Emit] = {
    **dict.fromkeys(["Sum", "Mean"], _arith), **dict.fromkeys(COMPARE, _compare), **dict.fromkeys(LOGIC, _logic),
    **dict.fromkeys(BITWISE, _bitwise), "BitShift": _bitshift, "Where": _where, "Cast": _cast, "CastLike": _cast,
    "Mod": _mod, "IsNaN": _is, "IsInf": _is, "GatherElements": _gather_elements, "ArgMax": _arg, "ArgMin": _arg,
    "Shape": _shape, "Size": _shape, "BitCast": _bitcast, "Range": _shaped_by_values,
    "ConstantOfShape": _shaped_by_values, "If": _control, "Loop": _control, "Scan": _control,
}  # fmt: skip
# Ops that have float32 kernels: these emitters take the other types
OVERRIDES: dict[str, Emit] = {**dict.fromkeys(["Add", "Sub", "Mul", "Max", "Min"], _arith), "Div": _div,
                              "Pow": _pow, "Clip": _clip, **_unary_ops()}  # fmt: skip
