"""The ``tflite`` target: LiteRT (TensorFlow Lite) flatbuffers for phones and embedded devices.

Variants from one SavedModel (see targets/_savedmodel.py for the path per source):
  tflite-fp32          the graph as is
  tflite-fp16          float16 weights (GPU delegates run them in half precision)
  tflite-int8-dynamic  int8 weights, float activations
  tflite-int8          full integer: int8 weights, activations and IO, calibrated on the samples
Each runs in the LiteRT interpreter (ai-edge-litert), one sample at a time as a device would.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packager import batching
from packager.errors import ConversionError, UnsupportedOpError, first_line
from packager.importers.base import quiet_native_output
from packager.runtimes.tflite import LiteRunner, to_variant
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import _savedmodel
from packager.targets import onnx as onnx_target

KINDS = {"fp32": ["fp32"], "fp16": ["fp16"], "int8": ["int8-dynamic", "int8"]}


class TfliteTarget(Target):
    name = "tflite"
    static_shapes = True
    summary = "LiteRT / TensorFlow Lite: fp32, fp16, int8 dynamic-range, int8 full-integer (calibrated)"
    emits = "model.tflite"
    precisions = ("fp32", "fp16", "int8")
    extra = "tflite"

    def check(self, spec: ModelSpec) -> None:
        _savedmodel.refuse_sklearn(spec, self.name)
        _savedmodel.refuse_recurrent(spec, self.name)

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        from importlib.metadata import version

        # The version from the package's metadata: importing TensorFlow here would cost seconds
        # and fill the terminal; it is imported in the step worker only.
        converter_version = ".".join(version("tensorflow").split(".")[:2])
        steps = [_savedmodel.step(spec)]
        for precision in precisions:
            for kind in KINDS[precision]:
                variant = VariantInfo(id=f"tflite-{kind}", precision=precision, runtime="tflite",
                                      min_version=converter_version, main_file="model.tflite")  # fmt: skip
                steps.append(Step(name=variant.id, variant=variant, run=_convert(kind),
                                  requires=(_savedmodel.STEP,), description=DESCRIPTIONS[kind]))  # fmt: skip
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> LiteRunner:
        return LiteRunner(variant_dir / main_file, json.loads((variant_dir / "layout.json").read_text()), quiet=True)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(spec.onnx_path)


DESCRIPTIONS = {
    "fp32": "convert the SavedModel to TFLite",
    "fp16": "convert with float16 weights",
    "int8-dynamic": "convert with int8 weights (dynamic range)",
    "int8": "convert to full integer (int8 IO), calibrated on the samples",
}


def _convert(kind: str) -> Callable[[StepContext], Path]:
    """The step function for one variant: a partial, so that it can be sent to the step worker."""
    return functools.partial(_run_convert, kind)


def _run_convert(kind: str, ctx: StepContext) -> Path:
    import tensorflow as tf

    savedmodel = ctx.inputs["model"]
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
    if kind != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if kind == "int8":
        converter.representative_dataset = lambda: _representative(ctx.spec, _savedmodel.layout(savedmodel))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with quiet_native_output():
            flatbuffer = converter.convert()
    except Exception as exc:
        missing = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", str(exc))))
        if missing:  # TensorFlow ops with no LiteRT builtin: the model needs ops LiteRT lacks
            raise UnsupportedOpError(
                f"LiteRT has no builtin kernel for TensorFlow op(s) {', '.join(missing)} ({kind}); only a LiteRT "
                "built with the Select TF ops (flex) delegate would run them",
                hint="build onnx or ort-web for this model (onnxruntime runs it as it is)",
            ) from exc
        hint = ("an op without an int8 kernel: build the fp32 or int8-dynamic variants" if kind == "int8"
                else "the step's log has the converter's output")  # fmt: skip
        raise ConversionError(f"TFLite conversion ({kind}) failed: {first_line(exc)}", hint=hint) from exc
    out = ctx.out_dir / "model.tflite"
    out.write_bytes(flatbuffer)
    (ctx.out_dir / "layout.json").write_bytes((savedmodel.parent / "layout.json").read_bytes())
    return out


def _representative(spec: ModelSpec, layout: Mapping[str, Any]) -> Iterator[list[np.ndarray]]:
    for i in range(spec.num_samples):
        one = batching.take(spec.samples, spec.signature.inputs, i, i + 1)
        yield [to_variant(one[e["source"]], e["perm"]) for e in layout["inputs"]]
