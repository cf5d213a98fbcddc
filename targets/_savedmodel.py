"""A single-signature TensorFlow SavedModel of the model, the common input of the TF-based targets
(tflite, tfjs, coreml from non-torch sources). Not a target itself.

Paths, chosen per source: Keras ``.keras`` → wrapped in a tf.function with the configured
preprocessing; SavedModel → its serving signature, wrapped the same way; ONNX and torch →
onnx2tf from the canonical ONNX (preprocessing already in it). onnx2tf turns channels-first
inputs into channels-last; ``layout.json`` records each tensor's permutation so that runners
feed the samples as the variant expects and compare like with like.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from packager import cache, shapes
from packager.errors import ConversionError, MissingDependencyError, UnsupportedOpError, first_line
from packager.importers.base import quiet_native_output
from packager.spec import ModelSpec, TensorSpec
from packager.target import Step, StepContext

STEP = "tf-savedmodel"


def refuse_sklearn(spec: ModelSpec, target: str) -> None:
    """The build names the targets that do take the model (their own checks say so)."""
    if spec.source_format == "sklearn" or any(op.startswith("ai.onnx.ml::") for op in spec.ops):
        raise UnsupportedOpError(
            f"target '{target}' cannot take scikit-learn models: their ai.onnx.ml ops "
            f"({', '.join(sorted(op for op in spec.ops if op.startswith('ai.onnx.ml::')))}) have no TensorFlow form"
        )


# Recurrent ops onnx2tf 1.29 does not convert from torch's ONNX exports: a Conv1d+GRU classifier
# stops at the GRU ("Number of ways to split should evenly divide the split dimension"), an LSTM
# classifier at the LSTM ("An `initial_state` was passed that is not compatible with
# `cell.state_size`"). A Keras model with them takes the Keras path, which keeps its layers.
RECURRENT = ("GRU", "LSTM", "RNN")


def refuse_recurrent(spec: ModelSpec, target: str) -> None:
    """Refuse, before anything runs, a model onnx2tf would stop on: recurrent ops reached through
    ONNX (a torch or ONNX source; a Keras or SavedModel source does not go through onnx2tf)."""
    if not path_for(spec).startswith("canonical ONNX"):
        return
    found = sorted(op for op in spec.ops if op in RECURRENT)
    if found:
        raise UnsupportedOpError(
            f"target '{target}' cannot take {', '.join(found)} from a {spec.source_format} model: onnx2tf, its "
            "ONNX -> TensorFlow step, does not convert recurrent layers exported to ONNX"
        )


def path_for(spec: ModelSpec) -> str:
    original = spec.original_path
    if original is not None and original.suffix == ".keras":
        return "Keras → SavedModel (one signature, preprocessing folded)"
    if original is not None and original.name.endswith(".savedmodel"):
        return "SavedModel signature → SavedModel (preprocessing folded)"
    return "canonical ONNX → onnx2tf → SavedModel (channels-last)"


def step(spec: ModelSpec) -> Step:
    return Step(name=STEP, description=path_for(spec), run=run)


def run(ctx: StepContext) -> Path:
    """Make (or reuse from the cache) the SavedModel; returns its folder."""
    spec = ctx.spec
    original = spec.original_path
    parts: list[Any] = [spec.onnx_path.read_bytes(), path_for(spec), spec.preprocessing.to_json(),
                        shapes.one_sample(spec)]  # fmt: skip
    if original is not None and original.is_file():
        parts.append(original.read_bytes())

    def make(staging: Path) -> None:
        if original is not None and original.suffix == ".keras":
            found = _from_keras(spec, original, staging / "savedmodel")
        elif original is not None and original.name.endswith(".savedmodel"):
            found = _from_savedmodel(spec, original, staging / "savedmodel")
        else:
            found = _from_onnx(spec, staging / "savedmodel", staging / "fixed.onnx")
        (staging / "layout.json").write_text(json.dumps(found, indent=1))

    return cache.cached(ctx.cache_dir / "savedmodel" / cache.key(*parts), make) / "savedmodel"


def layout(savedmodel: Path) -> dict[str, Any]:
    return dict(json.loads((savedmodel.parent / "layout.json").read_text()))


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_output():
        import tensorflow as tf
    return tf


def _spec_tensor(tf: Any, t: TensorSpec) -> Any:
    shape = [None if isinstance(d, str) else d for d in t.shape]
    return tf.TensorSpec(shape, tf.as_dtype(t.dtype), name=t.name)


def _preprocess(tf: Any, spec: ModelSpec, x: Any) -> Any:
    prep = spec.preprocessing
    if prep.empty:
        return x
    rank = len(spec.signature.inputs[0].shape)
    if prep.mean is not None:
        x = x - tf.constant(prep.constant(prep.mean, rank))
    if prep.std is not None:
        x = x / tf.constant(prep.constant(prep.std, rank))
    if prep.scale is not None:
        x = x * tf.constant(prep.scale, tf.float32)
    return x


def _save(tf: Any, module: Any, fn: Any, out: Path) -> None:
    with quiet_native_output():
        tf.saved_model.save(module, str(out), signatures={"serving_default": fn.get_concrete_function()})


def _identity_layout(spec: ModelSpec) -> dict[str, Any]:
    return {"inputs": [{"name": t.name, "source": t.name, "perm": None} for t in spec.signature.inputs],
            "outputs": [{"name": t.name, "source": t.name, "perm": None} for t in spec.signature.outputs],
            "path": ""}  # fmt: skip


def _from_keras(spec: ModelSpec, original: Path, out: Path) -> dict[str, Any]:
    """Keras 3's ExportArchive tracks the model's variables; the endpoint adds preprocessing."""
    tf = _tf()
    import keras

    with quiet_native_output():
        model = keras.models.load_model(str(original), compile=False)
    inputs, outputs = spec.signature.inputs, [t.name for t in spec.signature.outputs]

    def serve(*args: Any) -> dict[str, Any]:
        xs = [_preprocess(tf, spec, a) for a in args]
        ys = model(xs if len(xs) > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return {name: y for name, y in zip(outputs, ys, strict=True)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[_spec_tensor(tf, t) for t in inputs])
    with quiet_native_output():
        archive.write_out(str(out), verbose=False)
    return _identity_layout(spec) | {"path": path_for(spec)}


def _from_savedmodel(spec: ModelSpec, original: Path, out: Path) -> dict[str, Any]:
    tf = _tf()
    loaded = tf.saved_model.load(str(original))
    fn = loaded.signatures["serving_default"]
    inputs, outputs = spec.signature.inputs, [t.name for t in spec.signature.outputs]
    module = tf.Module()
    module.inner = loaded

    @tf.function(input_signature=[_spec_tensor(tf, t) for t in inputs])
    def serve(*args: Any) -> dict[str, Any]:
        result = fn(**{t.name: _preprocess(tf, spec, a) for t, a in zip(inputs, args, strict=True)})
        return {name: result[name] for name in outputs}

    _save(tf, module, serve, out)
    return _identity_layout(spec) | {"path": path_for(spec)}


def _from_onnx(spec: ModelSpec, out: Path, fixed: Path) -> dict[str, Any]:
    """onnx2tf on the canonical ONNX with its shapes fixed at one sample and constants folded
    (onnx2tf cannot take dynamic height, width or sequence, nor the shape arithmetic on them)."""
    try:
        import onnx2tf
    except ImportError as exc:
        raise MissingDependencyError(
            "converting ONNX or torch models for TensorFlow targets needs onnx2tf",
            hint="pip install --no-deps onnx2tf==1.29.24 (make setup does)",
        ) from exc
    _tf()
    shapes.folded(spec.onnx_path, shapes.one_sample(spec), fixed)
    _for_onnx2tf(fixed)
    sink = io.StringIO()
    try:
        with quiet_native_output(), contextlib.redirect_stdout(sink), _own_test_images(spec):
            onnx2tf.convert(input_onnx_file_path=str(fixed), output_folder_path=str(out),
                            non_verbose=True, output_signaturedefs=True, batch_size=1)  # fmt: skip
    except BaseException as exc:  # onnx2tf exits through sys.exit on some failures
        print(sink.getvalue())  # the step's log (the worker sends its output there)
        print(
            "packager: the options onnx2tf suggests above are its own command line's; packager runs onnx2tf "
            "with fixed settings (shapes fixed from the samples, batch 1), so they cannot be passed through it"
        )
        hint = "an op or pattern onnx2tf cannot convert; the step's log has its output"
        if spec.source_format == "keras":
            hint += "; build from the .keras file instead"
        raise ConversionError(
            f"onnx2tf could not convert the model: {_onnx2tf_reason(exc, sink.getvalue(), fixed)}", hint=hint
        ) from exc
    finally:
        fixed.unlink(missing_ok=True)
    return _onnx2tf_layout(spec, out)


ONNX2TF_DOWNLOADER = ("onnx2tf.onnx2tf", "download_test_image_data")  # pinned: onnx2tf 1.29.24


@contextlib.contextmanager
def _own_test_images(spec: ModelSpec) -> Any:
    """onnx2tf checks a model whose inputs are all 3-channel images with a sample image set it
    downloads from the internet (into the working folder) at convert time. Give it the build's
    own first samples, channels-last, instead: no download, and the check runs on real inputs.
    This patches an onnx2tf internal (pinned; tests/targets/test_onnx2tf_contract.py)."""
    import importlib

    import numpy as np

    module = importlib.import_module(ONNX2TF_DOWNLOADER[0])
    original = getattr(module, ONNX2TF_DOWNLOADER[1])
    first = next(iter(spec.samples.values()), None)

    def images() -> Any:
        if first is None or np.ndim(first) != 4:
            raise ConversionError("onnx2tf asked for sample images for a model whose input is not an image")
        nhwc = np.transpose(np.asarray(first[:20], np.float32), (0, 2, 3, 1)) if first.shape[1] == 3 else first[:20]
        return np.ascontiguousarray(nhwc, dtype=np.float32)

    setattr(module, ONNX2TF_DOWNLOADER[1], images)
    try:
        yield
    finally:
        setattr(module, ONNX2TF_DOWNLOADER[1], original)


def _onnx2tf_layout(spec: ModelSpec, out: Path) -> dict[str, Any]:
    tf = _tf()
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    tf_inputs = sorted(kwargs.items(), key=lambda item: item[0])
    tf_outputs = sorted(fn.structured_outputs.items(), key=lambda item: item[0])
    if len(tf_inputs) != len(spec.signature.inputs) or len(tf_outputs) != len(spec.signature.outputs):
        raise ConversionError("onnx2tf produced a signature with a different number of inputs or outputs")
    by_name = {name: ts for name, ts in tf_inputs}
    ordered_in = [(t.name, by_name[t.name]) if t.name in by_name else tf_inputs[i]
                  for i, t in enumerate(spec.signature.inputs)]  # fmt: skip
    return {
        "path": path_for(spec),
        "inputs": [{"name": name, "source": t.name, "perm": _perm(t.shape, list(ts.shape))}
                   for (name, ts), t in zip(ordered_in, spec.signature.inputs, strict=True)],
        "outputs": [{"name": name, "source": t.name, "perm": _inverse(_perm(t.shape, list(ts.shape)))}
                    for (name, ts), t in zip(tf_outputs, spec.signature.outputs, strict=True)],
    }  # fmt: skip


def _perm(source: tuple[int | str, ...], target: list[Any]) -> list[int] | None:
    """The permutation taking the source layout to the variant's: None, or channels-last."""

    def fits(a: list[Any], b: list[Any]) -> bool:
        return len(a) == len(b) and all(isinstance(x, str) or y is None or x == y for x, y in zip(a, b, strict=True))

    src = list(source)
    if fits(src[1:], target[1:]):
        return None
    rank = len(src)
    if rank >= 3:
        last = [0, *range(2, rank), 1]
        if fits([src[i] for i in last][1:], target[1:]):
            return last
    raise ConversionError(f"onnx2tf changed a tensor's shape from {src} to {target} in a way packager cannot map")


def _inverse(perm: list[int] | None) -> list[int] | None:
    if perm is None:
        return None
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


SCOPE_CHARS = re.compile(r"[^A-Za-z0-9_./>-]")  # what TensorFlow takes in a name scope


def _for_onnx2tf(path: Path) -> None:
    """Two rewrites of the fixed model, each the same computation, around onnx2tf 1.29 bugs met on
    real models: node names become TensorFlow scope names (paddle2onnx's ``Softmax@0`` is not
    one), and ReduceL2 becomes ``tf.norm`` with a list for its axis (which it refuses), so it is
    written as Sqrt(ReduceSumSquare) (tests/targets/test_onnx2tf_contract.py)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    taken: set[str] = set()
    nodes = []
    for index, node in enumerate(model.graph.node):
        name = SCOPE_CHARS.sub("_", node.name) or f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        taken.add(name)
        node.name = name
        nodes.append(node)
        if node.op_type == "ReduceL2" and node.domain in ("", "ai.onnx"):
            squared = f"{node.output[0]}__sum_square"
            sqrt = helper.make_node("Sqrt", [squared], [node.output[0]], name=f"{name}_sqrt")
            node.op_type = "ReduceSumSquare"
            node.output[0] = squared
            nodes.append(sqrt)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(path))


def _onnx2tf_reason(exc: BaseException, output: str, model: Path) -> str:
    """One line naming the ONNX node onnx2tf stopped at (it prints ``onnx_op_name: …``), its op
    type, and the cause under TensorFlow's "Exception encountered when calling layer …" line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if not line.startswith("Exception encountered")), "")
    layer = lines[0] if lines else type(exc).__name__
    found = re.search(r"onnx_op_name:\s*(\S+)", re.sub(r"\x1b\[[0-9;]*m", "", output))
    if found is None:
        return first_line(exc) if lines else type(exc).__name__
    name = found.group(1)
    try:
        import onnx

        graph = onnx.load_model(str(model), load_external_data=False).graph
        op = next((n.op_type for n in graph.node if n.name == name), "")
    except Exception:  # the model onnx2tf read is gone or unreadable: name the node alone
        op = ""
    reason = f"at ONNX node '{name}'" + (f" ({op})" if op else "") + f": {cause or layer}"
    return reason[:300]
