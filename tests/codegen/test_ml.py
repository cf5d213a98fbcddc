"""ai.onnx.ml operators compiled to C agree with onnxruntime: labels exactly, scores to float rounding."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from packager import codegen


def _run_c(model: onnx.ModelProto, x: np.ndarray, work: Path) -> list[np.ndarray]:
    onnx.save(model, str(work / "m.onnx"))
    source = codegen.generate(codegen.prepare(work / "m.onnx", work), "k",
                              {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})  # fmt: skip
    (work / "k.h").write_text(source.header)
    (work / "model.c").write_text(source.code)
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", "libk.so", "model.c", "-lm"], cwd=work,
                   check=True, capture_output=True)  # fmt: skip
    lib = ctypes.CDLL(str(work / "libk.so"))
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    outs = [np.zeros(e.shape, e.dtype) for e in expected]
    pointers = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
    assert lib.k_run(ctypes.c_void_p(x.ctypes.data), ctypes.c_size_t(len(x)), pointers, None) == 0
    return [*outs, *expected]


def _digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:n].astype(np.float32), y[:n]


def _sklearn(estimator, y_map) -> tuple[onnx.ModelProto, np.ndarray]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    x, y = _digits()
    estimator.fit(x, y_map(y))
    classifier = hasattr(estimator, "predict_proba")
    model = to_onnx(estimator, initial_types=[("x", FloatTensorType([None, 64]))],
                    options={"zipmap": False} if classifier else None,
                    target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    return model, x


def _estimators():
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, Normalizer, StandardScaler

    ten, two, three = (lambda y: y), (lambda y: y % 2), (lambda y: y % 3)
    return {
        "forest-10-classes": (RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0), ten),
        "forest-binary": (RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), two),
        "forest-regressor": (RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0), ten),
        "boosting-3-classes": (GradientBoostingClassifier(n_estimators=4, max_depth=3, random_state=0), three),
        "boosting-binary": (GradientBoostingClassifier(n_estimators=4, max_depth=3, random_state=0), two),
        "boosting-regressor": (GradientBoostingRegressor(n_estimators=4, max_depth=3, random_state=0), ten),
        "scaler-logistic": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), ten),
        "logistic-binary": (LogisticRegression(max_iter=500), two),
        "normalizer-l2-linear": (make_pipeline(Normalizer(), LinearRegression()), ten),
        "normalizer-max-scaler": (make_pipeline(Normalizer("max"), MaxAbsScaler(), LinearRegression()), ten),
    }


@pytest.mark.parametrize("name", list(_estimators()))
def test_ml_model_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    estimator, y_map = _estimators()[name]
    model, x = _sklearn(estimator, y_map)
    (*got,) = _run_c(model, x, tmp_path)
    half = len(got) // 2
    for ours, theirs in zip(got[:half], got[half:], strict=True):
        if theirs.dtype == np.int64:
            np.testing.assert_array_equal(ours, theirs)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=2e-6)


MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


def _random_forest(rng: np.random.Generator, trees: int, depth: int, features: int, classes: int, modes: list[str],
                   nan_true: bool, post: str) -> onnx.ModelProto:  # fmt: skip
    """Complete trees with random splits, written as TreeEnsembleClassifier attributes."""
    a: dict[str, list] = {k: [] for k in ("tid", "nid", "feat", "val", "mode", "yes", "no", "nan",
                                          "ctid", "cnid", "cid", "w")}  # fmt: skip
    for t in range(trees):
        inner = 2**depth - 1
        for n in range(2 ** (depth + 1) - 1):
            a["tid"].append(t), a["nid"].append(n)
            if n < inner:
                a["feat"].append(int(rng.integers(features))), a["val"].append(float(rng.integers(-2, 3)))
                a["mode"].append(modes[int(rng.integers(len(modes)))]), a["yes"].append(2 * n + 1)
                a["no"].append(2 * n + 2), a["nan"].append(int(nan_true and rng.integers(2)))
            else:
                a["feat"].append(0), a["val"].append(0.0), a["mode"].append("LEAF"), a["yes"].append(0)
                a["no"].append(0), a["nan"].append(0)
                for c in rng.choice(classes, size=int(rng.integers(1, classes + 1)), replace=False):
                    a["ctid"].append(t), a["cnid"].append(n), a["cid"].append(int(c))
                    a["w"].append(float(rng.uniform(0, 1)))
    node = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
        nodes_treeids=a["tid"], nodes_nodeids=a["nid"], nodes_featureids=a["feat"], nodes_values=a["val"],
        nodes_modes=a["mode"], nodes_truenodeids=a["yes"], nodes_falsenodeids=a["no"],
        nodes_missing_value_tracks_true=a["nan"], class_treeids=a["ctid"], class_nodeids=a["cnid"],
        class_ids=a["cid"], class_weights=a["w"], classlabels_int64s=list(range(10, 10 + classes)),
        post_transform=post,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "trees", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


@settings(max_examples=15, deadline=None)
@given(trees=st.integers(1, 6), depth=st.integers(1, 4), classes=st.integers(3, 5), seed=st.integers(0, 10_000),
       leq_only=st.booleans(), nan_true=st.booleans(),
       post=st.sampled_from(["NONE", "SOFTMAX", "LOGISTIC"]))  # fmt: skip
def test_random_tree_ensembles_match_onnxruntime(trees: int, depth: int, classes: int, seed: int, leq_only: bool,
                                                 nan_true: bool, post: str, tmp_path_factory) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    model = _random_forest(rng, trees, depth, 4, classes, MODES[:1] if leq_only else MODES, nan_true, post)
    x = rng.integers(-2, 3, size=(64, 4)).astype(np.float32)  # integers hit the == and != splits
    x[rng.random(x.shape) < 0.1] = np.nan
    label, scores, label_ort, scores_ort = _run_c(model, x, tmp_path_factory.mktemp("trees"))
    np.testing.assert_allclose(scores, scores_ort, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(label, label_ort)


def test_string_labels_are_refused_with_the_reason(tmp_path: Path) -> None:
    model = _random_forest(np.random.default_rng(0), 1, 1, 4, 3, MODES[:1], False, "NONE")
    attrs = model.graph.node[0].attribute
    labels = next(a for a in attrs if a.name == "classlabels_int64s")
    attrs.remove(labels)
    attrs.append(helper.make_attribute("classlabels_strings", ["a", "b", "c"]))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.STRING
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(Exception, match="string class labels"):
        codegen.generate(codegen.prepare(tmp_path / "m.onnx", tmp_path), "k",
                         {"name": "k", "version": "1", "sha256": "-", "signature": "{}"})  # fmt: skip
