"""Train a small CNN on scikit-learn's bundled digits (8x8, no download) and export it.

Writes into --out (default: ./build next to this file):
  digits.keras   the Keras model (inputs scaled to 0..1 inside training, see packager.toml)
  digits.onnx    the same model exported with tf2onnx
  samples.npz    held-out raw digits (pixel values 0..16) for validation and calibration

    python examples/digits/train.py && cd examples/digits && packager build build/digits.keras ...
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1).astype(np.float32)  # raw pixel values 0..16, NHWC
    return train_test_split(x, y, test_size=256, random_state=0, stratify=y)


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])  # fmt: skip
    # The model learns on pixels / 16; packager.toml folds that scaling into every bundle, so
    # apps feed raw 0..16 pixels and no target can skew the preprocessing.
    model.fit(x / 16.0, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def export_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, 8, 8, 1), tf.float32, name="pixels")]
    fn = tf.function(lambda x: {"logits": model(x, training=False)})
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    for out in proto.graph.output:
        old = out.name
        out.name = old.split(":")[0]
        for node in proto.graph.node:
            node.output[:] = [out.name if o == old else o for o in node.output]
    path.write_bytes(proto.SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = load()
    model = train(x_train, y_train, args.epochs, args.seed)
    accuracy = float(np.mean(np.argmax(model.predict(x_test / 16.0, verbose=0), 1) == y_test))
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "digits.keras")
    export_onnx(model, args.out / "digits.onnx")
    np.savez(args.out / "samples.npz", pixels=x_test)
    print(f"trained in {time.perf_counter() - start:.1f}s, held-out accuracy {accuracy:.3f}")
    print(f"wrote {args.out / 'digits.keras'}, {args.out / 'digits.onnx'}, {args.out / 'samples.npz'}")


if __name__ == "__main__":
    main()
