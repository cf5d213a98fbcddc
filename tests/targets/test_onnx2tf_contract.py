"""Contract tests for the onnx2tf internals packager leans on (onnx2tf is pinned to 1.29.24).

An upgrade that moves or renames them fails here, not in a user's build.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import onnx2tf  # installed by make setup (pip install --no-deps onnx2tf==1.29.24)

from packager.targets import _savedmodel


def test_onnx2tf_is_the_pinned_version() -> None:
    assert onnx2tf.__version__ == "1.29.24"


def test_onnx2tf_test_image_downloader_is_where_packager_patches_it() -> None:
    module_name, attribute = _savedmodel.ONNX2TF_DOWNLOADER
    module = importlib.import_module(module_name)
    downloader = getattr(module, attribute)
    assert inspect.signature(downloader).parameters == {}
    # convert() must look the name up in that module at call time, or the patch does nothing.
    assert attribute in inspect.getsource(module.convert)


def test_onnx2tf_names_the_node_it_fails_at_as_packager_reads_it() -> None:
    from onnx2tf.utils import common_functions

    assert "f'onnx_op_name: {graph_node.name}'" in inspect.getsource(common_functions)


def test_a_failure_names_the_onnx_node_its_op_and_the_cause(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool_3", kernel_shape=[2, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    model = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph), str(model))
    exc = ValueError('Exception encountered when calling layer "tf.nn.max_pool" (type TFOpLambda).\n\n'
                     "Negative dimension size caused by subtracting 2 from 1\n")  # fmt: skip
    output = "\x1b[31mERROR:\x1b[0m onnx_op_name: pool_3\n"
    reason = _savedmodel._onnx2tf_reason(exc, output, model)
    assert reason == "at ONNX node 'pool_3' (MaxPool): Negative dimension size caused by subtracting 2 from 1"
    assert _savedmodel._onnx2tf_reason(exc, "no node named", model).startswith("Exception encountered")


def test_the_model_for_onnx2tf_has_scope_names_and_no_reduce_l2(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceL2", ["x"], ["n"], name="node@norm", axes=[1], keepdims=1),
        helper.make_node("Div", ["x", "n"], ["d"], name="Div@0"),
        helper.make_node("Softmax", ["d"], ["y"], name="Div_0"),  # a clash once "@" is replaced
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])])  # fmt: skip
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _savedmodel._for_onnx2tf(path)
    model = onnx.load(str(path))
    names = [n.name for n in model.graph.node]
    assert all(_savedmodel.SCOPE_CHARS.search(n) is None for n in names) and len(set(names)) == len(names)
    assert [n.op_type for n in model.graph.node] == ["ReduceSumSquare", "Sqrt", "Div", "Softmax"]
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6)
