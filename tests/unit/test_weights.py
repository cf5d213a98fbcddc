"""Weights counted where models keep them: initializers, Constant nodes, ai.onnx.ml attributes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from packager import weights


def _model(nodes: list, initializers: list | None = None, ml: bool = False) -> object:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              initializers or [])  # fmt: skip
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_weights_count_initializers_and_constant_nodes() -> None:
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    const = helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.ones(2, np.float32)))
    nodes = [const, helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    found = weights.of_model(_model(nodes, [w]))
    assert found == weights.Weights(count=10, bytes=40)


def test_weights_count_ml_operator_attributes_not_labels() -> None:
    linear = helper.make_node("LinearClassifier", ["x"], ["label", "y"], domain="ai.onnx.ml", coefficients=[0.5] * 8,
                              intercepts=[0.1, 0.2], classlabels_strings=["cat", "dog"], multi_class=0)  # fmt: skip
    found = weights.of_model(_model([linear], ml=True))
    assert found == weights.Weights(count=10, bytes=40)  # labels and `multi_class` are no weights


def test_weights_of_a_boosted_tree_ensemble_from_scikit_learn() -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    x, y = rng.random((60, 4)).astype(np.float32), rng.integers(0, 2, 60)
    model = to_onnx(GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(x, y), x[:1])
    found = weights.of_model(model)
    assert found.count > 5 * 3 and found.bytes > 0  # thresholds, node ids, leaf weights of 5 trees
