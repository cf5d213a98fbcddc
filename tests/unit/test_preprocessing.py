from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from packager.errors import ModelInputError
from packager.importers.onnx import fold_preprocessing, signature
from packager.spec import Preprocessing


def identity_model(shape: list[int | str], dtype: int = TensorProto.FLOAT):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "id",
        [helper.make_tensor_value_info("x", dtype, shape)],
        [helper.make_tensor_value_info("y", dtype, shape)],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing(scale=1 / 16),
        Preprocessing(mean=(0.5,), std=(0.25,)),
        Preprocessing(mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0)),
        Preprocessing(mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0), scale=3.0),
    ],
)
def test_fold_preprocessing_matches_numpy(prep: Preprocessing) -> None:
    model = identity_model(["batch", 3, 4, 4])
    fold_preprocessing(model, prep)
    x = np.random.default_rng(0).uniform(0, 16, (5, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run(model, x), prep.apply(x), rtol=1e-6)
    assert signature(model).inputs[0].name == "x"  # the input keeps its name


def test_fold_preprocessing_channel_axis_last() -> None:
    model = identity_model(["batch", 4, 4, 3])
    prep = Preprocessing(mean=(1.0, 2.0, 3.0), channel_axis=-1)
    fold_preprocessing(model, prep)
    x = np.ones((2, 4, 4, 3), np.float32)
    np.testing.assert_allclose(run(model, x)[0, 0, 0], [0.0, -1.0, -2.0])


def test_fold_preprocessing_refuses_integer_inputs() -> None:
    with pytest.raises(ModelInputError, match="one float32 input"):
        fold_preprocessing(identity_model(["batch", 3], TensorProto.INT64), Preprocessing(scale=2.0))
