"""Keras ``.keras`` files and TensorFlow SavedModel folders, converted with tf2onnx."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import ConversionError, ModelInputError, first_line, require
from packager.importers.base import Imported, quiet_native_output

OPSET = 17


def _tf() -> Any:
    require("tensorflow", "keras")
    require("tf2onnx", "keras")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_output():
        import tensorflow as tf

    return tf


def import_keras(path: Path, workdir: Path) -> Imported:
    tf = _tf()
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise ModelInputError(
            f"'{path.name}' is not a loadable Keras model: {first_line(exc)}",
            hint="save it with model.save('model.keras') from Keras 3",
        ) from exc
    specs = [tf.TensorSpec(t.shape, t.dtype, name=_clean(t.name, i)) for i, t in enumerate(model.inputs)]
    names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])

    @tf.function
    def serve(*args: Any) -> dict[str, Any]:
        outs = model(list(args) if len(args) > 1 else args[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {name: tf.identity(o, name=name) for name, o in zip(names, outs, strict=True)}

    kept = workdir / "original.keras"
    shutil.copyfile(path, kept)
    proto = _convert(serve, specs)
    _order_outputs(proto, names)
    canonical_names(proto)

    def reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
        outs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return [np.asarray(o) for o in outs]

    return Imported(model=proto, original=kept, reference=reference,
                    reference_runtime=f"tensorflow {tf.__version__}")  # fmt: skip


def import_saved_model(path: Path, workdir: Path) -> Imported:
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(path))
        signatures = dict(loaded.signatures)
    except Exception as exc:
        raise ModelInputError(f"'{path.name}' is not a loadable SavedModel: {first_line(exc)}") from exc
    if "serving_default" not in signatures:
        raise ModelInputError(
            f"SavedModel '{path.name}' has no serving_default signature (has: {', '.join(signatures) or 'none'})",
            hint="export it with model.export(path) or tf.saved_model.save(..., signatures=...)",
        )
    fn = signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    in_names = sorted(kwargs)
    specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in in_names]
    out_names = sorted(fn.structured_outputs)

    @tf.function
    def serve(*args: Any) -> dict[str, Any]:
        outs = fn(**dict(zip(in_names, args, strict=True)))
        return {name: tf.identity(outs[name], name=name) for name in out_names}

    kept = workdir / "original.savedmodel"
    shutil.copytree(path, kept)
    proto = _convert(serve, specs)
    _order_outputs(proto, out_names)
    canonical_names(proto)

    def reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
        outs = fn(**{n: tf.constant(x) for n, x in zip(in_names, inputs, strict=True)})
        return [np.asarray(outs[n]) for n in out_names]

    return Imported(model=proto, original=kept, reference=reference,
                    reference_runtime=f"tensorflow {tf.__version__}")  # fmt: skip


def _convert(fn: Any, specs: list[Any]) -> Any:
    import tf2onnx

    try:
        with quiet_native_output():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=OPSET)
    except Exception as exc:
        raise ConversionError(f"tf2onnx could not convert the model: {first_line(exc)}") from exc
    return proto


def _order_outputs(proto: Any, names: list[str]) -> None:
    """tf2onnx names outputs ``name:0``; give them back their plain names."""
    renames = {}
    for out in proto.graph.output:
        plain = out.name.split(":")[0]
        if plain in names and plain != out.name:
            renames[out.name] = plain
    for node in proto.graph.node:
        for i, o in enumerate(node.output):
            if o in renames:
                node.output[i] = renames[o]
        for i, inp in enumerate(node.input):
            if inp in renames:
                node.input[i] = renames[inp]
    for out in proto.graph.output:
        out.name = renames.get(out.name, out.name)


GENERATED = re.compile(r"^(?P<base>.*?)__\d+(?P<suffix>:\d+)?$")


def canonical_names(proto: Any) -> None:
    """Renumber tf2onnx's generated names (``Transpose__26``, ``const_axes__17``) by position.

    tf2onnx numbers what it creates from a global counter and keeps an arbitrary one of two
    equal constants, so the same model converts to differently named graphs. Renumbering in
    graph order (and sorting initializers by first use) gives the same bytes every time.
    """
    graph = proto.graph
    fixed = {v.name for v in [*graph.input, *graph.output]}
    inits = {t.name: t for t in graph.initializer}
    renames: dict[str, str] = {}

    def visit(name: str) -> None:
        if not name or name in fixed or name in renames:
            return
        match = GENERATED.match(name)
        if name in inits:
            renames[name] = f"const__{len(renames)}" if match else name
        elif match:
            renames[name] = f"{match['base']}__{len(renames)}{match['suffix'] or ''}"
        else:
            renames[name] = name

    for node in graph.node:
        for name in [*node.input, node.name, *node.output]:
            visit(name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.name = renames.get(node.name, node.name)
    for value in graph.value_info:
        value.name = renames.get(value.name, value.name)
    order = {old: i for i, old in enumerate(renames)}
    ordered = sorted(graph.initializer, key=lambda t: order.get(t.name, len(order)))
    for tensor in ordered:
        tensor.name = renames.get(tensor.name, tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)


def _clean(name: str, index: int) -> str:
    name = name.split(":")[0]
    return name if name and not name.startswith("keras_tensor") else f"input_{index}"
