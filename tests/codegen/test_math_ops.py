"""Elementwise math, Pow/Max/Min, the Reduce family and LayerNormalization compiled to C agree
with onnxruntime on shapes, axes and values hypothesis draws."""

from __future__ import annotations

import ctypes
import math
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

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# op -> (opset, the domain of its input values)
UNARY = {"Abs": (13, "any"), "Exp": (13, "any"), "Log": (13, "positive"), "Sqrt": (13, "positive"),
         "Erf": (13, "any"), "Softplus": (13, "any"), "Softsign": (13, "any"), "Ceil": (13, "any"),
         "Floor": (13, "any"), "Round": (13, "any"), "Reciprocal": (13, "positive"), "Sin": (13, "any"),
         "Cos": (13, "any"), "Elu": (13, "any"), "Selu": (13, "any"), "Celu": (13, "any"),
         "ThresholdedRelu": (13, "any"), "Sign": (13, "any"), "Mish": (18, "any"), "Tan": (13, "unit"),
         "Asin": (13, "unit"), "Acos": (13, "unit"), "Atan": (13, "any"), "Sinh": (13, "unit"),
         "Cosh": (13, "unit"), "Asinh": (13, "any"), "Acosh": (13, "above_one"), "Atanh": (13, "unit"),
         "Gelu": (20, "any")}  # fmt: skip
REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")  # fmt: skip


def run_both(node: Any, x: np.ndarray, out_shape: list[int] | None, opset: int,
             consts: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``node`` (input "x", output "y") run by the generated C and by onnxruntime."""
    inits = [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with tempfile.TemporaryDirectory() as tmp:
        return _compiled(model, x, Path(tmp)), expected[0].reshape(-1)


def _reference(node: Any, x: np.ndarray, out_shape: list[int], opset: int, consts: dict[str, np.ndarray]) -> np.ndarray:
    """``node`` run by ONNX's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return np.asarray(ReferenceEvaluator(model).run(None, {"x": x})[0]).reshape(-1)


def _compiled(model: onnx.ModelProto, x: np.ndarray, work: Path) -> np.ndarray:
    """The output of ``model`` (input "x") as the generated C computes it."""
    onnx.save(model, str(work / "m.onnx"))
    prepared = codegen.prepare(work / "m.onnx", work, batch=x.shape[0], shapes={"x": list(x.shape)})
    source = codegen.generate(prepared, "k", {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})
    (work / "k.h").write_text(source.header)
    (work / "model.c").write_text(source.code)
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", "libk.so", "model.c", "-lm"], cwd=work,
                   check=True, capture_output=True)  # fmt: skip
    lib = ctypes.CDLL(str(work / "libk.so"))
    y = np.zeros(source.output_size, np.float32)
    lib.k_predict(ctypes.c_void_p(np.ascontiguousarray(x).ctypes.data), ctypes.c_size_t(1),
                  ctypes.c_void_p(y.ctypes.data))  # fmt: skip
    return y


def values(domain: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low, high = {"any": (-4, 4), "positive": (0.05, 6), "unit": (-0.95, 0.95), "above_one": (1.01, 6)}[domain]
    x = rng.uniform(low, high, shape).astype(np.float32)
    if domain == "any":  # the ties and the edges: zeros, halves (Round), values at a threshold
        x.reshape(-1)[:: max(1, x.size // 5)] = rng.choice(
            [0.0, 0.5, -2.5, 1.0], size=x.reshape(-1)[:: max(1, x.size // 5)].size
        )
    return x


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@pytest.mark.parametrize("op", sorted(UNARY))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_unary_math_matches_onnxruntime(op: str, shape: tuple[int, ...], seed: int) -> None:
    opset, domain = UNARY[op]
    attrs: dict[str, Any] = {"approximate": "tanh"} if op == "Gelu" and seed % 2 else {}
    if op in ("Elu", "Celu", "ThresholdedRelu") and seed % 3 == 0:
        attrs["alpha"] = 0.7
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    x = values(domain, shape, seed)
    got, want = run_both(node, x, list(shape), opset)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=op)


@SETTINGS
@given(op=st.sampled_from(["Pow", "Max", "Min"]), shape=shapes, seed=st.integers(0, 2**16), broadcast=st.booleans())
def test_binary_math_matches_onnxruntime(op: str, shape: tuple[int, ...], seed: int, broadcast: bool) -> None:
    rng = np.random.default_rng(seed)
    x = values("positive" if op == "Pow" else "any", shape, seed)
    other_shape = shape[-1:] if broadcast else shape
    b = rng.uniform(-2, 2, other_shape).astype(np.float32)
    node = helper.make_node(op, ["x", "b"], ["y"])
    got, want = run_both(node, x, list(shape), 13, {"b": b})
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=op)


@SETTINGS
@given(op=st.sampled_from(REDUCE), shape=shapes, seed=st.integers(0, 2**16), keepdims=st.booleans(),
       data=st.data())  # fmt: skip
def test_reductions_match_onnxruntime(op: str, shape: tuple[int, ...], seed: int, keepdims: bool,
                                      data: st.DataObject) -> None:  # fmt: skip
    axes = sorted(data.draw(st.sets(st.integers(-len(shape), len(shape) - 1), max_size=len(shape)), label="axes"))
    axes = sorted({a % len(shape) for a in axes})
    x = values("positive" if op in ("ReduceLogSum", "ReduceProd") else "any", shape, seed)
    if op == "ReduceProd":
        x = (0.5 + x / 4).astype(np.float32)  # near 1: a product of many stays in range
    reduced = axes or list(range(len(shape)))
    out = [1 if d in reduced else n for d, n in enumerate(shape)] if keepdims else \
        [n for d, n in enumerate(shape) if d not in reduced]  # fmt: skip
    consts = {"axes": np.asarray(axes, np.int64)} if axes else {}
    node = helper.make_node(op, ["x", "axes"] if axes else ["x"], ["y"], keepdims=int(keepdims))
    got, want = run_both(node, x, out, 18, consts)
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=5e-5, err_msg=f"{op} {shape} axes {axes}")


@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple), seed=st.integers(0, 2**16),
       data=st.data(), bias=st.booleans())  # fmt: skip
def test_layer_normalization_matches_onnxruntime(shape: tuple[int, ...], seed: int, data: st.DataObject,
                                                 bias: bool) -> None:  # fmt: skip
    axis = data.draw(st.integers(1, len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    consts = {"scale": rng.uniform(0.5, 2, shape[axis:]).astype(np.float32)}
    if bias:
        consts["bias"] = rng.uniform(-1, 1, shape[axis:]).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "scale", *(["bias"] if bias else [])], ["y"], axis=axis,
                            epsilon=1e-5)  # fmt: skip
    got, want = run_both(node, x, list(shape), 17, consts)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), data=st.data())
def test_slice_matches_onnxruntime(shape: tuple[int, ...], seed: int, data: st.DataObject) -> None:
    axes = sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1), label="axes"))
    starts = [data.draw(st.integers(-7, 7), label="start") for _ in axes]
    ends = [data.draw(st.sampled_from([-9, -2, 0, 1, 3, 9, 2**62]), label="end") for _ in axes]
    steps = [data.draw(st.sampled_from([-2, -1, 1, 2, 3]), label="step") for _ in axes]
    x = values("any", shape, seed)
    consts = {n: np.asarray(v, np.int64) for n, v in (("starts", starts), ("ends", ends), ("axes", axes),
                                                       ("steps", steps))}  # fmt: skip
    probe = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    out = list(_onnxruntime_shape(probe, x, consts, 13))
    if 0 in out:
        return  # an empty slice: nothing to compare
    got, want = run_both(probe, x, out, 13, consts)
    np.testing.assert_array_equal(got, want)


def _onnxruntime_shape(node: Any, x: np.ndarray, consts: dict[str, np.ndarray], opset: int) -> tuple[int, ...]:
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(session.run(None, {"x": x})[0].shape)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), mode=st.sampled_from(["constant", "edge", "reflect", "wrap"]),
       data=st.data())  # fmt: skip
def test_pad_matches_onnxruntime(shape: tuple[int, ...], seed: int, mode: str, data: st.DataObject) -> None:
    low = 0 if mode in ("reflect", "wrap") else -1
    pads = [data.draw(st.integers(low, 3 if mode != "reflect" else max(0, n - 1)), label="pad")
            for n in [*shape, *shape]]  # fmt: skip
    pads = [max(p, -n + 1) for p, n in zip(pads, [*shape, *shape], strict=True)]
    x = values("any", shape, seed)
    consts = {"pads": np.asarray(pads, np.int64), "value": np.asarray(1.5, np.float32)}
    node = helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)
    out = [n + pads[d] + pads[d + len(shape)] for d, n in enumerate(shape)]
    if min(out) <= 0:
        return
    got, want = run_both(node, x, out, 19, consts)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**16), data=st.data())
def test_expand_tile_and_gather_match_onnxruntime(shape: tuple[int, ...], seed: int, data: st.DataObject) -> None:
    x = values("any", shape, seed)
    target = [data.draw(st.sampled_from([n, 3]) if n == 1 else st.just(n), label="dim") for n in shape]
    node = helper.make_node("Expand", ["x", "shape"], ["y"])
    got, want = run_both(node, x, target, 13, {"shape": np.asarray(target, np.int64)})
    np.testing.assert_array_equal(got, want)
    repeats = [data.draw(st.integers(1, 3), label="repeat") for _ in shape]
    got, want = run_both(helper.make_node("Tile", ["x", "repeats"], ["y"]), x,
                         [n * r for n, r in zip(shape, repeats, strict=True)], 13,
                         {"repeats": np.asarray(repeats, np.int64)})  # fmt: skip
    np.testing.assert_array_equal(got, want)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    indices = np.asarray(data.draw(st.lists(st.integers(-shape[axis], shape[axis] - 1), min_size=1, max_size=4),
                                   label="indices"), np.int64)  # fmt: skip
    out = [*shape[:axis], len(indices), *shape[axis + 1 :]]
    got, want = run_both(helper.make_node("Gather", ["x", "indices"], ["y"], axis=axis), x, out, 13,
                         {"indices": indices})  # fmt: skip
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(shape=st.lists(st.integers(2, 6), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**16),
       data=st.data())  # fmt: skip
def test_split_and_log_softmax_match_onnxruntime(shape: tuple[int, ...], seed: int, data: st.DataObject) -> None:
    x = values("any", shape, seed)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    first = data.draw(st.integers(1, shape[axis] - 1), label="first")
    split = np.asarray([first, shape[axis] - first], np.int64)
    nodes = [helper.make_node("Split", ["x", "split"], ["a", "b"], axis=axis),
             helper.make_node("Concat", ["b", "a"], ["c"], axis=axis),
             helper.make_node("LogSoftmax", ["c"], ["y"], axis=axis)]  # fmt: skip
    inits = [numpy_helper.from_array(split, "split")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with tempfile.TemporaryDirectory() as tmp:
        got = _compiled(model, x, Path(tmp))
    np.testing.assert_allclose(got, want.reshape(-1), rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), seed=st.integers(0, 2**16),
       mode=st.sampled_from(["nearest", "linear", "cubic"]),
       coord=st.sampled_from(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]),
       nearest=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
       by_sizes=st.booleans(), data=st.data())  # fmt: skip
def test_resize_matches_onnxruntime(hw: tuple[int, int], seed: int, mode: str, coord: str, nearest: str,
                                    by_sizes: bool, data: st.DataObject) -> None:  # fmt: skip
    x = values("any", (1, 2, *hw), seed)
    # With scales whose product with a length is not whole, align_corners and pytorch_half_pixel
    # take the unrounded resized length in ONNX's reference (and in the library), the rounded one
    # in onnxruntime: compared on sizes, where the two agree (the node cases cover the scales).
    if by_sizes or coord in ("align_corners", "pytorch_half_pixel"):
        by_sizes = True
        out = [1, 2, data.draw(st.integers(1, 12), label="h"), data.draw(st.integers(1, 12), label="w")]
        consts = {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32),
                  "sizes": np.asarray(out, np.int64)}  # fmt: skip
    else:
        scales = [data.draw(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 3.0]), label="scale") for _ in hw]
        out = [1, 2, *(max(1, math.floor(n * s)) for n, s in zip(hw, scales, strict=True))]
        if 0 in out or any(n * s < 1 for n, s in zip(hw, scales, strict=True)):
            return
        consts = {"roi": np.zeros(0, np.float32), "scales": np.asarray([1, 1, *scales], np.float32)}
    inputs = ["x", "roi", "scales", "sizes"] if by_sizes else ["x", "roi", "scales"]
    node = helper.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)  # fmt: skip
    got, want = run_both(node, x, out, 13, consts)
    # onnxruntime finds a nearest pixel in float32, ONNX's reference in double: at a coordinate
    # that lands on a rounding boundary (7 rows to 9, pytorch_half_pixel, floor) they pick
    # different pixels, and the library follows the reference
    reference = _reference(node, x, out, 13, consts)
    if not np.allclose(reference, want, rtol=1e-4, atol=1e-4):
        want = reference
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{mode} {coord} {nearest} {out}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hw=st.tuples(st.integers(1, 5), st.integers(1, 5)), seed=st.integers(0, 2**16), group=st.sampled_from([1, 2]),
       k=st.integers(1, 3), stride=st.integers(1, 3), dilation=st.integers(1, 2), pad=st.integers(0, 1),
       extra=st.integers(0, 1), bias=st.booleans(), one_d=st.booleans())  # fmt: skip
def test_conv_transpose_matches_onnxruntime(hw: tuple[int, int], seed: int, group: int, k: int, stride: int,
                                            dilation: int, pad: int, extra: int, bias: bool,
                                            one_d: bool) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    spatial = 1 if one_d else 2
    extra = min(extra, stride - 1)  # output_padding must be below the stride
    x = rng.standard_normal((1, 2 * group, *hw[:spatial])).astype(np.float32)
    consts = {"w": rng.standard_normal((2 * group, 3, *[k] * spatial)).astype(np.float32)}
    if bias:
        consts["b"] = rng.standard_normal(3 * group).astype(np.float32)
    out = [1, 3 * group, *[stride * (n - 1) + extra + (k - 1) * dilation + 1 - 2 * pad for n in hw[:spatial]]]
    if min(out) <= 0:
        return
    node = helper.make_node("ConvTranspose", ["x", "w", *(["b"] if bias else [])], ["y"], group=group,
                            strides=[stride] * spatial, dilations=[dilation] * spatial, pads=[pad] * (2 * spatial),
                            output_padding=[extra] * spatial)  # fmt: skip
    got, want = run_both(node, x, out, 13, consts)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(
    batch_a=st.lists(st.integers(1, 3), max_size=2),
    batch_b=st.lists(st.integers(1, 3), max_size=2),
    mkn=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**16),
)
def test_batched_matmul_matches_onnxruntime(batch_a: list[int], batch_b: list[int], mkn: tuple[int, int, int],
                                            seed: int) -> None:  # fmt: skip
    m, k, n = mkn
    batch_b = batch_b if len(batch_b) >= 1 else [2]  # at least one batch dim on the right: the N-D path
    try:
        batch = list(np.broadcast_shapes(tuple(batch_a), tuple(batch_b)))
    except ValueError:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch_a, m, k)).astype(np.float32) if batch_a else \
        rng.standard_normal((m, k)).astype(np.float32)  # fmt: skip
    b = rng.standard_normal((*batch_b, k, n)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "b"], ["y"])
    got, want = run_both(node, x, [*batch, m, n], 13, {"b": b})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["Erf", "Gelu"])
def test_erf_is_within_its_stated_bound_everywhere(op: str) -> None:
    # The vectorised erf (kernels.c, pk_erf) on 400,001 points of [-6, 6] and the special values,
    # against erf in float64: within 4.3e-7 (Erf); Gelu within 5e-7 (the same and the rounding of 1 + erf)
    # times |x| / 2.
    x = np.concatenate([np.linspace(-6, 6, 400_001, dtype=np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, 1e-30, -1e-30], np.float32)])  # fmt: skip
    node = helper.make_node(op, ["x"], ["y"])
    model = helper.make_model(
        helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        ),
        opset_imports=[helper.make_opsetid("", 20)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        got = _compiled(model, x, Path(tmp)).astype(np.float64)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    if op == "Gelu":
        exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) if np.isfinite(v) else (v if v > 0 else 0.0)
                          for v in x.astype(np.float64)])  # fmt: skip
        finite = np.isfinite(x)
        bound = 5e-7 * np.abs(x[finite]) / 2 + 1e-6 * np.abs(exact[finite]) + 1e-30
        bad = np.abs(got[finite] - exact[finite]) > bound
        assert not bad.any(), (x[finite][bad][:5], got[finite][bad][:5], exact[finite][bad][:5])
        return
    assert np.abs(got - exact).max() <= 4.3e-7
    assert got[-4] == 1.0 and got[-3] == -1.0 and np.all(got[x == 0.0] == 0.0)
