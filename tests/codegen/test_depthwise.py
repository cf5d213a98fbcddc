"""Depthwise convs on NCHW tensors (pk_depthwise): rows at least one vector wide summed in
registers and stored with their last vector overlapping, narrower ones through the planes' width,
on the AVX-512, 16-byte and plain C paths, against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_layout import FLAG_IDS, FLAGS, compile_and_compare


def _depthwise(c: int, h: int, w: int, stride: int, pads: list[int], clip: bool, seed: int) -> object:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["d" if clip else "y"], group=c, pads=pads,
                              strides=[stride, stride])]  # fmt: skip
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi"))]
    if clip:
        nodes.append(helper.make_node("Clip", ["d", "lo", "hi"], ["y"]))
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
                               *bounds])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("flags", FLAGS, ids=FLAG_IDS)
def test_depthwise_rows_match_onnxruntime_on_every_path(flags: tuple[str, ...], tmp_path: Path) -> None:
    # output widths below, at and past one vector (4 or 16 floats) and past four, strides 1 and 2,
    # "same" padding and the bottom/right-only padding Keras exports for stride 2, Clip fused or not
    cases = [(3, 6, 15, 1, [1, 1, 1, 1], True), (5, 9, 16, 1, [1, 1, 1, 1], False),
             (4, 7, 34, 2, [0, 0, 1, 1], True), (2, 12, 81, 1, [1, 1, 1, 1], True),
             (3, 5, 70, 2, [1, 1, 1, 1], False), (6, 4, 3, 1, [0, 0, 0, 0], True)]  # fmt: skip
    for i, (c, h, w, stride, pads, clip) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        x = np.random.default_rng(i).standard_normal((2, c, h, w)).astype(np.float32) * 4
        _, code = compile_and_compare(_depthwise(c, h, w, stride, pads, clip, i), x, folder, flags)  # type: ignore[arg-type]
        assert "pk_conv2d(" in code.split("static void k_one")[-1]
