"""Ops that pick, place or rank values, on any element type: Trilu, CumSum/CumProd, Hardmax,
LpNormalization, TopK, ScatterElements, ScatterND, GatherND, OneHot, and QuantizeLinear/
DequantizeLinear (8- and 16-bit integers, per tensor or per axis). Each is one loop nest; an
index out of range is skipped (scatter) or reads zeros (gather) rather than touching memory
outside the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import FLOAT8, HALF, PACKED, Graph, attrs, kernel, text
from packager.codegen.index import _const
from packager.codegen.typed import broadcast_strides, elementwise
from packager.errors import UnsupportedOpError

Ref = Callable[[str], str]


def _const_int(graph: Graph, node: Any, index: int, what: str, default: int) -> int:
    found = _const(graph, node, index, what)
    return default if found is None else int(found.reshape(-1)[0])


def _split(shape: list[int], axis: int) -> tuple[int, int, int]:
    """(outer, the axis' length, inner) of a shape around ``axis``."""
    return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1 :]))


def _check_plain(graph: Graph, node: Any, name: str) -> None:
    if graph.dtype(name).name == HALF:
        raise UnsupportedOpError(f"static-lib: {node.op_type} on float16 tensors is not supported")


def _trilu(graph: Graph, node: Any, ref: Ref) -> str:
    x = list(graph.shapes[node.input[0]])
    upper = int(attrs(node).get("upper", 1))
    k = _const_int(graph, node, 1, "diagonal k", 0)
    rows, cols = x[-2], x[-1]
    keep = f"(long)c - (long)r {'>=' if upper else '<='} {k}"
    t = graph.ctype(node.output[0])
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t i = 0; i < {graph.size(node.output[0])}; ++i) {{ const size_t c = i % {cols}, "
            f"r = (i / {cols}) % {rows}; y[i] = {keep} ? x[i] : 0; }} }}")  # fmt: skip


def _cumulative(graph: Graph, node: Any, ref: Ref) -> str:
    _check_plain(graph, node, node.input[0])
    x = list(graph.shapes[node.input[0]])
    a = attrs(node)
    axis = _const_int(graph, node, 1, "axis", 0) % len(x)
    outer, n, inner = _split(x, axis)
    t = graph.ctype(node.output[0])
    op, start = ("+", "0") if node.op_type == "CumSum" else ("*", "1")
    order = f"(size_t)({n - 1} - j)" if int(a.get("reverse", 0)) else "j"
    step = (f"y[at] = acc; acc = acc {op} x[at];" if int(a.get("exclusive", 0))
            else f"acc = acc {op} x[at]; y[at] = acc;")  # fmt: skip
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t q = 0; q < {inner}; ++q) {{ {t} acc = {start}; "
            f"for (size_t j = 0; j < {n}; ++j) {{ const size_t at = (o * {n} + {order}) * {inner} + q; {step} "
            f"}} }} }}")  # fmt: skip


def _hardmax(graph: Graph, node: Any, ref: Ref) -> str:
    _check_plain(graph, node, node.input[0])
    x = list(graph.shapes[node.input[0]])
    axis = int(attrs(node).get("axis", -1 if graph.opset >= 13 else 1)) % len(x)
    if graph.opset < 13:  # before 13 the axis flattens: [outer, everything after]
        outer, n, inner = int(np.prod(x[:axis])), int(np.prod(x[axis:])), 1
    else:
        outer, n, inner = _split(x, axis)
    t = graph.ctype(node.output[0])
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t q = 0; q < {inner}; ++q) {{ size_t best = 0; "
            f"for (size_t j = 0; j < {n}; ++j) {{ const size_t at = (o * {n} + j) * {inner} + q; y[at] = 0; "
            f"if (x[at] > x[(o * {n} + best) * {inner} + q]) best = j; }} y[(o * {n} + best) * {inner} + q] = "
            f"1; }} }}")  # fmt: skip


def _lp_normalization(graph: Graph, node: Any, ref: Ref) -> str:
    x = list(graph.shapes[node.input[0]])
    a = attrs(node)
    axis, p = int(a.get("axis", -1)) % len(x), int(a.get("p", 2))
    if p not in (1, 2) or graph.dtype(node.input[0]).kind != "f":
        raise UnsupportedOpError("static-lib: LpNormalization takes p = 1 or 2 on floats")
    _check_plain(graph, node, node.input[0])
    outer, n, inner = _split(x, axis)
    t = graph.ctype(node.output[0])
    term = "fabs((double)v)" if p == 1 else "(double)v * v"
    norm = "sum" if p == 1 else "sqrt(sum)"
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t q = 0; q < {inner}; ++q) {{ double sum = 0; "
            f"for (size_t j = 0; j < {n}; ++j) {{ const {t} v = x[(o * {n} + j) * {inner} + q]; sum += {term}; }} "
            f"const double norm = {norm}; for (size_t j = 0; j < {n}; ++j) {{ const size_t at = (o * {n} + j) * "
            f"{inner} + q; "
            f"y[at] = ({t})(norm == 0 ? 0 : x[at] / norm); }} }} }}")  # fmt: skip


def _topk(graph: Graph, node: Any, ref: Ref) -> str:
    """The k first in (value, then index) order: each pick is the first element after the last
    pick in that order, so equal values come out by index and no scratch is needed."""
    _check_plain(graph, node, node.input[0])
    x = list(graph.shapes[node.input[0]])
    a = attrs(node)
    axis = int(a.get("axis", -1)) % len(x)
    k = _const_int(graph, node, 1, "k", 0) if graph.opset >= 10 else int(a["k"])
    if not int(a.get("sorted", 1)):
        raise UnsupportedOpError("static-lib: TopK with sorted=0 is not supported")
    outer, n, inner = _split(x, axis)
    better = ">" if int(a.get("largest", 1)) else "<"
    t = graph.ctype(node.input[0])
    values = ref(node.output[0]) if node.output[0] else "0"
    indices = ref(node.output[1]) if len(node.output) > 1 and node.output[1] else "0"
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *vals = {values}; pk_int64 *idx = {indices}; "
            f"for (size_t o = 0; o < {outer}; ++o) for (size_t q = 0; q < {inner}; ++q) {{ {t} pv = 0; long pi = -1; "
            f"for (size_t r = 0; r < {k}; ++r) {{ long found = -1; {t} fv = 0; "
            f"for (size_t j = 0; j < {n}; ++j) {{ const {t} v = x[(o * {n} + j) * {inner} + q]; "
            f"if (pi >= 0 && !(pv {better} v || (pv == v && pi < (long)j))) continue; "
            f"if (found < 0 || v {better} fv || (v == fv && (long)j < found)) {{ found = (long)j; fv = v; }} }} "
            f"pv = fv; pi = found; const size_t at = (o * {k} + r) * {inner} + q; "
            f"if (vals) vals[at] = fv; if (idx) idx[at] = found; }} }} }}")  # fmt: skip


def _scatter_elements(graph: Graph, node: Any, ref: Ref) -> str:
    data, idx = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    a = attrs(node)
    axis = int(a.get("axis", 0)) % len(data)
    strides = [int(np.prod(data[d + 1 :])) for d in range(len(data))]
    skip = [0 if d == axis else s for d, s in enumerate(strides)]
    t = graph.ctype(node.output[0])
    combine = _reduction(a, graph, node)
    dims = ",".join(map(str, idx)) or "1"
    return (f"{{ const {t} *u = {ref(node.input[2])}; const {graph.ctype(node.input[1])} *ix = {ref(node.input[1])}; "
            f"{t} *y = {ref(node.output[0])}; memcpy(y, {ref(node.input[0])}, "
            f"{graph.size(node.output[0]) * graph.dtype(node.output[0]).itemsize}); "
            f"for (size_t i = 0; i < {graph.size(node.input[1])}; ++i) {{ long long k = (long long)ix[i]; "
            f"if (k < 0) k += {data[axis]}; if (k < 0 || k >= {data[axis]}) continue; "
            f"const size_t at = pk_at(i, {max(len(idx), 1)}, (const int[]){{{dims}}}, (const "
            f"long[]){{{','.join(map(str, skip)) or '0'}}}) "
            f"+ (size_t)k * {strides[axis]}; {combine} }} }}")  # fmt: skip


def _reduction(a: dict[str, Any], graph: Graph, node: Any) -> str:
    """The statement folding update u[i] into y[at] by the node's reduction."""
    found = a.get("reduction", b"none")
    found = found.decode() if isinstance(found, bytes) else str(found)
    _check_plain(graph, node, node.output[0])
    return {"none": "y[at] = u[i];", "add": "y[at] += u[i];", "mul": "y[at] *= u[i];",
            "max": "if (u[i] > y[at]) y[at] = u[i];", "min": "if (u[i] < y[at]) y[at] = u[i];"}[found]  # fmt: skip


def _scatter_nd(graph: Graph, node: Any, ref: Ref) -> str:
    data, idx = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    depth = idx[-1]
    slice_size = int(np.prod(data[depth:]))
    tuples = int(np.prod(idx[:-1]))
    strides = [int(np.prod(data[d + 1 :])) for d in range(depth)]
    t = graph.ctype(node.output[0])
    combine = _reduction(attrs(node), graph, node).replace("u[i]", "u[n * " + str(slice_size) + " + e]").replace(
        "y[at]", "y[at + e]")  # fmt: skip
    return (f"{{ const {t} *u = {ref(node.input[2])}; const {graph.ctype(node.input[1])} *ix = {ref(node.input[1])}; "
            f"{t} *y = {ref(node.output[0])}; static const long dims[] = {{{','.join(map(str, data[:depth]))}}}, "
            f"st[] = {{{','.join(map(str, strides))}}}; memcpy(y, {ref(node.input[0])}, "
            f"{graph.size(node.output[0]) * graph.dtype(node.output[0]).itemsize}); "
            f"for (size_t n = 0; n < {tuples}; ++n) {{ size_t at = 0; int ok = 1; for (int d = 0; d < {depth}; ++d) {{ "
            f"long long k = (long long)ix[n * {depth} + d]; if (k < 0) k += dims[d]; if (k < 0 || k >= dims[d]) "
            f"ok = 0; "
            f"else at += (size_t)k * st[d]; }} if (!ok) continue; for (size_t e = 0; e < {slice_size}; ++e) {{ "
            f"{combine} }} }} }}")  # fmt: skip


def _gather_nd(graph: Graph, node: Any, ref: Ref) -> str:
    if int(attrs(node).get("batch_dims", 0)):
        raise UnsupportedOpError("static-lib: GatherND with batch_dims is not supported")
    data, idx = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    depth = idx[-1]
    slice_size = int(np.prod(data[depth:]))
    tuples = int(np.prod(idx[:-1]))
    strides = [int(np.prod(data[d + 1 :])) for d in range(depth)]
    size = graph.dtype(node.output[0]).itemsize
    return (f"{{ const char *x = (const char *){ref(node.input[0])}; const {graph.ctype(node.input[1])} *ix = "
            f"{ref(node.input[1])}; char *y = (char *){ref(node.output[0])}; static const long dims[] = "
            f"{{{','.join(map(str, data[:depth]))}}}, st[] = {{{','.join(map(str, strides))}}}; "
            f"for (size_t n = 0; n < {tuples}; ++n) {{ size_t at = 0; int ok = 1; for (int d = 0; d < {depth}; ++d) {{ "
            f"long long k = (long long)ix[n * {depth} + d]; if (k < 0) k += dims[d]; if (k < 0 || k >= dims[d]) "
            f"ok = 0; "
            f"else at += (size_t)k * st[d]; }} if (ok) memcpy(y + n * {slice_size * size}, x + at * {size}, "
            f"{slice_size * size}); else memset(y + n * {slice_size * size}, 0, {slice_size * size}); }} "
            f"}}")  # fmt: skip


def _onehot(graph: Graph, node: Any, ref: Ref) -> str:
    out = list(graph.shapes[node.output[0]])
    axis = int(attrs(node).get("axis", -1)) % len(out)
    depth = out[axis]
    outer, _, inner = _split(out, axis)
    t = graph.ctype(node.output[0])
    return (f"{{ const {graph.ctype(node.input[0])} *ix = {ref(node.input[0])}; const {t} *vals = "
            f"{ref(node.input[2])}; "
            f"{t} *y = {ref(node.output[0])}; for (size_t o = 0; o < {outer}; ++o) for (size_t j = 0; j < "
            f"{depth}; ++j) "
            f"for (size_t q = 0; q < {inner}; ++q) {{ long long k = (long long)ix[o * {inner} + q]; if (k < 0) "
            f"k += {depth}; "
            f"y[(o * {depth} + j) * {inner} + q] = k == (long long)j ? vals[1] : vals[0]; }} }}")  # fmt: skip


def _axis_strides(graph: Graph, node: Any, name: str, axis: int) -> list[int] | None:
    """Strides reading a per-axis parameter (1-D along ``axis``) at each element of the input."""
    x = list(graph.shapes[node.input[0]])
    shape = list(graph.shapes[name])
    if len(shape) == 1 and shape[0] == x[axis] and len(x) > 1:
        return [1 if d == axis else 0 for d in range(len(x))]
    if graph.size(name) == 1 or shape == x:
        return None
    return broadcast_strides(tuple(shape), tuple(x))


def _quantize(graph: Graph, node: Any, ref: Ref) -> str:
    a = attrs(node)
    if int(a.get("block_size", 0)):
        raise UnsupportedOpError(f"static-lib: {node.op_type} with block_size is not supported")
    x = list(graph.shapes[node.input[0]])
    axis = int(a.get("axis", 1)) % max(len(x), 1)
    names = [n for n in node.input if n]
    strides = {n: s for n in names[1:] if (s := _axis_strides(graph, node, n, axis)) is not None}
    out = graph.dtype(node.output[0])
    if node.op_type == "DequantizeLinear":
        zero = "{2}" if len(names) > 2 else "0"
        return elementwise(graph, node, ref, f"((float){{0}} - (float){zero}) * (float){{1}}", names=names,
                           strides=strides)  # fmt: skip
    if out.name in FLOAT8:  # no rounding to an integer: the 8-bit float's own rounding, saturated or not
        zero = "(float){2}" if len(names) > 2 else "0.0f"
        return elementwise(graph, node, ref, f"(float){{0}} / (float){{1}} + {zero}", names=names, strides=strides,
                           saturate=bool(int(a.get("saturate", 1))))  # fmt: skip
    if out.name in PACKED:
        bits, signed = PACKED[out.name]
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    elif out.kind in "iu":
        low, high = int(np.iinfo(out).min), int(np.iinfo(out).max)
    else:
        raise UnsupportedOpError(f"static-lib: QuantizeLinear to {out.name} is not supported")
    zero = "(float){2}" if len(names) > 2 else "0.0f"
    value = f"rintf((float){{0}} / (float){{1}}) + {zero}"
    return elementwise(graph, node, ref, f"fminf(fmaxf({value}, {low}.0f), {high}.0f)", names=names,
                       strides=strides)  # fmt: skip


EMITTERS: dict[str, Callable[[Graph, Any, Ref], str]] = {
    "Trilu": _trilu, "CumSum": _cumulative, "CumProd": _cumulative, "Hardmax": _hardmax,
    "LpNormalization": _lp_normalization, "TopK": _topk, "ScatterElements": _scatter_elements,
    "ScatterND": _scatter_nd, "GatherND": _gather_nd, "OneHot": _onehot, "QuantizeLinear": _quantize,
    "DequantizeLinear": _quantize, "Scatter": _scatter_elements,
}  # fmt: skip


def batch_offsets(a: list[int], b: list[int]) -> tuple[list[int], list[int], int, int, int, int]:
    """(A's and B's offsets per product, M, K, N, products) of numpy's N-D matmul."""
    a = [1, *a] if len(a) == 1 else a
    b = [*b, 1] if len(b) == 1 else b
    m, k, n = a[-2], a[-1], b[-1]
    batch = list(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))

    def offsets(shape: list[int], size: int) -> list[int]:
        padded = [1] * (len(batch) - len(shape)) + shape
        strides, step = [0] * len(padded), size
        for d in range(len(padded) - 1, -1, -1):
            strides[d] = 0 if padded[d] == 1 else step
            step *= padded[d]
        return [int(sum(i * s for i, s in zip(index, strides, strict=True))) for index in np.ndindex(*batch)] or [0]

    return offsets(a[:-2], m * k), offsets(b[:-2], k * n), m, k, n, int(np.prod(batch)) if batch else 1


def _scalar(graph: Graph, node: Any, index: int, what: str) -> str | None:
    """A one-value parameter (zero point, scale) as a C value, or None when absent."""
    if len(node.input) <= index or not node.input[index]:
        return None
    name = node.input[index]
    if graph.size(name) != 1:
        raise UnsupportedOpError(f"static-lib: {node.op_type} with a {what} per row or column is not supported")
    if name not in graph.consts:
        return None
    table = graph.weights.add(graph.consts[name], name, graph.consts[name].dtype)
    return f"(double){graph.load(name, table + '[0]')}"


def _matmul_any(graph: Graph, node: Any, ref: Ref) -> str:
    """MatMul of the types without a kernel (float64, integers), MatMulInteger and QLinearMatMul:
    one product per broadcast batch index, summed in double (float64) or int64."""
    op = node.op_type
    a_name, b_name = (node.input[0], node.input[3]) if op == "QLinearMatMul" else (node.input[0], node.input[1])
    ao, bo, m, k, n, count = batch_offsets(list(graph.shapes[a_name]), list(graph.shapes[b_name]))
    out = node.output[0]
    if op == "MatMul" and graph.dtype(out) == np.float32:
        from packager.codegen.ops import FLOAT_EMITTERS

        return FLOAT_EMITTERS["MatMul"](graph, node, ref)
    integer = op != "MatMul" or graph.dtype(out).kind in "iu"
    acc = "int64_t" if integer else "double"
    if op == "QLinearMatMul":
        wanted = ((1, "scale"), (2, "zero point"), (4, "scale"), (5, "zero point"), (6, "scale"), (7, "zero point"))
        params = [_scalar(graph, node, i, w) for i, w in wanted]
        if any(p is None for p in params):
            raise UnsupportedOpError("static-lib: QLinearMatMul with scales or zero points computed at run time is "
                                     "not supported")  # fmt: skip
        a_scale, a_zero, b_scale, b_zero, y_scale, y_zero = params
        info = np.iinfo(graph.dtype(out))
        finish = (f"fmin(fmax(nearbyint((double)acc * {a_scale} * {b_scale} / {y_scale}) + {y_zero}, {info.min}), "
                  f"{info.max})")  # fmt: skip
    elif op == "MatMulInteger":
        a_zero = _scalar(graph, node, 2, "zero point") or "0"
        b_zero = _scalar(graph, node, 3, "zero point") or "0"
        if (len(node.input) > 2 and node.input[2] and node.input[2] not in graph.consts) or \
                (len(node.input) > 3 and node.input[3] and node.input[3] not in graph.consts):  # fmt: skip
            raise UnsupportedOpError("static-lib: MatMulInteger with zero points computed at run time is not supported")
        finish = "acc"
    else:
        a_zero = b_zero = "0"
        finish = "acc"
    a_value, b_value = graph.load(a_name, "A[ai + (size_t)i * " + str(k) + " + q]"), graph.load(
        b_name, "B[bi + (size_t)q * " + str(n) + " + j]")  # fmt: skip
    t = graph.ctype(out)
    return (f"{{ static const long ao[] = {{{','.join(map(str, ao))}}}, bo[] = {{{','.join(map(str, bo))}}}; "
            f"const {graph.ctype(a_name)} *A = {ref(a_name)}; const {graph.ctype(b_name)} *B = {ref(b_name)}; "
            f"{t} *Y = {ref(out)}; for (size_t t = 0; t < {count}; ++t) {{ const size_t ai = (size_t)ao[t], "
            f"bi = (size_t)bo[t]; for (size_t i = 0; i < {m}; ++i) for (size_t j = 0; j < {n}; ++j) {{ {acc} acc = 0; "
            f"for (size_t q = 0; q < {k}; ++q) "
            f"acc += ({acc})(({a_value}) - {a_zero}) * ({acc})(({b_value}) - {b_zero}); "
            f"Y[t * {m * n} + i * {n} + j] = ({t})({finish}); }} }} }}")  # fmt: skip


EMITTERS.update({"MatMulInteger": _matmul_any, "QLinearMatMul": _matmul_any})
OVERRIDES = {"MatMul": _matmul_any}


def _einsum(graph: Graph, node: Any, ref: Ref) -> str:
    """Einsum, any equation: the output's letters outside, the summed letters inside, each
    operand's offset from its strides per letter (a repeated letter, a diagonal, adds its
    strides); an ellipsis stands for the leading dims it covers."""
    equation = attrs(node)["equation"]
    equation = (equation.decode() if isinstance(equation, bytes) else str(equation)).replace(" ", "")
    names = [n for n in node.input if n]
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != len(names):
        raise UnsupportedOpError("static-lib: Einsum's equation does not match its inputs")
    sizes: dict[str, int] = {}
    spelled = []
    ellipsis_rank = 0
    for term, name in zip(terms, names, strict=True):
        shape = list(graph.shapes[name])
        if "..." in term:
            ellipsis_rank = max(ellipsis_rank, len(shape) - (len(term) - 3))
    dots = "".join(chr(0x3B1 + i) for i in range(ellipsis_rank))  # letters no equation uses
    for term, name in zip(terms, names, strict=True):
        shape = list(graph.shapes[name])
        if "..." in term:
            covered = len(shape) - (len(term) - 3)
            term = term.replace("...", dots[ellipsis_rank - covered :])
        spelled.append(term)
        for letter, dim in zip(term, shape, strict=True):
            if sizes.get(letter, 1) != 1 and dim != 1 and sizes[letter] != dim:
                raise UnsupportedOpError("static-lib: Einsum with mismatched dims")
            sizes[letter] = max(sizes.get(letter, 1), dim)
    if not arrow:  # implicit output: the ellipsis, then the letters used once, in order
        used = "".join(spelled)
        right = dots + "".join(sorted(c for c in set(used) if used.count(c) == 1 and c not in dots))
    right = right.replace("...", dots)
    summed = [c for c in sizes if c not in right]
    out_sizes, sum_sizes = [sizes[c] for c in right] or [1], [sizes[c] for c in summed] or [1]

    def strides(term: str, name: str, letters: list[str] | str) -> list[int]:
        shape = list(graph.shapes[name])
        steps = [int(np.prod(shape[d + 1 :])) for d in range(len(shape))]
        return [sum(steps[d] for d, c in enumerate(term) if c == letter and shape[d] != 1) for letter in letters] or [0]

    integer = graph.dtype(node.output[0]).kind in "iu"
    acc = "int64_t" if integer else "double"
    decls, product = [], []
    for j, (term, name) in enumerate(zip(spelled, names, strict=True)):
        outer, inner = strides(term, name, right), strides(term, name, summed)
        decls.append(f"const {graph.ctype(name)} *a{j} = {ref(name)}; static const long o{j}[] = "
                     f"{{{','.join(map(str, outer))}}}, s{j}[] = {{{','.join(map(str, inner))}}};")  # fmt: skip
        at = f"pk_at(o, {len(out_sizes)}, os, o{j}) + pk_at(s, {len(sum_sizes)}, ss, s{j})"
        product.append(f"({acc}){graph.load(name, f'a{j}[{at}]')}")
    out = node.output[0]
    t = graph.ctype(out)
    return (f"{{ {' '.join(decls)} static const int os[] = {{{','.join(map(str, out_sizes))}}}, "
            f"ss[] = {{{','.join(map(str, sum_sizes))}}}; {t} *y = {ref(out)}; "
            f"for (size_t o = 0; o < {int(np.prod(out_sizes))}; ++o) {{ {acc} acc = 0; "
            f"for (size_t s = 0; s < {int(np.prod(sum_sizes))}; ++s) acc += {' * '.join(product)}; "
            f"y[o] = {graph.store(out, f'({graph.value_type(out)})acc')}; }} }}")  # fmt: skip


EMITTERS["Einsum"] = _einsum


def _depth_space(graph: Graph, node: Any, ref: Ref) -> str:
    """DepthToSpace (DCR or CRD) and SpaceToDepth: a reshape to 6-D, a transpose, a reshape."""
    a = attrs(node)
    n, c, h, w = graph.shapes[node.input[0]]
    b = int(a["blocksize"])
    if node.op_type == "SpaceToDepth":
        view, perm = [n, c, h // b, b, w // b, b], [0, 3, 5, 1, 2, 4]
    elif text(a.get("mode"), "DCR") == "CRD":
        view, perm = [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
    else:
        view, perm = [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]
    strides = [int(np.prod(view[d + 1 :])) for d in range(6)]
    name = kernel("pk_transpose", graph.dtype(node.output[0]))
    return (f"{name}({ref(node.input[0])}, {ref(node.output[0])}, 6, (const "
            f"int[]){{{','.join(str(view[p]) for p in perm)}}}, "
            f"(const int[]){{{','.join(str(strides[p]) for p in perm)}}});")  # fmt: skip


def _instance_norm(graph: Graph, node: Any, ref: Ref) -> str:
    x = list(graph.shapes[node.input[0]])
    channels, size = x[1], int(np.prod(x[2:]))
    eps = float(attrs(node).get("epsilon", 1e-5))
    return (f"{{ const float *x = {ref(node.input[0])}, *sc = {ref(node.input[1])}, *bi = {ref(node.input[2])}; "
            f"float *y = {ref(node.output[0])}; for (size_t nc = 0; nc < {x[0] * channels}; ++nc) {{ "
            f"const float *xi = x + nc * {size}; float *yi = y + nc * {size}; double mean = 0, var = 0; "
            f"for (size_t i = 0; i < {size}; ++i) mean += xi[i]; mean /= {size}; "
            f"for (size_t i = 0; i < {size}; ++i) var += (xi[i] - mean) * (xi[i] - mean); var /= {size}; "
            f"const double k = 1.0 / sqrt(var + {eps!r}); const size_t c = nc % {channels}; "
            f"for (size_t i = 0; i < {size}; ++i) yi[i] = (float)((xi[i] - mean) * k * sc[c] + bi[c]); }} "
            f"}}")  # fmt: skip


def _lrn(graph: Graph, node: Any, ref: Ref) -> str:
    a = attrs(node)
    x = list(graph.shapes[node.input[0]])
    channels, size = x[1], int(np.prod(x[2:]))
    alpha, beta, bias, n = (
        float(a.get("alpha", 1e-4)),
        float(a.get("beta", 0.75)),
        float(a.get("bias", 1.0)),
        int(a["size"]),
    )
    low, high = (n - 1) // 2, (n - 1) - (n - 1) // 2  # floor and ceil of (size - 1) / 2
    return (f"{{ const float *x = {ref(node.input[0])}; float *y = {ref(node.output[0])}; "
            f"for (size_t b = 0; b < {x[0]}; ++b) for (int c = 0; c < {channels}; ++c) for (size_t i = 0; i < "
            f"{size}; ++i) {{ "
            f"double sq = 0; for (int k = c - {low}; k <= c + {high}; ++k) if (k >= 0 && k < {channels}) {{ "
            f"const double v = x[(b * {channels} + (size_t)k) * {size} + i]; sq += v * v; }} "
            f"const size_t at = (b * {channels} + (size_t)c) * {size} + i; "
            f"y[at] = (float)(x[at] / pow({bias!r} + {alpha!r} / {n} * sq, {beta!r})); }} }}")  # fmt: skip


def _shrink(graph: Graph, node: Any, ref: Ref) -> str:
    a = attrs(node)
    lambd, bias = float(a.get("lambd", 0.5)), float(a.get("bias", 0.0))
    return elementwise(graph, node, ref, f"({{0}} < -{lambd!r} ? {{0}} + {bias!r} : ({{0}} > {lambd!r} ? {{0}} "
                                         f"- {bias!r} : 0))",
                       names=[node.input[0]])  # fmt: skip


EMITTERS.update({"DepthToSpace": _depth_space, "SpaceToDepth": _depth_space, "InstanceNormalization": _instance_norm,
                 "LRN": _lrn, "Shrink": _shrink})  # fmt: skip
