"""Emitters of the standard ONNX ops: each returns the C statement for one node."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen import window
from packager.codegen.graph import Graph, attrs, c_float, kernel
from packager.codegen.index import EMITTERS as INDEX_EMITTERS
from packager.codegen.recurrent import EMITTERS as RECURRENT_EMITTERS
from packager.codegen.recurrent import scratch_floats as recurrent_scratch
from packager.codegen.reduce import EMITTERS as REDUCE_EMITTERS
from packager.codegen.reduce import REDUCE, reduce_scratch
from packager.codegen.resize import EMITTERS as RESIZE_EMITTERS
from packager.codegen.select import EMITTERS as SELECT_EMITTERS
from packager.codegen.select import OVERRIDES as SELECT_OVERRIDES
from packager.codegen.select import batch_offsets
from packager.codegen.typed import EMITTERS as TYPED_EMITTERS
from packager.codegen.typed import OVERRIDES as TYPED_OVERRIDES
from packager.codegen.typed import broadcast_strides
from packager.errors import UnsupportedOpError

SKINNY = 16  # products with fewer output columns than one block run as dot products


def _int_list(values: list[int] | tuple[int, ...]) -> str:
    return "(const int[]){" + ",".join(str(int(v)) for v in values) + "}"


def _gemm(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    a = attrs(node)
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    sa, sb = graph.shapes[node.input[0]], graph.shapes[node.input[1]]
    m, k = (sa[1], sa[0]) if ta else (sa[0], sa[1])
    n = sb[0] if tb else sb[1]
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    c_kind, c = 0, "0"
    if len(node.input) > 2 and node.input[2]:
        sc = graph.shapes[node.input[2]]
        size = int(np.prod(sc)) if sc else 1
        c_kind = 3 if size == 1 else (2 if size == m * n and m > 1 else (4 if len(sc) == 2 and sc[1] == 1 else 1))
        c = ref(node.input[2])
    b_const = graph.consts.get(node.input[1])
    if not ta and b_const is not None and n < SKINNY:  # dot products against B stored as [N, K]
        bt = b_const if tb else np.ascontiguousarray(b_const.T)
        call = f"pk_dots({ref(node.input[0])}, {graph.weights.add(bt, node.input[1] + '_nk')}, " \
               f"{ref(node.output[0])}, {m}, {n}, {k});"  # fmt: skip
        if c_kind or alpha != 1.0:
            call += f" pk_bias({ref(node.output[0])}, {c}, {m}, {n}, {alpha!r}f, {beta!r}f, {c_kind});"
        return call
    if ta or (tb and b_const is None):  # the general loop; rare in exported models
        return (f"pk_gemm({ref(node.input[0])}, {ref(node.input[1])}, {c}, {ref(node.output[0])}, {m}, {n}, {k}, "
                f"{ta}, {tb}, {alpha!r}f, {beta!r}f, {c_kind});")  # fmt: skip
    if b_const is not None:  # packed in 64-column panels (a bias of [N] added as the panel is stored)
        bias = c if c_kind == 1 and alpha == 1.0 and beta == 1.0 else "0"
        call = _packed(graph, node, ref, b_const.T if tb else b_const, bias, m)
        if bias == "0" and (c_kind or alpha != 1.0):
            call += f" pk_bias({ref(node.output[0])}, {c}, {m}, {n}, {alpha!r}f, {beta!r}f, {c_kind});"
        return call
    call = f"pk_matmul({ref(node.input[0])}, {ref(node.input[1])}, {ref(node.output[0])}, {m}, {n}, {k});"
    if c_kind or alpha != 1.0:
        call += f" pk_bias({ref(node.output[0])}, {c}, {m}, {n}, {alpha!r}f, {beta!r}f, {c_kind});"
    return call


def _batched_matmul(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    """N-D MatMul: one product per index of the broadcast batch dims, each operand's slice found
    in a table of offsets (a 1-D operand is a row or a column, as numpy takes it)."""
    ao, bo, m, k, n, count = batch_offsets(list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]]))
    return (f"{{ static const long ao[] = {{{', '.join(map(str, ao))}}}, bo[] = {{{', '.join(map(str, bo))}}}; "
            f"for (int t = 0; t < {count}; ++t) pk_matmul({ref(node.input[0])} + ao[t], {ref(node.input[1])} + bo[t], "
            f"{ref(node.output[0])} + (size_t)t * {m * n}, {m}, {n}, {k}); }}")  # fmt: skip


def _matmul(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    sa, sb = graph.shapes[node.input[0]], graph.shapes[node.input[1]]
    if len(sb) != 2:
        return _batched_matmul(graph, node, ref)
    m = int(np.prod(sa[:-1])) if len(sa) > 1 else 1
    b_const = graph.consts.get(node.input[1])
    if b_const is not None and sb[1] < SKINNY:
        bt = graph.weights.add(np.ascontiguousarray(b_const.T), node.input[1] + "_nk")
        return f"pk_dots({ref(node.input[0])}, {bt}, {ref(node.output[0])}, {m}, {sb[1]}, {sb[0]});"
    if b_const is not None and graph.dtype(node.input[0]) == np.float32:
        bias = graph.fused_bias.get(node.output[0])
        return _packed(graph, node, ref, b_const, ref(bias[1]) if bias else "0", m)
    return f"pk_matmul({ref(node.input[0])}, {ref(node.input[1])}, {ref(node.output[0])}, {m}, {sb[1]}, {sb[0]});"


def pack_panels(b: np.ndarray) -> np.ndarray:
    """B[K, N] as pk_matmul_packed reads it: panels of 64 columns, each K rows of 64, but the last,
    K rows of its width rounded up to 16 (zeros past N), one after the other (flat)."""
    k, n = b.shape
    full, last = divmod(n, 64)
    width = -(-last // 16) * 16
    padded = np.zeros((k, full * 64 + width), np.float32)
    padded[:, :n] = b
    head = padded[:, : full * 64].reshape(k, full, 64).transpose(1, 0, 2).reshape(-1)
    return np.ascontiguousarray(np.concatenate([head, padded[:, full * 64 :].reshape(-1)]))


def _packed(graph: Graph, node: Any, ref: Callable[[str], str], b: np.ndarray, bias: str, m: int) -> str:
    """Y = A B (+ bias) for a constant B, which the library holds packed."""
    k, n = b.shape
    packed = graph.weights.add(pack_panels(b), node.input[1] + "_p64", aligned=True)
    return (f"pk_matmul_packed({ref(node.input[0])}, {packed}, {bias}, {ref(graph.written(node.output[0]))}, "
            f"{m}, {n}, {k});")  # fmt: skip


def fuse_biases(graph: Graph) -> dict[str, tuple[str, str]]:
    """MatMul outputs (a constant 2-D B, float32) read only by an Add of a constant [N] bias: the
    product adds the bias as it stores and writes the Add's output. -> (Add output, bias name)."""
    readers = _readers(graph)
    fused = {}
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.output[0] in graph.outputs:
            continue
        b = graph.consts.get(node.input[1])
        after = readers.get(node.output[0], [])
        if b is None or b.ndim != 2 or b.shape[1] < SKINNY or len(after) != 1 or after[0].op_type != "Add":
            continue
        add = after[0]
        other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        bias = graph.consts.get(other)
        if (
            bias is None
            or bias.dtype != np.float32
            or bias.size != b.shape[1]
            or bias.ndim < 1
            or bias.shape[-1] != b.shape[1]
            or graph.shapes[add.output[0]] != graph.shapes[node.output[0]]
        ):
            continue
        if graph.dtype(node.input[0]) == np.float32:
            fused[node.output[0]] = (add.output[0], other)
    return fused


def collapse(shape: list[int], *strides: list[int]) -> tuple[list[int], ...]:
    """A broadcast's dims merged where every operand steps through them as through one (size-1
    dims dropped): [1, 16, 384] + [384] is 16 rows of 384, and same-shape operands one row."""
    dims = [(n, [s[d] for s in strides]) for d, n in enumerate(shape) if n != 1] or [(1, [0 for _ in strides])]
    merged = [dims[0]]
    for n, steps in dims[1:]:
        outer, outer_steps = merged[-1]
        if all(o == s * n for o, s in zip(outer_steps, steps, strict=True)):
            merged[-1] = (outer * n, steps)
        else:
            merged.append((n, steps))
    return ([n for n, _ in merged], *[[steps[k] for _, steps in merged] for k in range(len(strides))])


def _binary(code: int) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    def emit(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        if code == 0 and any(graph.fused_bias.get(name, ("",))[0] == node.output[0] for name in node.input):
            return "/* fused into the MatMul above */"
        if len([n for n in node.input if n]) != 2:
            raise UnsupportedOpError(f"static-lib: {node.op_type} of {len(node.input)} inputs (2 only) is not handled")
        out = graph.shapes[node.output[0]]
        shape, a_strides, b_strides = collapse(list(out), *[broadcast_strides(graph.shapes[name], out)
                                                            for name in node.input[:2]])  # fmt: skip
        return (f"pk_binary({code}, {ref(node.input[0])}, {ref(node.input[1])}, {ref(node.output[0])}, "
                f"{len(shape)}, {_int_list(shape)}, {_int_list(a_strides)}, {_int_list(b_strides)});")  # fmt: skip

    return emit


# op -> (code of pk_unary / pk_math in kernels.c, the default of its alpha or None)
MATH = {"Abs": (9, None), "Exp": (10, None), "Log": (11, None), "Sqrt": (12, None), "Erf": (13, None),
        "Softplus": (16, None), "Softsign": (17, None), "Ceil": (18, None), "Floor": (19, None),
        "Round": (20, None), "Reciprocal": (21, None), "Sin": (22, None), "Cos": (23, None), "Elu": (24, 1.0),
        "Selu": (25, 1.67326319217681884765625), "Celu": (26, 1.0), "ThresholdedRelu": (27, 1.0),
        "Sign": (28, None), "Mish": (29, None), "Tan": (30, None), "Asin": (31, None), "Acos": (32, None),
        "Atan": (33, None), "Sinh": (34, None), "Cosh": (35, None), "Asinh": (36, None), "Acosh": (37, None),
        "Atanh": (38, None)}  # fmt: skip


def _math(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    a = attrs(node)
    if node.op_type == "Gelu":
        approximate = a.get("approximate", b"none")
        tanh = (approximate.decode() if isinstance(approximate, bytes) else str(approximate)) == "tanh"
        code, alpha = (15 if tanh else 14), None
    else:
        code, alpha = MATH[node.op_type]
    p0 = float(a.get("alpha", alpha if alpha is not None else 0.0))
    p1 = float(a.get("gamma", 1.05070102214813232421875)) if node.op_type == "Selu" else 0.0
    return (f"pk_unary({code}, {ref(node.input[0])}, {ref(node.output[0])}, {graph.size(node.output[0])}, "
            f"{c_float(p0)}, {c_float(p1)});")  # fmt: skip


def _unary(code: int) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    def emit(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        if graph.fused_relu.get(node.input[0]) == node.output[0]:
            return "/* fused into the Conv above */"
        a = attrs(node)
        p0, p1 = c_float(float(a.get("alpha", 0.01))), c_float(0.0)
        if node.op_type == "HardSigmoid":
            p0, p1 = c_float(float(a.get("alpha", 0.2))), c_float(float(a.get("beta", 0.5)))
        if node.op_type == "Clip":
            bounds = _clamp_bounds(graph, node)
            assert bounds is not None  # typed._clip sends a Clip here only when its bounds are constants
            p0, p1 = c_bound(bounds[0]), c_bound(bounds[1])
        return (f"pk_unary({code}, {ref(node.input[0])}, {ref(node.output[0])}, {graph.size(node.output[0])}, "
                f"{p0}, {p1});")  # fmt: skip

    return emit


def _dropout(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    """Inference's Dropout, a copy; training mode (a random mask) is refused."""
    if len(node.input) > 2 and node.input[2]:
        training = graph.consts.get(node.input[2])
        if training is None or bool(np.asarray(training).reshape(-1)[0]):
            raise UnsupportedOpError("static-lib: Dropout in training mode (a random mask) is not supported")
    if len(node.output) > 1 and node.output[1]:  # the mask of inference: every value kept
        return _copy(graph, node, ref) + f" memset({ref(node.output[1])}, 1, {graph.size(node.output[1])});"
    return _copy(graph, node, ref)


def _copy(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    """A tensor as it is, of any type (Reshape, Flatten, Squeeze, Unsqueeze, Identity)."""
    name = node.output[0]
    if ref(name) == ref(node.input[0]):
        return "/* a view: the same memory */"
    return f"memcpy({ref(name)}, {ref(node.input[0])}, {graph.size(name) * graph.dtype(name).itemsize});"


def _softmax(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    shape = graph.shapes[node.input[0]]
    axis = int(attrs(node).get("axis", -1 if graph.opset >= 13 else 1)) % len(shape)
    if graph.opset < 13 and axis != len(shape) - 1:
        raise UnsupportedOpError(f"static-lib: {node.op_type} before opset 13 over a non-last axis is not supported")
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1 :]))
    kernel = "pk_log_softmax" if node.op_type == "LogSoftmax" else "pk_softmax"
    return f"{kernel}({ref(node.input[0])}, {ref(node.output[0])}, {outer}, {shape[axis]}, {inner});"


def _spatial(graph: Graph, node: Any) -> dict[str, Any]:
    """A Conv's or pool's geometry as NCHW; a 1-D one (NCW) is one row, H = 1."""
    a = attrs(node)
    x, y = list(graph.shapes[node.input[0]]), list(graph.shapes[node.output[0]])
    if len(x) not in (3, 4):
        raise UnsupportedOpError(f"static-lib: {node.op_type} on a {len(x)}-D tensor (1-D NCW and 2-D NCHW only) "
                                 "is not supported")  # fmt: skip
    spatial = len(x) - 2
    g = window.geometry(graph, node, list(a.get("kernel_shape") or graph.shapes[node.input[1]][2:]))
    kernel, strides, dil, pads = g["k"], g["s"], g["d"], [*g["pb"], *g["pe"]]
    if spatial == 1:  # one row
        x, y = [x[0], x[1], 1, x[2]], [y[0], y[1], 1, y[2]]
        kernel, strides, dil, pads = [1, *kernel], [1, *strides], [1, *dil], [0, pads[0], 0, pads[1]]
    return {"x": x, "y": y, "k": kernel, "s": strides, "d": dil, "p": pads, "a": a}


def _per_item(graph: Graph, node: Any, ref: Callable[[str], str], call: str, out: str | None = None) -> str:
    """NCHW kernels take one item; a static leading dimension above 1 becomes a loop over items.
    ``call`` uses {x} and {y} for the item's input and output pointers; ``out`` writes another
    tensor of the output's shape instead (a fused activation's)."""
    target = out or node.output[0]
    items = graph.shapes[node.input[0]][0]
    x_step = graph.size(node.input[0]) // items
    y_step = graph.size(target) // items
    if items == 1:
        return call.format(x=ref(node.input[0]), y=ref(target))
    inner = call.format(x=f"{ref(node.input[0])} + n * {x_step}", y=f"{ref(target)} + n * {y_step}")
    return f"for (int n = 0; n < {items}; ++n) {inner}"


def _conv(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    if len(graph.shapes[node.input[0]]) > 4:
        return window.conv(graph, node, ref)
    g = _spatial(graph, node)
    x, y, k, s, d, p = g["x"], g["y"], g["k"], g["s"], g["d"], g["p"]
    bias = ref(node.input[2]) if len(node.input) > 2 and node.input[2] else "0"
    group = int(g["a"].get("group", 1))
    lo, hi = (c_bound(v) for v in graph.fused_clamp.get(node.output[0], (-math.inf, math.inf)))
    written = graph.written(node.output[0])
    if _rows_1x1(graph, node, g):  # the packed product, turned around
        wt = pack_panels(graph.consts[node.input[1]].reshape(y[1], x[1]).T)
        tin, tout = int(node.input[0] in graph.turned), int(written in graph.turned)  # channels-last (layout)
        call = (f"pk_conv1x1_rows({{x}}, {graph.weights.add(wt, node.input[1] + '_p64', aligned=True)}, {bias}, "
                f"{{y}}, {graph.scratch}, {x[1]}, {y[2] * y[3]}, {y[1]}, {lo}, {hi}, {tin}, {tout});")  # fmt: skip
        return _per_item(graph, node, ref, call, out=written)
    if written in graph.turned:  # a depthwise conv, channels-last (codegen.layout): each tap's weights as a row
        w = graph.consts[node.input[1]]
        taps = graph.weights.add(np.ascontiguousarray(w.reshape(w.shape[0], -1).T), node.input[1] + "_tc")
        call = (f"pk_depthwise_turned({{x}}, {taps}, {bias}, {{y}}, {x[1]}, {x[2]}, {x[3]}, {y[2]}, {y[3]}, "
                f"{k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, {d[0]}, {d[1]}, {lo}, {hi});")  # fmt: skip
        return _per_item(graph, node, ref, call, out=written)
    if group == 1:  # the blocked matmul over im2col, over the padded image in place, or over X itself
        pool = written != graph.fused_relu.get(node.output[0], node.output[0])
        call = (f"pk_conv2d_gemm({{x}}, {ref(node.input[1])}, {bias}, {{y}}, {graph.scratch}, {x[1]}, {x[2]}, "
                f"{x[3]}, {y[1]}, {y[2]}, {y[3]}, {k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, "
                f"{d[0]}, {d[1]}, {lo}, {hi}, {int(_conv_mode(g) == 'inplace')}, {int(pool)});")  # fmt: skip
        return _per_item(graph, node, ref, call, out=written)
    call = (f"pk_conv2d({{x}}, {ref(node.input[1])}, {bias}, {{y}}, {x[1]}, {x[2]}, "
            f"{x[3]}, {y[1]}, {y[2]}, {y[3]}, {k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, {d[0]}, {d[1]}, "
            f"{group}, {lo}, {hi}, {graph.scratch});")  # fmt: skip
    return _per_item(graph, node, ref, call, out=written)


SMALL_IMAGE = 128  # a 1x1 conv on fewer positions than this, to 64 outputs or more, runs turned around
# ... and, where it reads or writes channels-last, on fewer than TURNED_WIDE to 64 outputs or more,
# or on fewer than TURNED_NARROW to 16 or more (a narrow product's rows cost more than its columns)
TURNED_WIDE, TURNED_NARROW = 8192, 2048


def _rows_1x1(graph: Graph, node: Any, g: dict[str, Any], candidate: bool = False) -> bool:
    """A one-group 1x1 conv with constant weights run turned around: on a small image to 64 outputs
    or more, or on a larger one (TURNED_*) where it reads or writes a channels-last tensor
    (``candidate``: where it could, as codegen.layout asks before it decides)."""
    if not (int(g["a"].get("group", 1)) == 1 and _conv_mode(g) == "direct" and node.input[1] in graph.consts):
        return False  # (a direct conv never has a pool fused in: fuse_pools takes convs read in place)
    positions, outputs = g["y"][2] * g["y"][3], g["y"][1]
    if positions < SMALL_IMAGE and outputs >= 64:
        return True
    if not ((positions < TURNED_WIDE and outputs >= 64) or (positions < TURNED_NARROW and outputs >= 16)):
        return False
    return candidate or node.input[0] in graph.turned or graph.written(node.output[0]) in graph.turned


def _conv_transpose(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    """2-D ConvTranspose (1-D as one row); pads from the attribute, or from output_shape or
    auto_pad SAME_* as the total padding the output's size implies."""
    a = attrs(node)
    x, y, w = graph.shapes[node.input[0]], graph.shapes[node.output[0]], graph.shapes[node.input[1]]
    if len(x) not in (3, 4):
        raise UnsupportedOpError(f"static-lib: ConvTranspose on a {len(x)}-D tensor (1-D and 2-D only) is not "
                                 "supported")  # fmt: skip
    one_d = len(x) == 3
    spatial = 1 if one_d else 2
    kernel = list(a.get("kernel_shape") or w[2:])
    strides, dil = list(a.get("strides", [1] * spatial)), list(a.get("dilations", [1] * spatial))
    extra = list(a.get("output_padding", [0] * spatial))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [strides[i] * (x[2 + i] - 1) + extra[i] + (kernel[i] - 1) * dil[i] + 1 - y[2 + i]
                 for i in range(spatial)]  # fmt: skip
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        begin = list(a.get("pads", [0] * (2 * spatial)))[:spatial]
    if one_d:  # one row: H = 1
        kernel, strides, dil, begin = [1, *kernel], [1, *strides], [1, *dil], [0, *begin]
    xs = [x[1], 1, x[2]] if one_d else list(x[1:])
    ys = [y[1], 1, y[2]] if one_d else list(y[1:])
    group = int(a.get("group", 1))
    bias = ref(node.input[2]) if len(node.input) > 2 and node.input[2] else "0"
    call = (f"pk_conv_transpose2d({{x}}, {ref(node.input[1])}, {bias}, {{y}}, {xs[0]}, {xs[1]}, {xs[2]}, "
            f"{ys[0]}, {ys[1]}, {ys[2]}, {kernel[0]}, {kernel[1]}, {begin[0]}, {begin[1]}, {strides[0]}, "
            f"{strides[1]}, {dil[0]}, {dil[1]}, {group});")  # fmt: skip
    return _per_item(graph, node, ref, call)


def _readers(graph: Graph) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    readers: dict[str, list[Any]] = {}
    for node in graph.nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def fuse_relus(graph: Graph) -> dict[str, str]:
    """Conv outputs read only by a Relu, or a Clip of constant bounds: the Conv clamps as it stores
    and writes the Relu's (Clip's) output itself; the bounds go to ``graph.fused_clamp``."""
    readers = _readers(graph)
    fused = {}
    for node in graph.nodes:
        after = readers.get(node.output[0], [])
        if node.op_type != "Conv" or len(after) != 1 or len(graph.shapes[node.input[0]]) > 4 \
                or node.output[0] in graph.outputs or graph.dtype(node.output[0]) != np.float32:  # fmt: skip
            continue
        bounds = _clamp_bounds(graph, after[0])
        if bounds is not None:
            fused[node.output[0]] = after[0].output[0]
            graph.fused_clamp[node.output[0]] = bounds
    return fused


def _clamp_bounds(graph: Graph, node: Any) -> tuple[float, float] | None:
    """[lo, hi] of a Relu, or of a Clip whose bounds are constants; None for anything else."""
    if node.op_type == "Relu":
        return 0.0, math.inf
    if node.op_type != "Clip":
        return None
    a, found = attrs(node), []
    for k, key, default in ((1, "min", -math.inf), (2, "max", math.inf)):
        if len(node.input) > k and node.input[k]:
            if node.input[k] not in graph.consts:
                return None
            found.append(float(np.asarray(graph.consts[node.input[k]]).reshape(-1)[0]))
        else:
            found.append(float(a.get(key, default)))
    return found[0], found[1]


def c_bound(v: float) -> str:
    return "INFINITY" if v == math.inf else "-INFINITY" if v == -math.inf else c_float(v)


def _conv_mode(g: dict[str, Any]) -> str:
    """How a one-group Conv feeds the matrix product: ``direct`` (a 1x1 stride-1 unpadded conv:
    X already is the matrix), ``inplace`` or ``im2col``.

    ``inplace`` (stride 1 only) reads each window straight from a zero-padded copy of X, at the
    price of Wp - OW unused output columns per row for each of the M output channels; im2col
    instead writes C*KH*KW rows of OH*OW floats. An FMA per 8 floats runs about twice as fast
    as a store, so in place wins while M * (Wp - OW) <= 4 * OW: small channel counts, wide
    images (the first layers of a CNN)."""
    if g["k"] == [1, 1] and g["s"] == [1, 1] and not any(g["p"]):
        return "direct"
    if g["s"] != [1, 1] or g["k"][0] * g["k"][1] > 64:  # 64: PK_MAX_TAPS in kernels.c
        return "im2col"
    unused = (g["k"][1] - 1) * g["d"][1]
    return "inplace" if g["y"][1] * unused <= 4 * g["y"][3] else "im2col"


def fuse_pools(graph: Graph) -> dict[str, str]:
    """A 2x2 stride-2 MaxPool that alone reads a Conv computed in place (or its fused Relu): the
    Conv's last pass takes the max of each window as it adds the bias, and writes the pooled
    tensor (max and bias commute, as do max and Relu, so the values are the same)."""
    readers = _readers(graph)
    fused = {}
    for node in graph.nodes:
        if node.op_type != "Conv" or int(attrs(node).get("group", 1)) != 1 or len(graph.shapes[node.input[0]]) > 4:
            continue
        if _conv_mode(_spatial(graph, node)) != "inplace":
            continue
        tensor = graph.fused_relu.get(node.output[0], node.output[0])
        after = readers.get(tensor, [])
        if tensor in graph.outputs or len(after) != 1 or after[0].op_type != "MaxPool":
            continue
        pool, a = after[0], attrs(after[0])
        simple = (
            list(a.get("kernel_shape", [])) == [2, 2] and list(a.get("strides", [1, 1])) == [2, 2]
            and not any(a.get("pads", [0, 0, 0, 0])) and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID") and not int(a.get("ceil_mode", 0))
            and len([o for o in pool.output if o]) == 1
        )  # fmt: skip
        if simple:
            fused[tensor] = pool.output[0]
    return fused


def temp_floats(graph: Graph, node: Any) -> int:
    """Scratch floats a node needs while it runs: a one-group Conv's im2col matrix, or its padded
    image (plus the unused columns' tail) and its output rows at the padded width."""
    if node.op_type in REDUCE_EMITTERS:
        return reduce_scratch(graph, node)
    if node.op_type in RECURRENT_EMITTERS:
        return recurrent_scratch(graph, node)
    if node.op_type != "Conv" or len(graph.shapes[node.input[0]]) > 4:
        return 0
    g = _spatial(graph, node)
    if _rows_1x1(graph, node, g):  # the image and the output, each turned around unless held so (layout)
        positions = g["y"][2] * g["y"][3]
        image = 0 if node.input[0] in graph.turned else -(-g["x"][1] * positions // 16) * 16
        return int(image + (0 if graph.written(node.output[0]) in graph.turned else g["y"][1] * positions))
    if graph.written(node.output[0]) in graph.turned:  # a depthwise conv on channels-last tensors
        return 0
    if int(attrs(node).get("group", 1)) != 1:  # a depthwise conv's phase planes and its output at their width
        group, (kh, kw), (sh, sw), (dh, dw) = int(attrs(node)["group"]), g["k"], g["s"], g["d"]
        if group != g["x"][1] or group != g["y"][1] or sw > 2 or sh > 2 or kh * kw > 64:  # 64: PK_MAX_TAPS
            return 0
        hp, wp = (g["y"][2] - 1) * sh + (kh - 1) * dh + 1, (g["y"][3] - 1) * sw + (kw - 1) * dw + 1
        rq, wq = -(-hp // sh), -(-wp // sw)
        return int(sh * sw * (rq + 1) * wq + g["y"][2] * wq)
    mode = _conv_mode(g)
    channels, outs, oh, ow = int(g["x"][1]), int(g["y"][1]), int(g["y"][2]), int(g["y"][3])
    (kh, kw), (dh, dw) = g["k"], g["d"]
    if mode == "direct":
        return 0
    if mode == "im2col":
        return int(channels * kh * kw * oh * ow)
    hp, wp = oh + (kh - 1) * dh, ow + (kw - 1) * dw
    image = channels * hp * wp + (kw - 1) * dw
    return int(-(-image // 16) * 16 + outs * oh * wp)


def _pool(kind: int) -> Callable[[Graph, Any, Callable[[str], str]], str]:
    def emit(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
        if kind == 0 and graph.fused_pool.get(node.input[0]) == node.output[0]:
            return "/* fused into the Conv above */"
        if len(graph.shapes[node.input[0]]) not in (3, 4) or graph.dtype(node.input[0]) != np.float32:
            return window.pool(graph, node, ref)
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError("static-lib: MaxPool's Indices output is not supported")
        g = _spatial(graph, node)
        x, y, k, s, d, p = g["x"], g["y"], g["k"], g["s"], g["d"], g["p"]
        include = int(g["a"].get("count_include_pad", 0))
        call = (f"pk_pool2d({kind}, {{x}}, {{y}}, {x[1]}, {x[2]}, {x[3]}, {y[2]}, "
                f"{y[3]}, {k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, {d[0]}, {d[1]}, {include});")  # fmt: skip
        return _per_item(graph, node, ref, call)

    return emit


def _global_avg(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    return _per_item(graph, node, ref, f"pk_global_avg({{x}}, {{y}}, {x[1]}, {int(np.prod(x[2:]))});")


def _batchnorm(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    if int(attrs(node).get("training_mode", 0)) or any(node.output[1:]):
        raise UnsupportedOpError("static-lib: BatchNormalization in training mode (batch statistics, running "
                                 "means out) is not supported")  # fmt: skip
    eps = float(attrs(node).get("epsilon", 1e-5))
    args = ", ".join(ref(n) for n in node.input[1:5])
    call = f"pk_batchnorm({{x}}, {{y}}, {args}, {eps!r}f, {x[1]}, {int(np.prod(x[2:]))});"
    return _per_item(graph, node, ref, call)


def _transpose(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    perm = list(attrs(node).get("perm", list(range(len(x)))[::-1]))
    strides = [int(np.prod(x[i + 1 :])) for i in range(len(x))]
    out, steps = collapse([x[p] for p in perm], [strides[p] for p in perm])
    name = kernel("pk_transpose", graph.dtype(node.output[0]))
    return f"{name}({ref(node.input[0])}, {ref(node.output[0])}, {len(out)}, {_int_list(out)}, {_int_list(steps)});"


def _concat(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    y = graph.shapes[node.output[0]]
    axis = int(attrs(node)["axis"]) % len(y)
    parts = [n for n in node.input if n]
    sizes = [graph.shapes[n][axis] for n in parts]
    outer, inner = int(np.prod(y[:axis])), int(np.prod(y[axis + 1 :]))
    pointers = "(const void *[]){" + ", ".join(ref(n) for n in parts) + "}"
    return (f"pk_concat({pointers}, {_int_list(sizes)}, {len(parts)}, {ref(node.output[0])}, {outer}, {inner}, "
            f"{graph.dtype(node.output[0]).itemsize});")  # fmt: skip


EMITTERS: dict[str, Callable[[Graph, Any, Callable[[str], str]], str]] = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _binary(0), "Sub": _binary(1), "Mul": _binary(2), "Div": _binary(3),
    "Relu": _unary(0), "LeakyRelu": _unary(1), "Sigmoid": _unary(2), "Tanh": _unary(3), "Clip": _unary(4),
    "Neg": _unary(6), "HardSigmoid": _unary(7), "HardSwish": _unary(8), "PRelu": _binary(4),
    "Softmax": _softmax, "Conv": _conv, "MaxPool": _pool(0), "AveragePool": _pool(1),
    "GlobalAveragePool": _global_avg, "BatchNormalization": _batchnorm, "Transpose": _transpose,
    "Concat": _concat, "Flatten": _copy, "Reshape": _copy, "Identity": _copy, "Squeeze": _copy,
    "Unsqueeze": _copy, "Dropout": _dropout, "Pow": _binary(5), "Max": _binary(6), "Min": _binary(7),
    "Gelu": _math, **dict.fromkeys(MATH, _math), **REDUCE_EMITTERS, **INDEX_EMITTERS, **RESIZE_EMITTERS,
    "LogSoftmax": _softmax, "ConvTranspose": _conv_transpose, "LpPool": window.pool,
    "GlobalMaxPool": window.global_pool, "GlobalLpPool": window.global_pool, **RECURRENT_EMITTERS,
}  # fmt: skip
FLOAT_EMITTERS = dict(EMITTERS)  # the float32 kernels, which typed.py's emitters fall back on
EMITTERS.update({**TYPED_EMITTERS, **TYPED_OVERRIDES, **SELECT_EMITTERS, **SELECT_OVERRIDES})
# Ops whose emitters take tensors of any type (the others see float32 only, or refuse)
TYPED: set[str] = {"MaxPool", "GlobalMaxPool", "Transpose", "Concat", "Flatten", "Reshape", "Identity", "Squeeze",
                   "Unsqueeze", "Dropout",
                   *INDEX_EMITTERS, *TYPED_EMITTERS, *TYPED_OVERRIDES, *SELECT_EMITTERS, *SELECT_OVERRIDES,
                   *REDUCE, *RECURRENT_EMITTERS}  # fmt: skip
