"""Sliding windows of any rank: pools (Max, Average, Lp, and their Global forms) and Conv over
N-D images (3-D and up; 1-D and 2-D float32 have their own kernels), and MaxPool on the other
element types. One loop nest per node: each output element visits its window, the input
coordinate of each tap computed from the output's, the stride, the dilation and the padding
(tables of the few numbers of each dim)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import Graph, attrs
from packager.errors import UnsupportedOpError

Ref = Callable[[str], str]


def _ints(values: list[int]) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def geometry(graph: Graph, node: Any, kernel: list[int]) -> dict[str, list[int]]:
    """Input and output spatial dims, strides, dilations, and the padding before and after each
    dim (auto_pad resolved from the output's size)."""
    a = attrs(node)
    x, y = list(graph.shapes[node.input[0]]), list(graph.shapes[node.output[0]])
    n = len(x) - 2
    strides, dil = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
    pads = list(a.get("pads", [0] * 2 * n))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max((y[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - x[2 + i], 0) for i in range(n)]
        first = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        pads = [*first, *[t - f for t, f in zip(total, first, strict=True)]]
    elif auto == "VALID":
        pads = [0] * 2 * n
    return {"in": x[2:], "out": y[2:], "k": kernel, "s": strides, "d": dil, "pb": pads[:n], "pe": pads[n:]}


def _walk(g: dict[str, list[int]]) -> tuple[str, str]:
    """C declarations of the window tables, and the statement that, for output coordinate ``oc``
    and tap ``w``, sets ``off`` (the tap's offset in one input channel), ``inside`` (the tap is on
    the image) and ``counted`` (it is on the padded image: what count_include_pad divides by)."""
    n = len(g["k"])
    strides = [int(np.prod(g["in"][d + 1 :])) for d in range(n)]
    tables = (f"static const int ks[] = {_ints(g['k'])}, st[] = {_ints(g['s'])}, dl[] = {_ints(g['d'])}, "
              f"pb[] = {_ints(g['pb'])}, pe[] = {_ints(g['pe'])}, is[] = {_ints(g['in'])}, os[] = {_ints(g['out'])}; "
              f"static const long xs[] = {_ints(strides)};")  # fmt: skip
    walk = (f"long off = 0; int inside = 1, counted = 1; size_t r = w; "
            f"for (int d = {n - 1}; d >= 0; --d) {{ const long at = (long)oc[d] * st[d] - pb[d] + (long)(r % "
            f"ks[d]) * dl[d]; "
            f"r /= ks[d]; if (at < 0 || at >= is[d]) inside = 0; if (at < -pb[d] || at >= is[d] + pe[d]) counted = 0; "
            f"off += at * xs[d]; }} (void)counted;")  # fmt: skip
    return tables, walk


def _coords(n: int) -> str:
    return (f"int oc[{n}]; {{ size_t r = o; for (int d = {n - 1}; d >= 0; --d) {{ oc[d] = (int)(r % os[d]); "
            f"r /= os[d]; }} }}")  # fmt: skip


def pool(graph: Graph, node: Any, ref: Ref) -> str:
    """MaxPool, AveragePool and LpPool over any rank, any element type for MaxPool."""
    a = attrs(node)
    x = list(graph.shapes[node.input[0]])
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOpError("static-lib: MaxPool's Indices output is not supported")
    kind = node.op_type
    if kind != "MaxPool" and graph.dtype(node.input[0]) != np.float32:
        raise UnsupportedOpError(f"static-lib: {kind} on {graph.dtype(node.input[0]).name} tensors is not supported")
    g = geometry(graph, node, list(a["kernel_shape"]))
    n = len(g["k"])
    taps, outs, channels = int(np.prod(g["k"])), int(np.prod(g["out"])), x[0] * x[1]
    tables, walk = _walk(g)
    t = graph.ctype(node.input[0])
    size = int(np.prod(g["in"]))
    if kind == "MaxPool":
        start, add, finish = (
            "int any = 0; " + t + " best = 0;",
            "if (inside && (!any || v > best || v != v)) { best = v; any = 1; }",
            "best",
        )
    elif kind == "AveragePool":
        include = int(a.get("count_include_pad", 0))
        start, add = (
            "double sum = 0; int count = 0;",
            f"if (inside) sum += v; if ({'counted' if include else 'inside'}) ++count;",
        )
        finish = "(float)(count ? sum / count : 0)"
    else:  # LpPool
        p = float(a.get("p", 2))
        start, add, finish = (
            "double sum = 0;",
            f"if (inside) sum += pow(fabs((double)v), {p!r});",
            f"(float)pow(sum, 1.0 / {p!r})",
        )
    return (f"{{ {tables} const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t c = 0; c < {channels}; ++c) for (size_t o = 0; o < {outs}; ++o) {{ {_coords(n)} {start} "
            f"for (size_t w = 0; w < {taps}; ++w) {{ {walk} const {t} v = inside ? x[c * {size} + off] : 0; {add} }} "
            f"y[c * {outs} + o] = {finish}; }} }}")  # fmt: skip


def global_pool(graph: Graph, node: Any, ref: Ref) -> str:
    """GlobalMaxPool (any type) and GlobalLpPool: one value per channel."""
    x = list(graph.shapes[node.input[0]])
    t = graph.ctype(node.input[0])
    channels, size = x[0] * x[1], int(np.prod(x[2:]))
    if node.op_type == "GlobalMaxPool":
        body = (
            f"{t} best = x[c * {size}]; for (size_t i = 1; i < {size}; ++i) {{ const {t} v = x[c * {size} + "
            f"i]; if (v > best || v != v) best = v; }} y[c] = best;"
        )
    else:
        if graph.dtype(node.input[0]) != np.float32:
            raise UnsupportedOpError(
                f"static-lib: {node.op_type} on {graph.dtype(node.input[0]).name} is not supported"
            )
        p = float(attrs(node).get("p", 2))
        body = (f"double sum = 0; for (size_t i = 0; i < {size}; ++i) sum += pow(fabs((double)x[c * {size} + "
                f"i]), {p!r}); "
                f"y[c] = (float)pow(sum, 1.0 / {p!r});")  # fmt: skip
    return (f"{{ const {t} *x = {ref(node.input[0])}; {t} *y = {ref(node.output[0])}; "
            f"for (size_t c = 0; c < {channels}; ++c) {{ {body} }} }}")  # fmt: skip


def conv(graph: Graph, node: Any, ref: Ref) -> str:
    """Conv of any rank (float32): for each output, the sum over its group's channels and the
    window's taps, plus the bias."""
    x, w = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    group = int(attrs(node).get("group", 1))
    g = geometry(graph, node, list(attrs(node).get("kernel_shape") or w[2:]))
    n = len(g["k"])
    taps, outs = int(np.prod(g["k"])), int(np.prod(g["out"]))
    per_group, maps = x[1] // group, w[0]
    maps_per_group = maps // group
    size = int(np.prod(g["in"]))
    tables, walk = _walk(g)
    bias = f"{ref(node.input[2])}[m]" if len(node.input) > 2 and node.input[2] else "0.0f"
    return (f"{{ {tables} const float *x = {ref(node.input[0])}, *wt = {ref(node.input[1])}; "
            f"float *y = {ref(node.output[0])}; "
            f"for (size_t b = 0; b < {x[0]}; ++b) for (size_t m = 0; m < {maps}; ++m) {{ "
            f"const size_t c0 = (m / {maps_per_group}) * {per_group}; "
            f"for (size_t o = 0; o < {outs}; ++o) {{ {_coords(n)} double sum = {bias}; "
            f"for (size_t w = 0; w < {taps}; ++w) {{ {walk} if (!inside) continue; "
            f"for (size_t c = 0; c < {per_group}; ++c) sum += x[(b * {x[1]} + c0 + c) * {size} + off] "
            f"* wt[(m * {per_group} + c) * {taps} + w]; }} "
            f"y[(b * {maps} + m) * {outs} + o] = (float)sum; }} }} }}")  # fmt: skip
