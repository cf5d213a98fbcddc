"""Channels-last ("turned") tensors on small images (packager.codegen.layout): which tensors are
held turned, and that the 1x1 convs, depthwise convs and Adds that read and write them agree with
onnxruntime on every kernel path."""

from __future__ import annotations

import ctypes
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from packager import codegen
from packager.codegen import layout
from packager.codegen.emit import fuse_pools, fuse_relus
from packager.codegen.graph import Graph, Shared, prepare

FLAGS = [("-O2",), ("-O2", "-DPK_NARROW"), ("-O2", "-DPK_PLAIN_C")]
FLAG_IDS = ["dispatch", "16-byte", "plain-c"]


def _conv(x: str, w: np.ndarray, y: str, **kw: Any) -> tuple[Any, list[Any]]:
    name = f"w_{y}"
    return helper.make_node("Conv", [x, name, f"b_{y}"], [y], **kw), [
        numpy_helper.from_array(w, name),
        numpy_helper.from_array(np.linspace(-0.5, 0.5, w.shape[0]).astype(np.float32), f"b_{y}"),
    ]


def _block_model(c: int, h: int, w: int, stride: int, seed: int) -> onnx.ModelProto:
    """An inverted-residual pair as MobileNetV2 has them on a small image: 1x1 expand (Clip 0..6),
    depthwise 3x3 (Relu), 1x1 project; twice, the second added to the first's output; then a 1x1
    conv to the output (NCHW again), and a global pool beside it, which reads NCHW only."""
    rng = np.random.default_rng(seed)
    wide, narrow = 96, 64

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    nodes, inits = [], [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi"))]
    for node, found in (
        _conv("x", weights(wide, c, 1, 1), "e1"),
        _conv("r1", weights(wide, 1, 3, 3), "d1", group=wide, pads=[1, 1, 1, 1], strides=[stride, stride]),
        _conv("r2", weights(narrow, wide, 1, 1), "p1"),
        _conv("p1", weights(wide, narrow, 1, 1), "e2"),
        _conv("r3", weights(wide, 1, 3, 3), "d2", group=wide, pads=[1, 1, 1, 1]),
        _conv("d2", weights(narrow, wide, 1, 1), "p2"),
        _conv("a", weights(80, narrow, 1, 1), "y"),
    ):
        nodes.append(node)
        inits += found
    nodes[1:1] = [helper.make_node("Clip", ["e1", "lo", "hi"], ["r1"])]
    nodes[3:3] = [helper.make_node("Relu", ["d1"], ["r2"])]
    nodes[5:5] = [helper.make_node("Clip", ["e2", "lo", "hi"], ["r3"])]
    nodes += [helper.make_node("Add", ["p1", "p2"], ["a"]), helper.make_node("GlobalAveragePool", ["e1"], ["g"])]
    order = ["e1", "r1", "d1", "r2", "p1", "e2", "r3", "d2", "p2", "a", "y", "g"]
    nodes.sort(key=lambda n: order.index(n.output[0]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("g", TensorProto.FLOAT, None)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def compile_and_compare(
    model: onnx.ModelProto, x: np.ndarray, tmp: Path, flags: tuple[str, ...]
) -> tuple[list[np.ndarray], str]:
    onnx.save(model, str(tmp / "m.onnx"))
    source = codegen.build_source(tmp / "m.onnx", tmp, "k", {"name": "k", "version": "1", "sha256": "-",
                                                             "signature": "{}"})  # fmt: skip
    (tmp / "k.h").write_text(source.header)
    (tmp / "model.c").write_text(source.code)
    subprocess.run(["gcc", "-std=c99", *flags, "-fPIC", "-shared", "-o", "libk.so", "model.c", "-lm"],
                   cwd=tmp, check=True, capture_output=True)  # fmt: skip
    lib = ctypes.CDLL(str(tmp / "libk.so"))
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    outs = [np.zeros(e.shape, np.float32) for e in expected]
    pointers = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
    given_ = (ctypes.c_void_p * 1)(x.ctypes.data)
    assert lib.k_infer(given_, ctypes.c_size_t(len(x)), pointers, None) == 0
    for ours, theirs in zip(outs, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    return outs, source.code


def test_turn_holds_the_small_image_region_channels_last(tmp_path: Path) -> None:
    model = _block_model(16, 6, 6, 1, 0)
    onnx.save(model, str(tmp_path / "m.onnx"))
    graph = Graph(prepare(tmp_path / "m.onnx", tmp_path), Shared("k"))
    graph.fused_relu = fuse_relus(graph)
    graph.fused_pool = fuse_pools(graph)
    # e1 is read by its Clip and by the global pool (NCHW only), so it stays NCHW, and the Clip's
    # output r1 and the first depthwise conv's with it; from p1 on, up to y (a model output), turned
    assert layout.turn(graph) == {"p1", "r3", "d2", "p2", "a"}


@pytest.mark.parametrize("flags", FLAGS, ids=FLAG_IDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_turned_blocks_match_onnxruntime_on_every_path(flags: tuple[str, ...], stride: int, tmp_path: Path) -> None:
    # 7x5 positions (odd, not square): the depthwise kernels' edges; two items, so each kernel
    # runs per item at its offset
    model = _block_model(16, 7, 5, stride, stride)
    x = np.random.default_rng(stride).standard_normal((2, 16, 7, 5)).astype(np.float32)
    _, code = compile_and_compare(model, x, tmp_path, flags)
    body = code.split("static void k_one")[-1]
    assert body.count("pk_depthwise_turned(") == 1  # d2; d1 reads r1, which the pool needs as NCHW
    assert body.count("pk_conv2d(") == 1
    # (input turned, output turned) of each 1x1 conv: e1 (read by the pool), p1, e2, p2, y (an output)
    rows = re.findall(r"pk_conv1x1_rows\([^;]*, (\d), (\d)\);", body)
    assert rows == [("0", "0"), ("0", "1"), ("1", "1"), ("1", "1"), ("1", "0")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])  # fmt: skip
@given(channels=st.sampled_from([64, 70, 96, 130]), h=st.integers(1, 9), w=st.integers(1, 24),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 2)] * 4), dilation=st.integers(1, 2),
       activation=st.sampled_from(["", "Relu"]), seed=st.integers(0, 99))  # fmt: skip
def test_turned_depthwise_convs_match_onnxruntime(channels: int, h: int, w: int, kernel: tuple[int, int],
                                                  stride: int, pads: tuple[int, int, int, int], dilation: int,
                                                  activation: str, seed: int, tmp_path: Path) -> None:  # fmt: skip
    # a 1x1 conv writes the depthwise conv's input turned, another reads its output turned: any
    # kernel size, stride, padding and dilation, channel counts off a multiple of 16; rows wide
    # enough for four positions with every tap inside (summed together), and the edges
    assume((kernel[0] - 1) * dilation + 1 <= h + pads[0] + pads[2])
    assume((kernel[1] - 1) * dilation + 1 <= w + pads[1] + pads[3])
    rng = np.random.default_rng(seed)
    expand, found1 = _conv("x", rng.standard_normal((channels, 8, 1, 1)).astype(np.float32), "e")
    depthwise, found2 = _conv("e", rng.standard_normal((channels, 1, *kernel)).astype(np.float32),
                              "d" if activation else "r", group=channels, pads=list(pads),
                              strides=[stride, stride], dilations=[dilation, dilation])  # fmt: skip
    project, found3 = _conv("r", rng.standard_normal((64, channels, 1, 1)).astype(np.float32), "y")
    nodes = [expand, depthwise, *([helper.make_node(activation, ["d"], ["r"])] if activation else []), project]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [*found1, *found2, *found3])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    oh = (h + pads[0] + pads[2] - (kernel[0] - 1) * dilation - 1) // stride + 1
    ow = (w + pads[1] + pads[3] - (kernel[1] - 1) * dilation - 1) // stride + 1
    assume(oh >= 1 and ow >= 1)
    x = rng.standard_normal((1, 8, h, w)).astype(np.float32)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    _, code = compile_and_compare(model, x, folder, ("-O2",))
    assert "pk_depthwise_turned(" in code.split("static void k_one")[-1]
