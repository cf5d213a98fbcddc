"""The ``tfjs`` target: TensorFlow.js graph models for pages, as a static site.

Variants from the common SavedModel (targets/_savedmodel.py): ``tfjs-fp32``, ``tfjs-fp16``
(float16 weights), ``tfjs-uint8`` (uint8-quantized weights), each ``model/model.json`` with
4 MB weight shards, ``tf.min.js``, and ``index.html`` that loads both with script tags and runs
one prediction on ``sample.json``. Graph models, not Keras "layers" models: Keras 3 layers files
do not load in tf.js. Validation runs the samples through that same page in headless Chromium.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from packager.errors import ConversionError, UnsupportedOpError, first_line
from packager.importers.base import quiet_native_output
from packager.resources import fill, template_path
from packager.runtimes.browser import LayoutBrowserRunner
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import _savedmodel
from packager.targets import onnx as onnx_target
from packager.targets.ort_web import write_sample
from packager.tools import browser

KINDS = {"fp32": ("tfjs-fp32", None), "fp16": ("tfjs-fp16", "float16"), "int8": ("tfjs-uint8", "uint8")}


class TfjsTarget(Target):
    name = "tfjs"
    static_shapes = True
    slow_checks = True  # each variant is checked in headless Chromium
    summary = "TensorFlow.js graph model (fp32, float16, uint8 weights) as a static page; checked in Chromium"
    emits = "model/model.json + shards, tf.min.js, index.html"
    precisions = ("fp32", "fp16", "int8")
    extra = "tfjs"

    def check(self, spec: ModelSpec) -> None:
        _savedmodel.refuse_sklearn(spec, self.name)
        _savedmodel.refuse_recurrent(spec, self.name)

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        version = browser.npm_version("@tensorflow/tfjs")
        steps = [_savedmodel.step(spec)]
        for precision in precisions:
            vid, quant = KINDS[precision]
            variant = VariantInfo(id=vid, precision=precision, runtime="tfjs", min_version=version,
                                  main_file="index.html")  # fmt: skip
            what = f"{quant} weights" if quant else "float32 weights"
            steps.append(Step(name=vid, variant=variant, run=_convert(quant), requires=(_savedmodel.STEP,),
                              description=f"SavedModel → tf.js graph model ({what}, 4 MB shards) + page"))  # fmt: skip
        return steps

    def warm_up(self) -> None:
        browser.prelaunch()

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> LayoutBrowserRunner:
        return LayoutBrowserRunner(variant_dir, main_file)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(spec.onnx_path)


def _convert(quant: str | None) -> Callable[[StepContext], Path]:
    """The step function for one variant: a partial, so that it can be sent to the step worker."""
    return functools.partial(_run_convert, quant)


def _run_convert(quant: str | None, ctx: StepContext) -> Path:
    # tensorflowjs imports TF Decision Forests, whose welcome banner goes through IPython
    # when stdout is not a terminal; its own switch turns the banner off.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    with quiet_native_output():
        from tensorflowjs.converters import tf_saved_model_conversion_v2 as converter

    savedmodel = ctx.inputs["model"]
    grouped = _grouped_convolutions(str(savedmodel))
    if grouped:
        name, depth, per_group = grouped[0]
        raise UnsupportedOpError(
            f"tf.js cannot run grouped convolutions, and the SavedModel has {len(grouped)}: Conv2D with groups "
            f"(e.g. '{name}': input depth {depth}, filter depth {per_group}; onnx2tf writes depthwise ONNX "
            "convolutions so in some graphs), which tf.js's conv2d refuses",
            hint="build ort-web for browsers (it runs the ONNX model as it is), or tflite for devices",
        )
    try:
        with quiet_native_output():
            converter.convert_tf_saved_model(
                str(savedmodel), str(ctx.out_dir / "model"), signature_def="serving_default",
                saved_model_tags="serve", quantization_dtype_map={quant: True} if quant else None,
                use_structured_outputs_names=True, weight_shard_size_bytes=4 * 1024 * 1024,
            )  # fmt: skip
    except Exception as exc:
        raise ConversionError(f"tensorflowjs could not convert the SavedModel: {first_line(exc)}",
                              hint="an op tf.js lacks: build the ort-web target for browsers") from exc  # fmt: skip
    layout = _savedmodel.layout(savedmodel)
    (ctx.out_dir / "layout.json").write_text(json.dumps(layout, indent=1))
    shutil.copyfile(browser.npm_file("@tensorflow/tfjs", "dist", "tf.min.js"), ctx.out_dir / "tf.min.js")
    perms = {e["source"]: e["perm"] for e in layout["inputs"]}
    names = {e["source"]: e["name"] for e in layout["inputs"]}
    write_sample(ctx.spec, ctx.out_dir / "sample.json", perms, names)
    values = {"model": ctx.spec.name, "version": ctx.spec.version, "variant": ctx.out_dir.name}
    (ctx.out_dir / "index.html").write_text(fill(template_path("browser", "tfjs.html").read_text(), values))
    return ctx.out_dir / "index.html"


@functools.lru_cache(maxsize=4)  # the worker checks one SavedModel for each of its variants
def _grouped_convolutions(savedmodel: str) -> list[tuple[str, int, int]]:
    """Conv2D ops whose input depth is not their filter's: grouped convolutions, which TensorFlow
    runs and tf.js's conv2d does not. Read from the frozen graph, where every shape is static;
    tensorflowjs freezes the SavedModel with the same function (tests/targets/test_tfjs.py)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with quiet_native_output():
        loaded = tf.saved_model.load(savedmodel)  # kept referenced: the function needs its variables
        frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
    found = []
    for op in frozen.graph.get_operations():
        if op.type != "Conv2D":
            continue
        channels_last = op.get_attr("data_format") in (b"NHWC", "NHWC")
        depth = op.inputs[0].shape[-1 if channels_last else 1]
        per_group = op.inputs[1].shape[2]
        if depth is not None and per_group is not None and depth != per_group:
            found.append((op.name, int(depth), int(per_group)))
    return found
