"""The generator proper: static shapes, arena plan, one C statement per node."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from packager.codegen.ml import ML_EMITTERS, Tables, ml_output_shapes
from packager.errors import UnsupportedOpError, first_line

ALIGN = 16  # floats: 64-byte aligned tensors in the arena


@dataclass
class CSource:
    """What generate() returns: the C file, its header, and facts about the model."""

    code: str
    header: str
    input_size: int
    output_size: int
    workspace_floats: int
    ops: dict[str, int] = field(default_factory=dict)


def prepare(src: Path, work: Path):  # -> onnx.ModelProto
    """Batch fixed to 1, constants folded and BatchNormalization fused by onnxruntime, shapes inferred."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and (dims[0].dim_param or dims[0].dim_value == 0):
            dims[0].Clear()
            dims[0].dim_value = 1
    del model.graph.value_info[:]
    fixed = work / "batch1.onnx"
    onnx.save(model, str(fixed))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(work / "folded.onnx")
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise UnsupportedOpError(
            f"static-lib: onnxruntime cannot load the model to fold its constants: {first_line(exc)}",
            hint="build the onnx target to see which op or type it refuses",
        ) from exc
    folded = onnx.load(str(work / "folded.onnx"))
    return onnx.shape_inference.infer_shapes(folded, strict_mode=True, data_prop=True)


class _Graph:
    """Shapes, constants and C names of every tensor of a prepared model."""

    def __init__(self, model: Any) -> None:
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
        self.tables: Tables = Tables("t")
        self.nodes = [n for n in graph.node if n.op_type != "Constant"]
        for node in self.nodes:  # onnx infers no shapes for some ai.onnx.ml ops
            if node.domain == "ai.onnx.ml" and node.input[0] in self.shapes:
                for name, shape in zip(node.output, ml_output_shapes(node, self.shapes[node.input[0]]), strict=False):
                    if name and (name not in self.shapes or 0 in self.shapes[name] or not self.shapes[name]):
                        self.shapes[name] = shape
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)

    def size(self, name: str) -> int:
        return int(np.prod(self.shapes[name])) if self.shapes[name] else 1


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def generate(model: Any, prefix: str, meta: dict[str, str]) -> CSource:
    """C99 source and header for a prepared model: one float input; float outputs, and int64
    label outputs of classifiers."""
    graph = _Graph(model)
    graph.tables = Tables(prefix)
    unsupported = sorted({n.op_type for n in graph.nodes if not _supported(n)})
    if unsupported:
        raise UnsupportedOpError(
            f"target 'static-lib' cannot take op(s) {', '.join(unsupported)}: packager's C generator does not "
            f"implement them (it does: {', '.join(sorted(SUPPORTED_OPS))})",
            hint="build the onnx, lambda-zip, tflite or ort-web targets for this model",
        )
    if len(graph.inputs) != 1 or not graph.main:
        raise UnsupportedOpError(
            f"target 'static-lib' takes models with one float input and at least one float output (this one has "
            f"{len(graph.inputs)} inputs and {len(graph.outputs) - len(graph.int_outputs)} float outputs)",
            hint="build the onnx or lambda-zip targets for this model",
        )
    _check_types(graph)
    offsets, planned = _plan(graph)
    scratch, arena = {}, planned
    for name in graph.outputs:  # room for the outputs predict() does not return
        if name != graph.main:
            scratch[name] = arena
            arena += -(-graph.size(name) * (2 if name in graph.int_outputs else 1) // ALIGN) * ALIGN
    weights, names = _weights(graph, prefix)
    outputs = {name: f"y{k}" for k, name in enumerate(graph.outputs)}

    def ref(name: str) -> str:
        if name in names:
            return names[name]
        if name == graph.inputs[0]:
            return "x"
        if name in outputs:
            return outputs[name]
        return f"(ws + {offsets[name]})"

    body = []
    ops: dict[str, int] = {}
    for node in graph.nodes:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        body.append(f"    /* {node.op_type} {node.name} */")
        body.append("    " + EMITTERS[node.op_type](graph, node, ref))
    code = _source(prefix, meta, graph, [*weights, *graph.tables.lines], body, arena, scratch)
    header = _header(prefix, meta, graph, arena)
    return CSource(code=code, header=header, input_size=graph.size(graph.inputs[0]),
                   output_size=graph.size(graph.main), workspace_floats=arena, ops=ops)  # fmt: skip


def _supported(node: Any) -> bool:
    if node.op_type in ML_EMITTERS:
        return node.domain == "ai.onnx.ml"
    return node.op_type in EMITTERS and node.domain in ("", "ai.onnx")


def _check_types(graph: _Graph) -> None:
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
                f"target 'static-lib' takes float32 inputs and outputs; '{value.name}' is not float32",
                hint="build the onnx or lambda-zip targets for this model",
            )
    for node in graph.nodes:
        for name in node.output:
            if name in graph.int_outputs and node.op_type not in ("TreeEnsembleClassifier", "LinearClassifier"):
                raise UnsupportedOpError(f"static-lib: the int64 output '{name}' comes from {node.op_type}; only "
                                         "classifier labels may be int64")  # fmt: skip
        for name in node.input:
            if name in graph.int_outputs:
                raise UnsupportedOpError(f"static-lib: {node.op_type} reads the int64 tensor '{name}'")


def _plan(graph: _Graph) -> tuple[dict[str, int], int]:
    """First-fit offsets for intermediate tensors, freed after their last reader."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.input:
            last[name] = i
    skip = set(graph.consts) | set(graph.inputs) | set(graph.outputs)
    free: list[tuple[int, int]] = []  # (offset, size)
    offsets: dict[str, int] = {}
    top = 0
    live: dict[str, tuple[int, int]] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.output:
            if name in skip or not name:
                continue
            size = -(-graph.size(name) // ALIGN) * ALIGN
            slot = next((j for j, (_, s) in enumerate(free) if s >= size), None)
            if slot is None:
                offsets[name], top = top, top + size
            else:
                offset, s = free.pop(slot)
                offsets[name] = offset
                if s > size:
                    free.append((offset + size, s - size))
            live[name] = (offsets[name], size)
        for name in {n for n in node.input if n in live and last.get(n) == i}:
            free.append(live.pop(name))
            free.sort()
    return offsets, max(top, ALIGN)


def _weights(graph: _Graph, prefix: str) -> tuple[list[str], dict[str, str]]:
    lines, names = [], {}
    used = {n for node in graph.nodes for n in node.input}
    for i, (name, value) in enumerate(graph.consts.items()):
        if name not in used or value.dtype.kind != "f":
            continue
        cname = f"w{i}_{re.sub(r'[^A-Za-z0-9_]', '_', name)[-40:]}"
        names[name] = cname
        flat = value.astype(np.float32).reshape(-1)
        numbers = ",".join(f"{v:.9g}" for v in flat.tolist()) if flat.size else "0"
        lines.append(f"static const float {cname}[{max(flat.size, 1)}] = {{{numbers}}};")
    return lines, names


def _int_list(values: list[int] | tuple[int, ...]) -> str:
    return "(const int[]){" + ",".join(str(int(v)) for v in values) + "}"


def _gemm(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    a = _attrs(node)
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    sa, sb = graph.shapes[node.input[0]], graph.shapes[node.input[1]]
    m, k = (sa[1], sa[0]) if ta else (sa[0], sa[1])
    n = sb[0] if tb else sb[1]
    c_kind, c = 0, "0"
    if len(node.input) > 2 and node.input[2]:
        sc = graph.shapes[node.input[2]]
        size = int(np.prod(sc)) if sc else 1
        c_kind = 3 if size == 1 else (2 if size == m * n and m > 1 else (4 if len(sc) == 2 and sc[1] == 1 else 1))
        c = ref(node.input[2])
    return (f"pk_gemm({ref(node.input[0])}, {ref(node.input[1])}, {c}, {ref(node.output[0])}, {m}, {n}, {k}, "
            f"{ta}, {tb}, {a.get('alpha', 1.0)!r}f, {a.get('beta', 1.0)!r}f, {c_kind});")  # fmt: skip


def _matmul(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    sa, sb = graph.shapes[node.input[0]], graph.shapes[node.input[1]]
    if len(sb) != 2:
        raise UnsupportedOpError(f"static-lib: MatMul with a {len(sb)}-D right operand is not supported")
    m = int(np.prod(sa[:-1])) if len(sa) > 1 else 1
    return (f"pk_gemm({ref(node.input[0])}, {ref(node.input[1])}, 0, {ref(node.output[0])}, {m}, {sb[1]}, "
            f"{sb[0]}, 0, 0, 1.0f, 0.0f, 0);")  # fmt: skip


def _binary(code: int) -> Callable[[_Graph, Any, Callable[[str], str]], str]:
    def emit(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
        out = graph.shapes[node.output[0]]
        strides = [_broadcast_strides(graph.shapes[name], out) for name in node.input[:2]]
        shape = list(out) or [1]
        a_strides, b_strides = _int_list(strides[0]), _int_list(strides[1])
        return (f"pk_binary({code}, {ref(node.input[0])}, {ref(node.input[1])}, {ref(node.output[0])}, "
                f"{len(shape)}, {_int_list(shape)}, {a_strides}, {b_strides});")  # fmt: skip

    return emit


def _broadcast_strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    padded = [1] * (len(out) - len(shape)) + list(shape)
    strides, step = [0] * len(out), 1
    for d in range(len(out) - 1, -1, -1):
        strides[d] = 0 if padded[d] == 1 and out[d] != 1 else step
        step *= padded[d]
    return strides or [1]


def _unary(code: int) -> Callable[[_Graph, Any, Callable[[str], str]], str]:
    def emit(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
        a = _attrs(node)
        p0, p1 = float(a.get("alpha", 0.01)), 0.0
        if node.op_type == "Clip":
            lo = graph.consts[node.input[1]] if len(node.input) > 1 and node.input[1] else a.get("min", -3.4e38)
            hi = graph.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else a.get("max", 3.4e38)
            p0, p1 = float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0])
        return (f"pk_unary({code}, {ref(node.input[0])}, {ref(node.output[0])}, {graph.size(node.output[0])}, "
                f"{p0!r}f, {p1!r}f);")  # fmt: skip

    return emit


def _copy(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    return f"memcpy({ref(node.output[0])}, {ref(node.input[0])}, {graph.size(node.output[0])} * sizeof(float));"


def _softmax(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    shape = graph.shapes[node.input[0]]
    axis = int(_attrs(node).get("axis", -1 if graph.opset >= 13 else 1)) % len(shape)
    if graph.opset < 13 and axis != len(shape) - 1:
        raise UnsupportedOpError("static-lib: Softmax before opset 13 over a non-last axis is not supported")
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1 :]))
    return f"pk_softmax({ref(node.input[0])}, {ref(node.output[0])}, {outer}, {shape[axis]}, {inner});"


def _spatial(graph: _Graph, node: Any) -> dict[str, Any]:
    a = _attrs(node)
    x, y = graph.shapes[node.input[0]], graph.shapes[node.output[0]]
    if len(x) != 4:
        raise UnsupportedOpError(f"static-lib: {node.op_type} on a {len(x)}-D tensor (only 2-D NCHW) is not supported")
    kernel = list(a.get("kernel_shape") or graph.shapes[node.input[1]][2:])
    strides, dil = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max((y[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - x[2 + i], 0) for i in range(2)]
        first = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        pads = [first[0], first[1], total[0] - first[0], total[1] - first[1]]
    return {"x": x, "y": y, "k": kernel, "s": strides, "d": dil, "p": pads, "a": a}


def _per_item(graph: _Graph, node: Any, ref: Callable[[str], str], call: str) -> str:
    """NCHW kernels take one item; a static leading dimension above 1 becomes a loop over items.
    ``call`` uses {x} and {y} for the item's input and output pointers."""
    items = graph.shapes[node.input[0]][0]
    x_step = graph.size(node.input[0]) // items
    y_step = graph.size(node.output[0]) // items
    if items == 1:
        return call.format(x=ref(node.input[0]), y=ref(node.output[0]))
    inner = call.format(x=f"{ref(node.input[0])} + n * {x_step}", y=f"{ref(node.output[0])} + n * {y_step}")
    return f"for (int n = 0; n < {items}; ++n) {inner}"


def _conv(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    g = _spatial(graph, node)
    x, y, k, s, d, p = g["x"], g["y"], g["k"], g["s"], g["d"], g["p"]
    bias = ref(node.input[2]) if len(node.input) > 2 and node.input[2] else "0"
    call = (f"pk_conv2d({{x}}, {ref(node.input[1])}, {bias}, {{y}}, {x[1]}, {x[2]}, "
            f"{x[3]}, {y[1]}, {y[2]}, {y[3]}, {k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, {d[0]}, {d[1]}, "
            f"{int(g['a'].get('group', 1))});")  # fmt: skip
    return _per_item(graph, node, ref, call)


def _pool(kind: int) -> Callable[[_Graph, Any, Callable[[str], str]], str]:
    def emit(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
        g = _spatial(graph, node)
        x, y, k, s, d, p = g["x"], g["y"], g["k"], g["s"], g["d"], g["p"]
        include = int(g["a"].get("count_include_pad", 0))
        call = (f"pk_pool2d({kind}, {{x}}, {{y}}, {x[1]}, {x[2]}, {x[3]}, {y[2]}, "
                f"{y[3]}, {k[0]}, {k[1]}, {p[0]}, {p[1]}, {s[0]}, {s[1]}, {d[0]}, {d[1]}, {include});")  # fmt: skip
        return _per_item(graph, node, ref, call)

    return emit


def _global_avg(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    return _per_item(graph, node, ref, f"pk_global_avg({{x}}, {{y}}, {x[1]}, {int(np.prod(x[2:]))});")


def _batchnorm(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    eps = float(_attrs(node).get("epsilon", 1e-5))
    args = ", ".join(ref(n) for n in node.input[1:5])
    call = f"pk_batchnorm({{x}}, {{y}}, {args}, {eps!r}f, {x[1]}, {int(np.prod(x[2:]))});"
    return _per_item(graph, node, ref, call)


def _transpose(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    x = graph.shapes[node.input[0]]
    perm = list(_attrs(node).get("perm", list(range(len(x)))[::-1]))
    strides = [int(np.prod(x[i + 1 :])) for i in range(len(x))]
    out = [x[p] for p in perm]
    return (f"pk_transpose({ref(node.input[0])}, {ref(node.output[0])}, {len(x)}, {_int_list(out)}, "
            f"{_int_list([strides[p] for p in perm])});")  # fmt: skip


def _concat(graph: _Graph, node: Any, ref: Callable[[str], str]) -> str:
    y = graph.shapes[node.output[0]]
    axis = int(_attrs(node)["axis"]) % len(y)
    parts = [n for n in node.input if n]
    sizes = [graph.shapes[n][axis] for n in parts]
    outer, inner = int(np.prod(y[:axis])), int(np.prod(y[axis + 1 :]))
    pointers = "(const float *[]){" + ", ".join(ref(n) for n in parts) + "}"
    return f"pk_concat({pointers}, {_int_list(sizes)}, {len(parts)}, {ref(node.output[0])}, {outer}, {inner});"


EMITTERS: dict[str, Callable[[_Graph, Any, Callable[[str], str]], str]] = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _binary(0), "Sub": _binary(1), "Mul": _binary(2), "Div": _binary(3),
    "Relu": _unary(0), "LeakyRelu": _unary(1), "Sigmoid": _unary(2), "Tanh": _unary(3), "Clip": _unary(4),
    "Softmax": _softmax, "Conv": _conv, "MaxPool": _pool(0), "AveragePool": _pool(1),
    "GlobalAveragePool": _global_avg, "BatchNormalization": _batchnorm, "Transpose": _transpose,
    "Concat": _concat, "Flatten": _copy, "Reshape": _copy, "Identity": _copy, "Squeeze": _copy,
    "Unsqueeze": _copy, "Dropout": _copy,
}  # fmt: skip


def _ml(emit: Callable[..., str]) -> Callable[[_Graph, Any, Callable[[str], str]], str]:
    return lambda graph, node, ref: emit(graph, node, ref, _attrs(node), graph.tables)


EMITTERS.update({op: _ml(emit) for op, emit in ML_EMITTERS.items()})
SUPPORTED_OPS = frozenset(EMITTERS)


def _c_type(graph: _Graph, name: str) -> str:
    return "int64_t" if name in graph.int_outputs else "float"


def _source(prefix: str, meta: dict[str, str], graph: _Graph, tables: list[str], body: list[str], arena: int,
            scratch: dict[str, int]) -> str:  # fmt: skip
    from packager.codegen import KERNELS

    isz, osz = graph.size(graph.inputs[0]), graph.size(graph.main)
    params = ", ".join(f"{_c_type(graph, n)} *restrict y{k}" for k, n in enumerate(graph.outputs))
    one = [f"(float *)(out + b * {osz})" if n == graph.main else f"({_c_type(graph, n)} *)(workspace + {scratch[n]})"
           for n in graph.outputs]  # fmt: skip
    run = [f"({_c_type(graph, n)} *)outputs[{k}] + b * {graph.size(n)}" for k, n in enumerate(graph.outputs)]
    checks = " || ".join(f"!outputs[{k}]" for k in range(len(graph.outputs)))
    return "\n".join([
        f"/* {meta['name']} {meta['version']}: generated by packager from model sha256 {meta['sha256']}.",
        " * Plain C99; needs only libc and libm. */",
        f'#include "{prefix}.h"',
        KERNELS.read_text(),
        *tables,
        f"static float {prefix}_arena[{arena}] __attribute__((aligned(64)));",
        f"const char {prefix}_model_sha256[] = \"{meta['sha256']}\";",
        f"const char *{prefix}_name(void) {{ return \"{meta['name']}\"; }}",
        f"const char *{prefix}_version(void) {{ return \"{meta['version']}\"; }}",
        f"const char *{prefix}_signature(void) {{ return \"{meta['signature']}\"; }}",
        f"size_t {prefix}_workspace_size(void) {{ return {arena} * sizeof(float); }}",
        f"static void {prefix}_one(const float *restrict x, float *restrict ws, {params}) {{",
        *body,
        "}",
        f"int {prefix}_predict_with(const float *in, size_t batch, float *out, float *workspace) {{",
        "    if (!in || !out || !workspace) return -1;",
        f"    for (size_t b = 0; b < batch; ++b) {prefix}_one(in + b * {isz}, workspace, {', '.join(one)});",
        "    return 0;",
        "}",
        f"int {prefix}_predict(const float *in, size_t batch, float *out) {{",
        f"    return {prefix}_predict_with(in, batch, out, {prefix}_arena);",
        "}",
        f"int {prefix}_run(const float *in, size_t batch, void *const *outputs, float *workspace) {{",
        f"    if (!in || !outputs || {checks}) return -1;",
        f"    if (!workspace) workspace = {prefix}_arena;",
        f"    for (size_t b = 0; b < batch; ++b) {prefix}_one(in + b * {isz}, workspace, {', '.join(run)});",
        "    return 0;",
        "}",
        "",
    ])  # fmt: skip


def _header(prefix: str, meta: dict[str, str], graph: _Graph, arena: int) -> str:
    up = prefix.upper()
    shape_in = ", ".join(map(str, graph.shapes[graph.inputs[0]][1:]))
    shape_out = ", ".join(map(str, graph.shapes[graph.main][1:]))
    described = "\n".join(
        f"#define {up}_OUTPUT{k}_SIZE {graph.size(n)} /* '{n}' {'int64' if n in graph.int_outputs else 'float32'} */"
        for k, n in enumerate(graph.outputs)
    )
    return f"""/* {meta["name"]} {meta["version"]} compiled by packager: float32 in, row-major. */
#ifndef {up}_H
#define {up}_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif

/* One sample: input '{graph.inputs[0]}' [{shape_in}]; predict() returns output '{graph.main}' [{shape_out}]. */
#define {up}_INPUT_SIZE {graph.size(graph.inputs[0])}
#define {up}_OUTPUT_SIZE {graph.size(graph.main)}

/* Runs `batch` samples: in holds batch * {up}_INPUT_SIZE floats, out gets batch * {up}_OUTPUT_SIZE.
   Uses a static workspace: not reentrant. Returns 0, or -1 for a NULL pointer. */
int {prefix}_predict(const float *in, size_t batch, float *out);
/* The same with a caller's workspace of {prefix}_workspace_size() bytes: reentrant. */
int {prefix}_predict_with(const float *in, size_t batch, float *out, float *workspace);
size_t {prefix}_workspace_size(void);

/* Every output, in this order (per sample; int64 outputs are class labels): */
#define {up}_OUTPUTS {len(graph.outputs)}
{described}
/* outputs[k] holds batch * {up}_OUTPUTk_SIZE values of its type; workspace may be NULL (static, not reentrant). */
int {prefix}_run(const float *in, size_t batch, void *const *outputs, float *workspace);

const char *{prefix}_name(void);
const char *{prefix}_version(void);
const char *{prefix}_signature(void); /* JSON: inputs and outputs with dtype and shape */
extern const char {prefix}_model_sha256[];

#ifdef __cplusplus
}}
#endif
#endif
"""
