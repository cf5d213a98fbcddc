"""Tensors of every element type the generator takes, and models of several inputs, compiled to C
and called through ``<prefix>_infer``: the values agree with onnxruntime on shapes, types and
data hypothesis draws (integers and bools exactly)."""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from packager import codegen
from packager.errors import UnsupportedOpError
from packager.runtimes.c import header_outputs

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTS = {"int64": TensorProto.INT64, "int32": TensorProto.INT32, "uint8": TensorProto.UINT8,
        "int8": TensorProto.INT8, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}  # fmt: skip


def compile_and_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], work: Path) -> dict[str, np.ndarray]:
    """Every output of ``model`` as the generated C computes it from ``feeds`` (one call)."""
    onnx.save(model, str(work / "m.onnx"))
    shapes = {name: list(x.shape) for name, x in feeds.items()}
    first = next(iter(feeds.values()))
    prepared = codegen.prepare(work / "m.onnx", work, batch=first.shape[0] if first.ndim else 1, shapes=shapes)
    source = codegen.generate(prepared, "k", {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})
    (work / "k.h").write_text(source.header)
    (work / "model.c").write_text(source.code)
    done = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wno-unused-function", "-Werror", "-fPIC", "-shared",
                           "-o", "libk.so", "model.c", "-lm"], cwd=work, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lib = ctypes.CDLL(str(work / "libk.so"))
    inputs, outputs = header_outputs("k", source.header, "INPUT"), header_outputs("k", source.header)
    given_ = [np.ascontiguousarray(feeds[name], dtype) for name, _, dtype in inputs]
    got = [np.zeros(max(size, 1), dtype) for _, size, dtype in outputs]
    assert lib.k_infer((ctypes.c_void_p * len(given_))(*[a.ctypes.data for a in given_]), ctypes.c_size_t(1),
                       (ctypes.c_void_p * len(got))(*[a.ctypes.data for a in got]), None) == 0  # fmt: skip
    return {name: array[:size] for (name, size, _), array in zip(outputs, got, strict=True)}


def check(nodes: list[Any], feeds: dict[str, np.ndarray], outputs: dict[str, int], opset: int = 17,
          inits: dict[str, np.ndarray] | None = None, atol: float = 1e-6) -> None:  # fmt: skip
    """The graph of ``nodes`` (inputs ``feeds``, ``outputs``: name -> elem type) run both ways."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
         for k, v in feeds.items()],
        [helper.make_tensor_value_info(k, t, None) for k, t in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    with tempfile.TemporaryDirectory() as tmp:
        got = compile_and_run(model, feeds, Path(tmp))
    for name, want in zip(outputs, expected, strict=True):
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got[name], want.reshape(-1).astype(got[name].dtype), err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want.reshape(-1), rtol=1e-5, atol=atol, err_msg=name)


def data(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("float"):
        return rng.uniform(-5, 5, shape).round(1).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -9), min(info.max, 9), shape, endpoint=True).astype(dtype)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _broadcast(shape: tuple[int, ...], draw_ones: list[bool]) -> tuple[int, ...]:
    """A shape that broadcasts to ``shape``: some dims 1, some leading dims dropped."""
    out = tuple(1 if one else d for d, one in zip(shape, draw_ones, strict=False)) + shape[len(draw_ones) :]
    return out[1:] if len(out) > 1 and draw_ones and draw_ones[0] else out


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Equal", "Less", "Greater",
                                "LessOrEqual", "GreaterOrEqual"])  # fmt: skip
@pytest.mark.parametrize("dtype", ["int64", "int32", "float64"])
@SETTINGS
@given(shape=shapes, ones=st.lists(st.booleans(), max_size=3), seed=st.integers(0, 2**16))
def test_binary_ops_of_every_type_broadcast_as_onnxruntime(op: str, dtype: str, shape: tuple[int, ...],
                                                           ones: list[bool], seed: int) -> None:  # fmt: skip
    if op == "Mod" and dtype == "float64":
        node = helper.make_node(op, ["a", "b"], ["y"], fmod=1)
    else:
        node = helper.make_node(op, ["a", "b"], ["y"])
    a, b = data(dtype, shape, seed), data(dtype, _broadcast(shape, ones), seed + 1)
    if op in ("Div", "Mod"):
        b[b == 0] = 3  # onnxruntime traps on an integer zero divisor; the library writes 0
    kind = TensorProto.BOOL if op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual") else INTS[dtype]
    check([node], {"a": a, "b": b}, {"y": kind}, opset=18)


@pytest.mark.parametrize(("source", "target"), [("float32", "int64"), ("int64", "float32"), ("float32", "uint8"),
                                                ("int32", "float64"), ("float64", "float32"), ("int64", "int32"),
                                                ("float32", "bool"), ("bool", "float32")])  # fmt: skip
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_cast_converts_as_onnxruntime(source: str, target: str, shape: tuple[int, ...], seed: int) -> None:
    x = data("int8", shape, seed).astype(bool) if source == "bool" else data(source, shape, seed)
    if target == "uint8":
        x = np.abs(x)  # a negative float to uint8 is undefined in C and in onnxruntime alike
    to = TensorProto.BOOL if target == "bool" else INTS[target]
    check([helper.make_node("Cast", ["x"], ["y"], to=to)], {"x": x}, {"y": to})


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_where_and_logic_on_bools(shape: tuple[int, ...], seed: int) -> None:
    a, b = data("float32", shape, seed), data("float32", shape, seed + 1)
    nodes = [helper.make_node("Greater", ["a", "b"], ["g"]), helper.make_node("Less", ["a", "zero"], ["n"]),
             helper.make_node("Xor", ["g", "n"], ["x"]), helper.make_node("Not", ["x"], ["nx"]),
             helper.make_node("And", ["g", "nx"], ["both"]),
             helper.make_node("Where", ["both", "a", "b"], ["y"])]  # fmt: skip
    check(nodes, {"a": a, "b": b}, {"y": TensorProto.FLOAT, "x": TensorProto.BOOL},
          inits={"zero": np.zeros(1, np.float32)})  # fmt: skip


@SETTINGS
@given(rows=st.integers(2, 30), width=st.integers(1, 8), tokens=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_gather_with_ids_at_run_time_reads_rows_of_a_table(rows: int, width: int, tokens: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows, width)).astype(np.float32)
    ids = rng.integers(-rows, rows, (1, tokens)).astype(np.int64)  # negative ids count from the end
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("ArgMax", ["e"], ["best"], axis=2),
             helper.make_node("GatherElements", ["e", "best"], ["top"], axis=2)]  # fmt: skip
    check(nodes, {"ids": ids}, {"e": TensorProto.FLOAT, "best": TensorProto.INT64, "top": TensorProto.FLOAT},
          inits={"table": table})  # fmt: skip


def test_an_id_out_of_range_reads_zeros_not_memory_outside_the_table(tmp_path: Path) -> None:
    table = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["e"])], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(table, "table")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got = compile_and_run(model, {"ids": np.array([[1, 4, -9]], np.int64)}, tmp_path)["e"]
    np.testing.assert_array_equal(got, [4, 5, 6, 0, 0, 0, 0, 0, 0])


def test_an_attention_mask_path_of_int64_computes_as_onnxruntime() -> None:
    """The shape arithmetic of an exported transformer (Shape, Gather of a dim, Unsqueeze, Concat,
    Reshape) folds away; the mask's Cast, Sub and Mul run on the int64 input."""
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 2, (2, 6)).astype(np.int64)
    nodes = [helper.make_node("Shape", ["mask"], ["s"]), helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]),
             helper.make_node("Concat", ["minus", "n1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["mask", "shape"], ["m2"]), helper.make_node("Cast", ["m2"], ["mf"], to=1),
             helper.make_node("Sub", ["onef", "mf"], ["inv"]),
             helper.make_node("Mul", ["inv", "big"], ["y"])]  # fmt: skip
    check(nodes, {"mask": mask}, {"y": TensorProto.FLOAT},
          inits={"one": np.array(1, np.int64), "zero": np.array([0], np.int64), "minus": np.array([-1], np.int64),
                 "onef": np.array(1, np.float32), "big": np.array(-10000.0, np.float32)})  # fmt: skip


def test_a_shape_that_depends_on_the_data_is_refused_with_the_tensor_named(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    prepared = codegen.prepare(tmp_path / "m.onnx", tmp_path, shapes={"x": [1, 4]})
    with pytest.raises(UnsupportedOpError, match="NonZero"):
        codegen.generate(prepared, "k", {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})


def test_a_type_it_lacks_is_refused_with_the_types_the_generator_takes(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E8M0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E8M0, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    prepared = codegen.prepare(tmp_path / "m.onnx", tmp_path, shapes={"x": [1, 4]})
    with pytest.raises(UnsupportedOpError, match=r"float8_e8m0fnu tensors are not supported.*int64"):
        codegen.generate(prepared, "k", {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})


def test_a_model_of_two_typed_inputs_has_infer_and_no_one_input_api(tmp_path: Path) -> None:
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=1), helper.make_node("Add", ["f", "x"], ["y"])]
    graph = helper.make_graph(nodes,
                              "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 3]),
                                    helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    meta = {"name": "k", "version": "1", "sha256": "-", "signature": "{}"}
    source = codegen.build_source(tmp_path / "m.onnx", tmp_path, "k", meta, {"ids": [1, 3], "x": [1, 3]})
    assert "#define K_INPUT0_SIZE 3 /* 'ids' int64 */" in source.header
    assert "#define K_INPUT1_SIZE 3 /* 'x' float32 */" in source.header
    assert "k_infer(const void *const *inputs" in source.header and "k_predict" not in source.header
    (tmp_path / "k.h").write_text(source.header)
    (tmp_path / "model.c").write_text(source.code)
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", "libk.so", "model.c", "-lm"], cwd=tmp_path,
                   check=True)  # fmt: skip
    from packager.runtimes.c import CRunner

    runner = CRunner(tmp_path / "libk.so", source.header, "k")
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    x = np.full((2, 3), 0.5, np.float32)
    np.testing.assert_allclose(runner.predict({"x": x, "ids": ids})["y"].reshape(2, 3), ids + 0.5)  # two samples
    with pytest.raises(KeyError, match="ids"):
        runner.predict({"x": x})


@pytest.mark.parametrize("kind", [TensorProto.FLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2])
@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 100.0, 1e5]))
def test_narrow_floats_round_as_onnxruntime(kind: int, shape: tuple[int, ...], seed: int, scale: float) -> None:
    """float32 -> float16 / float8 -> float32: the rounding (to nearest even), the saturation of
    what is past the largest value, the subnormals."""
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["n"], to=kind), helper.make_node("Cast", ["n"], ["y"], to=1)]
    check(nodes, {"x": x}, {"y": TensorProto.FLOAT}, opset=19)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool", "Conv"])
@SETTINGS
@given(size=st.integers(3, 6), kernel=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_three_d_windows_match_onnxruntime(op: str, size: int, kernel: int, stride: int, pad: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2, size, size + 1, size)).astype(np.float32)
    geometry = {"strides": [stride] * 3, "pads": [min(pad, kernel - 1)] * 6}  # a pool's pad is under its kernel
    inits = {}
    if op == "Conv":
        inits = {"w": rng.standard_normal((3, 2, kernel, kernel, kernel)).astype(np.float32),
                 "b": rng.standard_normal(3).astype(np.float32)}  # fmt: skip
        node = helper.make_node(op, ["x", "w", "b"], ["y"], **geometry)
    else:
        node = helper.make_node(op, ["x"], ["y"], kernel_shape=[kernel] * 3, **geometry)
    # sums of up to 54 products of magnitude ~1: float32's rounding of the sum, either side
    check([node], {"x": x}, {"y": TensorProto.FLOAT}, opset=18, inits=inits, atol=1e-5)


@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**16),
       largest=st.booleans())  # fmt: skip
def test_topk_cumsum_and_scatter_match_onnxruntime(shape: tuple[int, ...], seed: int, largest: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 4, shape).astype(np.float32)  # ties: TopK takes the lower index first
    axis = len(shape) - 1
    k = np.array([rng.integers(1, shape[axis] + 1)], np.int64)
    idx = rng.integers(-shape[axis], shape[axis], shape).astype(np.int64)
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=int(largest)),
             helper.make_node("CumSum", ["x", "axis"], ["c"], exclusive=1, reverse=1),
             helper.make_node("ScatterElements", ["x", "idx", "c"], ["s"], axis=axis, reduction="add")]  # fmt: skip
    check(nodes, {"x": x}, {"v": TensorProto.FLOAT, "i": TensorProto.INT64, "c": TensorProto.FLOAT,
                            "s": TensorProto.FLOAT},
          opset=18, inits={"k": k, "axis": np.array(axis, np.int64), "idx": idx})  # fmt: skip


def test_the_codecs_of_the_narrow_floats_round_as_numpy_and_ml_dtypes(tmp_path: Path) -> None:
    """pk_h2f on all 65,536 halves; pk_f2h, pk_f2bf and pk_to_f8 (unsaturated; the 4-bit float too)
    on random values, every midpoint (the ties go to the even code) and the subnormals, against
    numpy and ml_dtypes."""
    import ml_dtypes

    from packager.codegen import KERNELS
    from packager.codegen.graph import FLOAT8

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * s for s in (1e-7, 1e-4, 1e-2, 1, 100, 3e4)])
    halves = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    x_half = np.concatenate([x, ((halves[:-1] + halves[1:]) / 2).astype(np.float32)]).astype(np.float32)
    programs = ['FILE *o = fopen("h2f.bin", "wb"); for (unsigned h = 0; h < 65536; ++h) { float v = '
                'pk_h2f((pk_float16)h); fwrite(&v, 4, 1, o); } fclose(o);',
                f'run("half.bin", "f2h.bin", {x_half.size}, 0, 0, 0, 0, 0, 0, 0);',
                f'run("x.bin", "f2bf.bin", {x.size}, 0, 0, 0, 0, 0, 0, -1);']  # fmt: skip
    tables, expected = [], {}
    for k, (name, (top, nan, over, negative_zero, sign)) in enumerate(FLOAT8.items()):
        values = np.arange(top + 1, dtype=np.uint8).view(getattr(ml_dtypes, name)).astype(np.float64)
        ties = ((values[:-1] + values[1:]) / 2).astype(np.float32)
        xs = np.concatenate([x, ties, -ties]).astype(np.float32)
        xs = xs[np.abs(xs) <= values[-1]]
        xs.tofile(tmp_path / f"x{k}.bin")
        expected[k] = xs.astype(getattr(ml_dtypes, name)).view(np.uint8)
        tables.append(f"static const float pos{k}[] = {{{','.join(repr(float(v)) for v in values)}}};")
        flags = f"{top}, {nan}, {over}, {int(negative_zero)}, {sign}"
        programs.append(f'run("x{k}.bin", "y{k}.bin", {xs.size}, pos{k}, {flags}, 1);')
    x_half.tofile(tmp_path / "half.bin")
    x.tofile(tmp_path / "x.bin")
    (tmp_path / "t.c").write_text(KERNELS.read_text() + "\n#include <stdio.h>\n" + "\n".join(tables) + """
static void run(const char *in, const char *out, size_t n, const float *pos, int top, int nan, int over, int nz,
                int sign, int f8) {
    FILE *g = fopen(in, "rb"), *o = fopen(out, "wb");
    for (size_t i = 0; i < n; ++i) {
        float v;
        if (fread(&v, 4, 1, g) != 1) break;
        if (f8 > 0) { uint8_t c = pk_to_f8(v, pos, top, nan, over, 0, nz, sign); fwrite(&c, 1, 1, o); }
        else { pk_float16 h = f8 < 0 ? pk_f2bf(v) : pk_f2h(v); fwrite(&h, 2, 1, o); }
    }
    fclose(g);
    fclose(o);
}
int main(void) {
""" + "\n".join(programs) + "\nreturn 0;\n}\n")  # fmt: skip
    subprocess.run(["gcc", "-std=c99", "-O2", "-o", "t", "t.c", "-lm"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(["./t"], cwd=tmp_path, check=True)
    decoded = np.fromfile(tmp_path / "h2f.bin", np.float32)
    want = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(decoded[~np.isnan(want)], want[~np.isnan(want)])
    assert np.isnan(decoded[np.isnan(want)]).all()
    with np.errstate(over="ignore"):  # past 65504: infinity, as the library gives
        halved = x_half.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "f2h.bin", np.uint16), halved)
    rounded = np.fromfile(tmp_path / "f2bf.bin", np.uint16)
    np.testing.assert_array_equal(rounded, x.astype(ml_dtypes.bfloat16).view(np.uint16))
    for k, want_codes in expected.items():
        np.testing.assert_array_equal(np.fromfile(tmp_path / f"y{k}.bin", np.uint8), want_codes, err_msg=str(k))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@SETTINGS
@given(seq=st.integers(1, 5), batch=st.integers(1, 3), size=st.integers(1, 6), hidden=st.integers(1, 5),
       direction=st.sampled_from(["forward", "reverse", "bidirectional"]), seed=st.integers(0, 2**16))  # fmt: skip
def test_recurrent_layers_match_onnxruntime(op: str, seq: int, batch: int, size: int, hidden: int, direction: str,
                                            seed: int) -> None:  # fmt: skip
    # layout 0: onnxruntime has no batch-first recurrent layers (the node cases check layout 1)
    layout = 0
    rng = np.random.default_rng(seed)
    dirs, gates = (2 if direction == "bidirectional" else 1), {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    x = rng.standard_normal((batch, seq, size) if layout else (seq, batch, size)).astype(np.float32)
    lens = rng.integers(1, seq + 1, batch).astype(np.int32)  # sequences shorter than the longest: zeros past them
    inits = {"w": rng.standard_normal((dirs, gates * hidden, size)).astype(np.float32) * 0.5,
             "r": rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32) * 0.5,
             "b": rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32) * 0.5}  # fmt: skip
    extra = {"linear_before_reset": int(seed % 2)} if op == "GRU" else {}
    outputs = ["y", "yh", "yc"] if op == "LSTM" else ["y", "yh"]
    node = helper.make_node(op, ["x", "w", "r", "b", "lens"], outputs, hidden_size=hidden, direction=direction,
                            layout=layout, **extra)  # fmt: skip
    check([node], {"x": x, "lens": lens}, dict.fromkeys(outputs, TensorProto.FLOAT), opset=14, inits=inits)
