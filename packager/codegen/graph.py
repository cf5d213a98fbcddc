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
# The element types a library computes on: numpy's name -> the C type of kernels.c (bool is one
# byte, 0 or 1). All but float are typedefs with GCC's may_alias: the arena is a float array, and
# a tensor of another type in it must not be reordered around the float ones by type-based alias
# analysis.
C_TYPES = {"float32": "float", "float64": "pk_float64", "int64": "pk_int64", "int32": "pk_int32",
           "int16": "pk_int16", "int8": "pk_int8", "uint64": "pk_uint64", "uint32": "pk_uint32",
           "uint16": "pk_uint16", "uint8": "pk_uint8", "bool": "pk_uint8", "float16": "pk_float16"}  # fmt: skip
HALF = "float16"  # held as its 16 bits; computed on as float (pk_h2f, and pk_f2h rounding to nearest even)
BFLOAT = "bfloat16"  # held as its 16 bits (pk_bf2f; pk_f2bf rounds to nearest even)
# The 8- and 4-bit floats, one byte each, computed on as float: the largest finite code, the NaN
# code, the code an overflow becomes without saturation, whether the format has a negative zero
# (the fnuz ones do not: their 0x80 is NaN), and the sign bit. Decoded through a table of every
# code's value, encoded by pk_to_f8.
FLOAT8 = {"float8_e4m3fn": (126, 0x7F, 0x7F, True, 0x80), "float8_e4m3fnuz": (127, 0x80, 0x80, False, 0x80),
          "float8_e5m2": (123, 0x7E, 0x7C, True, 0x80), "float8_e5m2fnuz": (127, 0x80, 0x80, False, 0x80),
          "float4_e2m1fn": (7, 0x8, 0x7, True, 0x8)}  # fmt: skip
# The 4- and 2-bit integers, one byte each holding the low bits (as ml_dtypes keeps them), computed
# on as int: bits, signed. A cast to one wraps, as ONNX's does.
PACKED = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}
C_TYPES.update({**dict.fromkeys([*FLOAT8, *PACKED], "pk_uint8"), BFLOAT: "pk_uint16"})


def prepare(src: Path, work: Path, batch: int = 1, shapes: Mapping[str, list[int]] | None = None):
    """The model at ``batch`` with every other dim fixed (``shapes``: one sample's input shapes;
    without them only a symbolic first dim is fixed), constants folded and BatchNormalization
    fused by onnxruntime, shapes inferred."""
    import onnx

    from packager import shapes as fixed_shapes
    from packager.codegen.emit import SUPPORTED_OPS

    model = expand_functions(onnx.load(str(src)), SUPPORTED_OPS)
    given = shapes
    shapes = {}
    for value in model.graph.input:  # a symbolic first dim is the batch, whatever the sample's shapes say
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [batch if i == 0 and (d.dim_param or not d.dim_value) else d.dim_value or 1
                              for i, d in enumerate(dims)]  # fmt: skip
        if given is not None and value.name in given:
            shapes[value.name] = [batch if i == 0 and dims and dims[0].dim_param else v
                                  for i, v in enumerate(given[value.name])]  # fmt: skip
        if dims and dims[0].dim_param:
            dims[0].dim_param = BATCH
    work.mkdir(parents=True, exist_ok=True)
    try:
        path = fixed_shapes.folded(model, shapes, work / f"folded{batch}.onnx", batch)
    except UnsupportedOpError as exc:
        # onnxruntime only folds constants here; where it cannot load the model (an op or opset it
        # lacks), ONNX's reference folds them, and the generator still needs every op it meets
        try:
            return fold_static(model)
        except Exception:  # onnx's inference errors: onnxruntime's refusal says more
            raise UnsupportedOpError(f"static-lib: {exc.message}", hint="build the onnx target to see which op or "
                                     "type onnxruntime refuses") from exc  # fmt: skip
    return fold_static(onnx.load(str(path)))


EXPANDED = "packager.expanded"  # the domain of the functions expand_functions inlines


def expand_functions(model: Any, supported: frozenset[str]) -> Any:
    """Each node of an op the generator lacks that ONNX defines as a function of other ops
    (Attention, RMSNormalization, GroupNormalization, ...) replaced by the function's body for the
    node's attributes and input types, as ONNX's own expanded test cases are made. A body with
    control flow (Range's Loop) is left out; ``model`` comes back as it was where inlining fails."""
    import onnx
    from onnx import FunctionProto, defs, helper, inliner

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).graph
    except Exception:  # types unknown: nothing is expanded, onnxruntime says what is wrong
        return model
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    types = {v.name: v.type for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    for t in inferred.initializer:
        types[t.name] = helper.make_tensor_type_proto(t.data_type, list(t.dims))
    work = onnx.ModelProto()
    work.CopyFrom(model)
    functions = []
    for k, node in enumerate(work.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in supported or node.op_type == "Constant":
            continue
        body = _function_body(node, opset, types, defs)
        if body is None:
            continue
        function = FunctionProto()
        function.ParseFromString(body)
        if any(n.op_type in ("Loop", "Scan") for n in function.node):  # Range's body: a Loop
            continue
        function.name, function.domain = f"{node.op_type}_{k}", EXPANDED
        functions.append(function)
        node.op_type, node.domain = function.name, EXPANDED
    if not functions:
        return model
    work.functions.extend(functions)
    work.opset_import.append(helper.make_opsetid(EXPANDED, 1))
    try:
        expanded = inliner.inline_local_functions(work)
    except Exception:  # a body the inliner cannot take: the ops stay, and are refused
        return model
    if any(n.domain == EXPANDED for n in expanded.graph.node):
        return model
    del expanded.opset_import[:]
    expanded.opset_import.extend(model.opset_import)
    return expanded


def _function_body(node: Any, opset: int, types: Mapping[str, Any], defs: Any) -> bytes | None:
    """The serialized FunctionProto of ``node``'s op at ``opset``; None where it has none."""
    from onnx import TypeProto

    try:
        schema = defs.get_schema(node.op_type, opset, "")
    except Exception:
        return None
    plain = [v for v in schema.function_opset_versions if v <= opset]
    context = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    try:
        if context:
            inputs = [(types[n] if n else TypeProto()).SerializeToString() for n in node.input]
            found = schema.get_context_dependent_function_with_opset_version(max(context), node.SerializeToString(),
                                                                              inputs)  # fmt: skip
            return found or None
        if plain:
            return schema.get_function_with_opset_version(max(plain)) or None
    except Exception:
        return None
    return None


def fold_static(model: Any, rounds: int = 8) -> Any:
    """Shapes inferred, then the nodes whose outputs are known before any input is become
    constants: Shape and Size of tensors whose shapes are fixed, and nodes of constants only that
    onnxruntime left (ONNX's reference implementation computes them), and an If whose condition
    is a constant becomes the nodes of its branch; again while that fixes more shapes (a Reshape
    to a shape computed from Shape nodes)."""
    import onnx
    from onnx import numpy_helper

    for _ in range(rounds):
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        graph = model.graph
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        consts.update({n.output[0]: _constant_value(n) for n in graph.node if n.op_type == "Constant"})
        static, value_types = {}, {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            value_types[value.name] = value.type.tensor_type.elem_type
            dims = value.type.tensor_type.shape.dim
            if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                static[value.name] = [d.dim_value for d in dims]
        kept, folded, inlined = [], [], False
        for k, node in enumerate(graph.node):
            found = None
            if node.domain in ("", "ai.onnx") and node.op_type == "If" and node.input[0] in consts:
                branch = _branch(node, bool(np.asarray(consts[node.input[0]]).reshape(-1)[0]), f"if{k}_")
                if branch is not None:
                    nodes, initializers = branch
                    kept.extend(nodes)
                    graph.initializer.extend(initializers)
                    inlined = True
                    continue
            if node.domain in ("", "ai.onnx") and node.op_type in ("Shape", "Size") and node.input[0] in static:
                dims = static[node.input[0]]
                if node.op_type == "Size":
                    found = [np.asarray(int(np.prod(dims)) if dims else 1, np.int64)]
                else:
                    a = attrs(node)
                    end = a.get("end")
                    found = [np.asarray(dims[int(a.get("start", 0)) : None if end is None else int(end)], np.int64)]
            elif node.domain in ("", "ai.onnx") and node.op_type == "EyeLike" and node.input[0] in static:
                found = [_eye_like(node, static[node.input[0]], value_types.get(node.input[0]))]
            elif node.op_type != "Constant" and _foldable(node, consts):
                found = _evaluate(node, consts, model.opset_import)
            if found is None:
                kept.append(node)
                continue
            for name, value in zip(node.output, found, strict=False):
                if name:
                    consts[name] = np.asarray(value)
                    folded.append(numpy_helper.from_array(np.asarray(value), name))
        if not folded and not inlined:
            return model
        names = {t.name for t in folded}
        del graph.node[:]
        graph.node.extend(kept)
        used = {n for node in kept for n in node.input} | {o.name for o in graph.output}
        kept_init = [t for t in [*graph.initializer, *folded] if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept_init)
        kept_info = [v for v in graph.value_info if v.name not in names]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
    return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def c_type(dtype: np.dtype) -> str:
    """The C type holding ``dtype``; UnsupportedOpError for one the generator does not compute on."""
    name = np.dtype(dtype).name
    if name not in C_TYPES:
        raise UnsupportedOpError(f"static-lib: {name} tensors are not supported (it computes on "
                                 f"{', '.join(C_TYPES)})")  # fmt: skip
    return C_TYPES[name]


def kernel(name: str, dtype: np.dtype) -> str:
    """The kernel of kernels.c that PK_TYPED defined for ``dtype`` (bool is held as uint8)."""
    found = np.dtype(dtype).name
    c_type(np.dtype(dtype))
    if found in (BFLOAT, HALF):
        return f"{name}_float16"  # 16 bits either way
    held = "uint8" if found == "bool" or found in FLOAT8 or found in PACKED else found
    return name if found == "float32" else f"{name}_{held}"


def c_value(value: Any, dtype: np.dtype) -> str:
    """One value of ``dtype`` as a C literal of that type."""
    kind = np.dtype(dtype).kind
    if np.dtype(dtype).name == HALF:  # the bits
        return str(int(np.asarray(value, np.float16).view(np.uint16)))
    if np.dtype(dtype).name in (*FLOAT8, *PACKED):
        return str(int(np.asarray(value, dtype).view(np.uint8)))
    if np.dtype(dtype).name == BFLOAT:
        return str(int(np.asarray(value, dtype).view(np.uint16)))
    if kind == "b":
        return "1" if bool(value) else "0"
    if kind == "f":
        if np.dtype(dtype) == np.float32:
            return c_float(float(value))
        v = float(value)
        return "NAN" if v != v else ("INFINITY" if v == float("inf") else "-INFINITY" if v == float("-inf")
                                     else f"{v:.17g}")  # fmt: skip
    v = int(value)
    if kind == "u":
        return f"{v}u" + ("ll" if np.dtype(dtype).itemsize == 8 else "")
    if np.dtype(dtype).itemsize == 8:
        return f"INT64_C({v})" if v != -(2**63) else "INT64_MIN"
    return str(v) if v != -(2**31) else "INT32_MIN"


def c_float(value: float) -> str:
    """A float32 as a C initializer: ``%.9g`` (exact), or the math.h macro of an infinity or NaN."""
    if value != value:
        return "NAN"
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "-INFINITY"
    return f"{value:.9g}"


class Weights:
    """Constants as ``static const`` arrays of their C type (float32 unless given another), one
    per distinct content and type."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, str] = {}

    def add(self, value: np.ndarray, hint: str, dtype: Any = np.float32, aligned: bool = False) -> str:
        """The C name of a constant's array; ``aligned``: on a 64-byte boundary (packed panels)."""
        flat = np.ascontiguousarray(value, dtype).reshape(-1)
        if flat.dtype.name == HALF:
            flat = flat.view(np.uint16)  # the bits, in a pk_float16 array
            dtype = np.float16
        elif flat.dtype.name in (*FLOAT8, *PACKED):
            flat = flat.view(np.uint8)  # the bits
        elif flat.dtype.name == BFLOAT:
            flat = flat.view(np.uint16)
        key = hashlib.sha256(flat.tobytes()).hexdigest() + str(flat.size) + np.dtype(dtype).name
        if key not in self.names:
            cname = f"w{len(self.names)}_{re.sub(r'[^A-Za-z0-9_]', '_', hint)[-40:]}"
            if flat.dtype == np.float32:
                numbers = ",".join(c_float(v) for v in flat.tolist()) if flat.size else "0"
            else:
                numbers = ",".join(c_value(v, flat.dtype) for v in flat.tolist()) if flat.size else "0"
            align = " __attribute__((aligned(64)))" if aligned else ""
            self.lines.append(f"static const {c_type(np.dtype(dtype))} {cname}[{max(flat.size, 1)}]{align} = "
                              f"{{{numbers}}};")  # fmt: skip
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
                self.consts[node.output[0]] = _constant_value(node)
        self.shapes: dict[str, tuple[int, ...]] = {k: tuple(v.shape) for k, v in self.consts.items()}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            dims = value.type.tensor_type.shape.dim
            if value.name not in self.shapes and value.type.tensor_type.HasField("shape"):  # -1: a dim not inferred
                self.shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        self.dtypes: dict[str, np.dtype] = {k: v.dtype for k, v in self.consts.items()}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            if value.name not in self.dtypes and value.type.tensor_type.elem_type:
                self.dtypes[value.name] = _np_dtype(value.type.tensor_type.elem_type)
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in graph.output]
        floats = [name for name in self.outputs if self.dtype(name) == np.float32]
        self.main = floats[-1] if floats else ""
        self.shared = shared
        self.scratch = "0"  # C expression for the running node's scratch (set while emitting)
        self.fused_relu: dict[str, str] = {}  # Conv output -> the Relu (or Clip) output it writes instead
        self.fused_clamp: dict[str, tuple[float, float]] = {}  # Conv output -> that Relu's or Clip's bounds
        self.fused_pool: dict[str, str] = {}  # Conv (or fused Relu) output -> the MaxPool output it writes
        self.fused_bias: dict[str, tuple[str, str]] = {}  # MatMul output -> (the Add output it writes, bias)
        self.turned: set[str] = set()  # 4-D tensors held channels-last, [N, H, W, C] (codegen.layout)
        self.tables = shared.tables
        self.weights = shared.weights
        self.nodes = [n for n in graph.node if n.op_type != "Constant"]
        for node in self.nodes:  # onnx infers no shapes for some ai.onnx.ml ops
            if node.domain == "ai.onnx.ml" and node.input[0] in self.shapes:
                for name, shape in zip(node.output, ml_output_shapes(node, self.shapes[node.input[0]]), strict=False):
                    if name and (name not in self.shapes or -1 in self.shapes[name] or not self.shapes[name]):
                        self.shapes[name] = shape
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)

    def written(self, name: str) -> str:
        """The tensor a node producing ``name`` really writes, once fusions are applied."""
        name = self.fused_bias[name][0] if name in self.fused_bias else name
        name = self.fused_relu.get(name, name)
        return self.fused_pool.get(name, name)

    def size(self, name: str) -> int:
        return int(np.prod(self.shapes[name])) if self.shapes[name] else 1

    def dtype(self, name: str) -> np.dtype:
        """A tensor's element type (float32 where shape inference left none: ai.onnx.ml outputs)."""
        return np.dtype(self.dtypes.get(name, np.float32))

    def ctype(self, name: str) -> str:
        return c_type(self.dtype(name))

    def value_type(self, name: str) -> str:
        """The C type a tensor's values are computed in: float for float16, bfloat16 and the 8-
        and 4-bit floats, int for the 4- and 2-bit integers, else its own."""
        found = self.dtype(name).name
        if found in (HALF, BFLOAT, *FLOAT8):
            return "float"
        return "int" if found in PACKED else self.ctype(name)

    def load(self, name: str, element: str) -> str:
        """C reading one element of ``name`` (the expression ``element``) as a value_type."""
        found = self.dtype(name).name
        if found == HALF:
            return f"pk_h2f({element})"
        if found == BFLOAT:
            return f"pk_bf2f({element})"
        if found in FLOAT8:
            codes = 16 if FLOAT8[found][4] == 0x8 else 256
            table = np.arange(codes, dtype=np.uint8).view(self.dtype(name)).astype(np.float32)
            return f"{self.weights.add(table, found + '_values')}[{element}]"
        if found in PACKED:
            bits, signed = PACKED[found]
            half = 1 << (bits - 1)
            return f"(((int)({element}) ^ {half}) - {half})" if signed else f"(int)({element})"
        return element

    def store(self, name: str, value: str, saturate: bool = True) -> str:
        """C converting ``value`` (of value_type) to an element of ``name``'s type."""
        found = self.dtype(name).name
        if found == HALF:
            return f"pk_f2h({value})"
        if found == BFLOAT:
            return f"pk_f2bf({value})"
        if found in FLOAT8:
            top, nan, over, negative_zero, sign = FLOAT8[found]
            table = np.arange(top + 1, dtype=np.uint8).view(self.dtype(name)).astype(np.float32)
            positive = self.weights.add(table, found + "_positive")
            return (f"pk_to_f8((float)({value}), {positive}, {top}, {nan}, {over}, {int(saturate)}, "
                    f"{int(negative_zero)}, {sign})")  # fmt: skip
        if found in PACKED:
            return f"(pk_uint8)((int64_t)({value}) & {(1 << PACKED[found][0]) - 1})"
        return value

    def floats(self, name: str) -> int:
        """Arena floats (4 bytes each) a tensor takes, whatever its type."""
        return -(-self.size(name) * self.dtype(name).itemsize // 4)


FOLD_LIMIT = 1 << 20  # values: a constant larger than this is computed at run time instead


def _branch(node: Any, which: bool, prefix: str) -> tuple[list[Any], list[Any]] | None:
    """The nodes and initializers of an If's chosen branch, the names it makes prefixed (they may
    repeat the outer graph's), its outputs passed to the If's through Identity; None for a branch
    with subgraphs of its own."""
    from onnx import helper

    branch = next(a.g for a in node.attribute if a.name == ("then_branch" if which else "else_branch"))
    if any(a.g.node or a.graphs for n in branch.node for a in n.attribute):
        return None
    made = {o for n in branch.node for o in n.output if o} | {t.name for t in branch.initializer}

    def named(name: str) -> str:
        return prefix + name if name in made else name

    nodes = []
    for n in branch.node:
        copy = helper.make_node(n.op_type, [named(i) for i in n.input], [named(o) for o in n.output],
                                name=prefix + n.name, domain=n.domain)  # fmt: skip
        copy.attribute.extend(n.attribute)
        nodes.append(copy)
    nodes += [helper.make_node("Identity", [named(o.name)], [out], name=f"{prefix}out{i}")
              for i, (o, out) in enumerate(zip(branch.output, node.output, strict=True))]  # fmt: skip
    initializers = []
    for t in branch.initializer:
        copy = type(t)()
        copy.CopyFrom(t)
        copy.name = named(t.name)
        initializers.append(copy)
    return nodes, initializers


def _eye_like(node: Any, dims: list[int], elem_type: int | None) -> np.ndarray:
    """EyeLike's output: ones on the k-th diagonal of a 2-D shape, of the ``dtype`` attribute's
    type or the input's."""
    a = attrs(node)
    found = int(a.get("dtype", elem_type or 1))
    if len(dims) != 2:
        raise UnsupportedOpError("static-lib: EyeLike takes a 2-D input")
    return np.eye(dims[0], dims[1], k=int(a.get("k", 0))).astype(_np_dtype(found))


def _constant_value(node: Any) -> np.ndarray:
    from onnx import numpy_helper

    a = attrs(node)
    if "value" in a:
        return numpy_helper.to_array(node.attribute[0].t)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):  # fmt: skip
        if key in a:
            return np.asarray(a[key], dtype)
    raise UnsupportedOpError(f"static-lib: a Constant of {', '.join(a)} is not supported")


def _foldable(node: Any, consts: Mapping[str, np.ndarray]) -> bool:
    names = [n for n in node.input if n]
    return (node.domain in ("", "ai.onnx") and bool(names) and all(n in consts for n in names)
            and not node.op_type.startswith("Random") and node.op_type not in ("Bernoulli", "Multinomial")
            and not any(a.g.node or a.graphs for a in node.attribute))  # fmt: skip


def _evaluate(node: Any, consts: Mapping[str, np.ndarray], opsets: Any) -> list[np.ndarray] | None:
    """``node``'s outputs by ONNX's reference implementation; None where it fails or they grow
    past FOLD_LIMIT."""
    from onnx import helper, reference

    names = [n for n in node.input if n]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(consts[n].dtype), consts[n].shape)
              for n in names]  # fmt: skip
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    try:
        model = helper.make_model(graph, opset_imports=list(opsets))
        found = reference.ReferenceEvaluator(model).run(None, {n: consts[n] for n in names})
    except Exception:
        return None
    if any(np.asarray(v).size > FOLD_LIMIT or np.asarray(v).dtype.kind not in "fiub" for v in found):
        return None
    return [np.asarray(v) for v in found]


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype(object)


def text(value: Any, default: str) -> str:
    """A string attribute's value (ONNX gives bytes), or ``default`` where it is absent."""
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # ops that only rename a tensor's values


def plan(graph: Graph, temps: dict[int, int]) -> tuple[dict[str, int], dict[int, int], int]:
    """First-fit offsets for intermediate tensors, freed after their last reader, and for the
    scratch a node needs while it runs (``temps``: node index -> floats). A view (Reshape...) of
    an intermediate it is the last to read takes that tensor's memory: no copy."""
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
        source = node.input[0] if node.input else ""
        if node.op_type in VIEWS and source in live and last.get(source) == i and node.output[0] not in skip \
                and graph.written(node.output[0]) == node.output[0] and len(node.output) == 1:  # fmt: skip
            offsets[node.output[0]] = offsets[source]  # the same values in a new shape: shares the memory
            live[node.output[0]] = live.pop(source)
            continue
        for name in [graph.written(n) for n in node.output]:
            if name in skip or not name or name in offsets:
                continue
            size = -(-graph.floats(name) // ALIGN) * ALIGN
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
