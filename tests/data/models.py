"""Tiny real models for the tests, made by code (no binary blobs in the repo).

Each ``make_*`` writes a model file into a folder and returns its path. Run this file to write
them all into a folder: ``python tests/data/models.py OUT``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels 0..16, as float32 (no download)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:n].astype(np.float32), y[:n]


def make_onnx_mlp(folder: Path, name: str = "mlp.onnx") -> Path:
    """A 64 -> 32 -> 10 MLP with a symbolic batch, built with onnx.helper and fixed weights."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 32)).astype(np.float32) * 0.2
    w2 = rng.standard_normal((32, 10)).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(32, np.float32), "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(10, np.float32), "b2")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    path = folder / name
    save(model, str(path))
    return path


def make_onnx_custom_op(folder: Path) -> Path:
    """A valid ONNX model whose one node is an op no runtime here implements."""
    from onnx import TensorProto, helper, save

    node = helper.make_node("FancyActivation", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = folder / "custom.onnx"
    save(model, str(path))
    return path


def make_onnx_det(folder: Path) -> Path:
    """A Gemm, then Det of 2x2 blocks: onnxruntime runs it, packager's C generator has no Det."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 2, 2], np.int64), "shape")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["m"]),
             helper.make_node("Det", ["m"], ["y"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        initializer=[weights, shape],
    )  # fmt: skip
    path = folder / "det.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def make_onnx_constant_weights(folder: Path) -> Path:
    """A Gemm whose weights and bias are ``Constant`` nodes, as paddle2onnx exports them."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    nodes = [
        helper.make_node("Constant", [], ["w"], value=w),
        helper.make_node("Constant", [], ["b"], value=b),
        helper.make_node("Gemm", ["x", "w", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "constant_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
    )  # fmt: skip
    path = folder / "constant_weights.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def make_onnx_grouped(folder: Path) -> Path:
    """A grouped convolution (4 channels in two groups): onnx2tf writes a grouped Conv2D, which
    TensorFlow and LiteRT run and tf.js's conv2d does not."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32) * 0.3, "w")
    fc = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "grouped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=[w, fc],
    )  # fmt: skip
    path = folder / "grouped.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def make_onnx_double_erf(folder: Path) -> Path:
    """Erf on float64: a valid model for which onnxruntime's CPU provider has no kernel."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])], "double_erf",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
    )  # fmt: skip
    path = folder / "double_erf.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def make_onnx_erf(folder: Path) -> Path:
    """Erf on float32 (exact GELU's core): onnxruntime runs it; LiteRT has no builtin for it."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Add", ["e", "x"], ["y"])], "erf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )  # fmt: skip
    path = folder / "erf.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def make_onnx_streaming(folder: Path) -> Path:
    """A streaming model shaped like a voice detector's: ``x [batch, 4]``, a state with the batch
    on axis 1 (``state [2, batch, 3]``) and a scalar int64 sample rate with no batch at all; it
    returns ``y [batch, 3]`` and the next state ``stateN [2, batch, 3]``."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(2)
    init = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array([0], np.int64), "axes0"),
            numpy_helper.from_array(np.array(16000.0, np.float32), "rate")]  # fmt: skip
    nodes = [
        helper.make_node("Gather", ["state", "zero"], ["s0"], axis=0),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "rate"], ["scale"]),
        helper.make_node("Mul", ["s0", "scale"], ["s0s"]),
        helper.make_node("Add", ["xw", "s0s"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["y"]),
        helper.make_node("Unsqueeze", ["y", "axes0"], ["y0"]),
        helper.make_node("Unsqueeze", ["s0", "axes0"], ["s00"]),
        helper.make_node("Concat", ["y0", "s00"], ["stateN"], axis=0),
    ]
    graph = helper.make_graph(
        nodes, "streaming",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 3]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 3])],
        initializer=init,
    )  # fmt: skip
    path = folder / "streaming.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def streaming_samples(path: Path, count: int = 24) -> Path:
    """Samples for ``make_onnx_streaming``: the batch on axis 1 of the state, the rate stored once."""
    rng = np.random.default_rng(3)
    np.savez(path, x=rng.standard_normal((count, 4)).astype(np.float32),
             state=rng.standard_normal((2, count, 3)).astype(np.float32), sr=np.array(16000, np.int64))  # fmt: skip
    return path


def make_onnx_dynamic_hw(folder: Path) -> Path:
    """A detector-shaped model: ``images [batch, 3, height, width]`` through a Conv, then the
    feature map flattened with shape arithmetic (Shape, Gather, Mul, Concat: what exporters
    emit for dynamic sizes) into ``boxes [batch, height*width, 4]``."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(4)
    init = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "k"),
            numpy_helper.from_array(np.zeros(4, np.float32), "kb"),
            *(numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in range(4)),
            numpy_helper.from_array(np.array([0], np.int64), "axes0")]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["images", "k", "kb"], ["f"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["f"], ["fs"]),
        helper.make_node("Shape", ["fs"], ["shape"]),
        *(helper.make_node("Gather", ["shape", f"i{i}"], [f"d{i}"], axis=0) for i in range(4)),
        helper.make_node("Mul", ["d2", "d3"], ["hw"]),
        *(helper.make_node("Unsqueeze", [d, "axes0"], [f"{d}u"]) for d in ("d0", "d1", "hw")),
        helper.make_node("Concat", ["d0u", "d1u", "hwu"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["fs", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["boxes"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes, "dynamic_hw",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "anchors", 4])],
        initializer=init,
    )  # fmt: skip
    path = folder / "dynamic_hw.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def torch_cnn():  # -> (model, example_input); also a module:factory for the importer
    """A small CNN for 1x8x8 inputs, with fixed weights."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    )  # fmt: skip
    model.eval()
    return model, torch.randn(2, 1, 8, 8)


def make_torch_pt2(folder: Path) -> Path:
    import torch

    model, example = torch_cnn()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    path = folder / "cnn.pt2"
    torch.export.save(program, str(path))
    return path


def make_keras_cnn(folder: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inputs, outputs)
    path = folder / "cnn.keras"
    model.save(path)
    return path


def make_saved_model(folder: Path) -> Path:
    import keras

    model = keras.models.load_model(make_keras_cnn(folder))
    path = folder / "cnn_savedmodel"
    model.export(str(path), verbose=False)
    return path


def make_sklearn_forest(folder: Path) -> Path:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    x, y = digits()
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, y)
    path = folder / "forest.joblib"
    joblib.dump(model, path)
    return path


def make_sklearn_pipeline(folder: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = digits()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
    path = folder / "scaler_logreg.pkl"
    joblib.dump(model, path)
    return path


MAKERS = {
    "onnx": make_onnx_mlp, "custom_op": make_onnx_custom_op, "pt2": make_torch_pt2,
    "keras": make_keras_cnn, "savedmodel": make_saved_model, "forest": make_sklearn_forest,
    "pipeline": make_sklearn_pipeline,
}  # fmt: skip


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    out.mkdir(parents=True, exist_ok=True)
    for maker in MAKERS.values():
        print(maker(out))
