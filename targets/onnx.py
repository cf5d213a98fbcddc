"""The ``onnx`` target: optimized ONNX for onnxruntime, in fp32, fp16, int8 and ORT format.

Variants:
  onnx-fp32          graph-optimized at the hardware-independent level, so it runs anywhere
  onnx-ort-fp32      the same graph as an ORT flatbuffer (smaller runtime, mobile builds)
  onnx-fp16          float16 weights and compute, inputs and outputs kept float32
  onnx-int8-dynamic  int8 weights, activations quantized at run time
  onnx-int8-static   QDQ int8, activations calibrated on the sample inputs
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from packager import batching
from packager import weights as model_weights  # the estimate below has a local `weights`
from packager.errors import ConversionError, UnsupportedOpError, first_line
from packager.resources import read_toml
from packager.runtimes.ort import OrtRunner
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target, VariantInfo

RUNTIME = "onnxruntime"
LEVELS = ("disable", "basic", "extended")
# Ops whose weights or compute onnxruntime's quantizer turns into int8.
QUANTIZABLE = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU", "EmbedLayerNormalization"}
)


@dataclass(frozen=True, kw_only=True)
class OnnxOptions:
    """``[tool.packager.target.onnx]`` keys."""

    optimization: str = "basic"
    ort_format: bool = True
    per_channel: bool = True
    HELP: ClassVar[dict[str, str]] = {
        "optimization": f"onnxruntime graph optimizations baked into onnx-fp32 ({', '.join(LEVELS)}); "
        "'basic' keeps the graph portable to every onnxruntime build",
        "ort_format": "also write onnx-ort-fp32, the ORT flatbuffer that minimal mobile builds load",
        "per_channel": "int8 weights quantized per output channel (opset 13 and later)",
    }

    def __post_init__(self) -> None:
        if self.optimization not in LEVELS:
            raise ValueError(f"optimization must be one of {', '.join(LEVELS)}, not '{self.optimization}'")


class OnnxTarget(Target):
    name = "onnx"
    summary = "optimized ONNX for onnxruntime: fp32, ORT format, fp16, int8 dynamic and static"
    emits = "model.onnx / model.ort"
    precisions = ("fp32", "fp16", "int8")
    extra = "onnx"
    Options = OnnxOptions

    def check(self, spec: ModelSpec) -> None:
        missing = unsupported_ops(spec.onnx_path)
        if missing:
            raise UnsupportedOpError(
                f"target 'onnx' cannot take op(s) {', '.join(missing)}: onnxruntime's CPU provider refuses them",
                hint="replace the op in the source model, or register a custom-op library with onnxruntime",
            )

    def plan(self, spec: ModelSpec, options: OnnxOptions, precisions: tuple[str, ...]) -> list[Step]:
        min_version = _min_version(spec)
        fp32 = VariantInfo(id="onnx-fp32", precision="fp32", runtime=RUNTIME,
                           min_version=min_version, main_file="model.onnx")  # fmt: skip
        steps = [
            Step(name=fp32.id if "fp32" in precisions else "onnx-optimize",
                 description=f"optimize the graph (onnxruntime, level '{options.optimization}')",
                 run=_optimize, variant=fp32 if "fp32" in precisions else None)
        ]  # fmt: skip
        base = steps[0].name
        if "fp32" in precisions and options.ort_format:
            steps.append(Step(
                name="onnx-ort-fp32", description="serialize as an ORT flatbuffer", run=_to_ort,
                requires=(base,),
                variant=VariantInfo(id="onnx-ort-fp32", precision="fp32", runtime=RUNTIME,
                                    min_version=_ort_version(), main_file="model.ort",
                                    notes="ORT format: load with the same or a newer onnxruntime"),
            ))  # fmt: skip
        if "fp16" in precisions:
            steps.append(Step(
                name="onnx-fp16", description="convert weights and compute to float16, IO kept float32",
                run=to_fp16, requires=(base,),
                variant=VariantInfo(id="onnx-fp16", precision="fp16", runtime=RUNTIME,
                                    min_version=min_version, main_file="model.onnx"),
            ))  # fmt: skip
        no_int8 = int8_skip_reason(spec)
        if "int8" in precisions:
            steps.append(Step(
                name="onnx-int8-dynamic", description="quantize weights to int8, activations at run time",
                run=_int8_dynamic, requires=(base,), skipped=no_int8,
                variant=VariantInfo(id="onnx-int8-dynamic", precision="int8", runtime=RUNTIME,
                                    min_version=min_version, main_file="model.onnx"),
            ))  # fmt: skip
            steps.append(Step(
                name="onnx-int8-static",
                description=f"quantize to int8 QDQ, calibrated on the {spec.num_samples} samples",
                run=_int8_static, requires=(base,), skipped=no_int8,
                variant=VariantInfo(id="onnx-int8-static", precision="int8", runtime=RUNTIME,
                                    min_version=min_version, main_file="model.onnx"),
            ))  # fmt: skip
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> OrtRunner:
        return OrtRunner(variant_dir / main_file)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        path = variant_dir / main_file
        return estimate_memory_mb(path if path.suffix == ".onnx" else spec.onnx_path)


def model_fp32(ctx: StepContext) -> Path:
    """The fp32 model other targets bundle: the source graph at the portable "basic" level."""
    return optimize_model(ctx.spec.onnx_path, ctx.out_dir / "model.onnx")


def model_int8(ctx: StepContext) -> Path:
    """The int8 model other targets bundle: static QDQ calibrated on the samples."""
    return quantize_static_model(ctx.inputs["model"], ctx.out_dir / "model.onnx", ctx.spec, ctx.tmp_dir)


def model_steps(prefix: str, spec: ModelSpec, precisions: tuple[str, ...]) -> list[Step]:
    """``<prefix>-model`` (fp32) and, for int8, ``<prefix>-model-int8``: the models a bundling
    target wraps. int8 is not built where nothing in the model quantizes."""
    steps = [Step(name=f"{prefix}-model", description="optimize the graph for onnxruntime", run=model_fp32)]
    if "int8" in precisions:
        steps.append(
            Step(
                name=f"{prefix}-model-int8",
                description="quantize to int8 QDQ on the samples",
                run=model_int8,
                requires=(f"{prefix}-model",),
                skipped=int8_skip_reason(spec),
            )
        )
    return steps


def int8_skip_reason(spec: ModelSpec) -> str:
    """Why an onnxruntime int8 variant would be pointless for this model, or "" when it is not."""
    if set(spec.ops) & QUANTIZABLE:
        return ""
    return f"the model has no op that onnxruntime quantizes ({', '.join(sorted(QUANTIZABLE))}); int8 would equal fp32"


def _optimize(ctx: StepContext) -> Path:
    return optimize_model(ctx.spec.onnx_path, ctx.out_dir / "model.onnx", ctx.options.optimization)


def optimize_model(src: Path, out: Path, level: str = "basic") -> Path:
    """Graph optimizations at ``level``; "basic" keeps the graph runnable on any provider."""
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}  # fmt: skip
    _save_optimized(src, out, levels[level], ort_format=False)
    return out


# Serializes an ONNX file as an ORT flatbuffer without optimizing it again (it already was).
_ORT_CONVERT = """
import sys, onnxruntime as ort
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
options.optimized_model_filepath = sys.argv[2]
options.log_severity_level = 3
options.add_session_config_entry("session.save_model_format", "ORT")
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
"""


def _to_ort(ctx: StepContext) -> Path:
    """Write the ORT flatbuffer in a fresh process with address randomization off.

    onnxruntime writes its kernel-type table in the order of a hash map seeded by an address,
    so the same model gives different bytes from run to run. A fresh interpreter whose layout
    is fixed (``setarch -R``) makes the bytes reproducible.
    """
    out = ctx.out_dir / "model.ort"
    command = [sys.executable, "-c", _ORT_CONVERT, str(ctx.inputs["model"]), str(out)]
    setarch = shutil.which("setarch")
    if setarch:
        command = [setarch, platform.machine(), "-R", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 and setarch:  # setarch refused (a sandbox without personality())
        ctx.log("setarch -R is not allowed here: the .ort bytes may differ between builds")
        done = subprocess.run(command[3:], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        lines = (done.stderr or "no output").strip().splitlines()
        raise ConversionError(f"onnxruntime could not write the ORT format: {lines[-1][:200]}")
    return out


def _save_optimized(src: Path, out: Path, level: object, *, ort_format: bool) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    if ort_format:
        options.add_session_config_entry("session.save_model_format", "ORT")
    try:
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ConversionError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc


# Kept in float32 besides onnxconverter-common's own list: ops whose float16 result loses range
# (sums of squares and exponentials overflow at 65504) or that feed shapes and indices.
FP16_BLOCK = ("ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum", "Exp", "Pow", "Shape", "NonZero",
              "ConstantOfShape", "Expand", "Tile", "Einsum")  # fmt: skip
FP16_TRIES = 12


def to_fp16(ctx: StepContext) -> Path:
    """float16 weights and compute, IO kept float32; what has no float16 kernel stays float32.

    The converted model is loaded in onnxruntime: each op or node it refuses (no float16
    kernel, or a type the converter left inconsistent) joins the block list and the model is
    converted again, so the result is one onnxruntime runs.
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(ctx.inputs["model"]))
    ops = list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP16_BLOCK)
    base = len(ops)
    nodes: list[str] = []
    out = ctx.out_dir / "model.onnx"
    for _ in range(FP16_TRIES):
        try:
            converted = float16.convert_float_to_float16(onnx.ModelProto.FromString(model.SerializeToString()),
                                                         keep_io_types=True, op_block_list=ops,
                                                         node_block_list=nodes)  # fmt: skip
        except Exception as exc:
            raise ConversionError(f"float16 conversion failed: {first_line(exc)}") from exc
        onnx.save(converted, str(out))
        refusal = _load_refusal(out)
        if refusal is None:
            if nodes or len(ops) > base:
                ctx.log(f"{ctx.out_dir.name}: kept in float32 for onnxruntime: {', '.join([*ops[base:], *nodes])}")
            return out
        blocked = _fp16_culprit(refusal, converted)
        if blocked is None or blocked in ops or blocked in nodes:
            break
        (nodes if blocked.startswith("node:") else ops).append(blocked.removeprefix("node:"))
    out.unlink(missing_ok=True)
    raise ConversionError(f"the float16 model does not load in onnxruntime: {first_line(Exception(refusal), 300)}",
                          hint="build fp32 or int8 for this model")  # fmt: skip


def _load_refusal(path: Path) -> str | None:
    """onnxruntime's error on loading ``path``, or None when it loads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return str(exc)
    return None


_NODE_NAMED = re.compile(r"node(?: with name)? \(?'?([^')\s]+)'?\)?")


def _fp16_culprit(error: str, model: Any) -> str | None:
    """The op type (or ``node:<name>``) to keep in float32, from onnxruntime's refusal."""
    found = _NOT_IMPLEMENTED.search(error)
    if found:
        return found.group(1)
    named = _NODE_NAMED.search(error)
    if named:
        name = named.group(1)
        match = next((n for n in model.graph.node if n.name == name), None)
        if match is not None:
            return match.op_type if match.op_type != "Cast" else f"node:{name}"
    return None


# Unsigned weights and activations (U8U8), where onnxruntime's default is signed weights: on x86
# CPUs with AVX2 or AVX-512 but no VNNI, onnxruntime multiplies uint8 by int8 with VPMADDUBSW,
# whose 16-bit sums saturate (its quantization guide says so, and suggests U8U8 or reduce_range).
# Measured on an AVX2 host: the digits CNN's static int8 max abs error 3.69 with int8 weights and
# activations, 0.25 with uint8 ones; U8U8 has no saturating path on any CPU and keeps all 8 bits.
# ConvInteger (dynamic quantization of convolutions) takes uint8 weights only in any case.


def _int8_dynamic(ctx: StepContext) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _preprocessed(ctx.inputs["model"], ctx.tmp_dir)
    out = ctx.out_dir / "model.onnx"
    try:
        quantize_dynamic(
            src, out, weight_type=QuantType.QUInt8, per_channel=ctx.options.per_channel and _opset(src) >= 13
        )
    except Exception as exc:
        raise ConversionError(f"dynamic int8 quantization failed: {first_line(exc)}") from exc
    return out


def _int8_static(ctx: StepContext) -> Path:
    out = ctx.out_dir / "model.onnx"
    return quantize_static_model(ctx.inputs["model"], out, ctx.spec, ctx.tmp_dir, per_channel=ctx.options.per_channel)


def quantize_static_model(src: Path, out: Path, spec: ModelSpec, tmp: Path, *, per_channel: bool = True) -> Path:
    """QDQ int8, activations calibrated on the spec's samples (one at a time)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            count = spec.num_samples
            inputs = spec.signature.inputs
            self._items = iter([batching.take(spec.samples, inputs, i, i + 1) for i in range(count)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    prepared = _preprocessed(src, tmp)
    try:
        quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        per_channel=per_channel and _opset(prepared) >= 13)  # fmt: skip
    except Exception as exc:
        raise ConversionError(f"static int8 quantization failed: {first_line(exc)}") from exc
    return out


def _preprocessed(src: Path, tmp: Path) -> Path:
    """onnxruntime's recommended pre-pass before quantization (shape inference, folding)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "prequant.onnx"
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    except Exception:
        # Symbolic shape inference does not know every op (ai.onnx.ml); the plain pass will do.
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    return out


def _opset(path: Path) -> int:
    """The model's ai.onnx opset. Per-channel scales need DequantizeLinear's ``axis`` (opset 13):
    on older models the quantizer writes it anyway and onnxruntime refuses the result."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def unsupported_ops(path: Path) -> list[str]:
    """Ops that onnxruntime's CPU provider refuses in this model, as onnxruntime itself says.

    A session is created (optimizations off) and only its refusal counts: NOT_IMPLEMENTED (no
    kernel for that op at that opset and type) or an op no schema registers. A kernel table
    would refuse what onnxruntime runs: ``Constant`` (folded into an initializer), functions,
    contrib ops, other opset versions. Cached per file contents: several targets ask.
    """
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return list(_refused_ops(str(path), digest))


@functools.lru_cache(maxsize=16)
def _refused_ops(path: str, digest: str) -> tuple[str, ...]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own NotImplemented/Fail/InvalidGraph types
        text = str(exc)
        named = _named_ops(text)
        if named:
            return tuple(named)
        raise UnsupportedOpError(
            f"onnxruntime cannot load the model: {first_line(exc, 300)}",
            hint="check the model with `python -m onnx.checker` or re-export it from its framework",
        ) from exc
    return ()


# "Could not find an implementation for Foo(13) node with name 'n'"; "com.example:Foo(-1) is not a
# registered function/op"; "No opset import for domain 'com.example'".
_NOT_IMPLEMENTED = re.compile(r"implementation for (\w+)\((\d+)\)")
_UNREGISTERED = re.compile(r"([\w.]*:?\w+)\(-?\d+\) is not a registered function/op")
_NO_DOMAIN = re.compile(r"No opset import for domain '([^']+)'")


def _named_ops(text: str) -> list[str]:
    found = [f"{op} (opset {version})" for op, version in _NOT_IMPLEMENTED.findall(text)]
    found += [op.replace(":", "::", 1) if ":" in op else op for op in _UNREGISTERED.findall(text)]
    found += [f"ops of domain '{domain}'" for domain in _NO_DOMAIN.findall(text)]
    return sorted(set(found))


def estimate_memory_mb(path: Path) -> float:
    """Weights plus every intermediate tensor at batch 1: an upper bound (no buffer reuse)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    weights = model_weights.of_model(model).bytes  # Constant nodes and ai.onnx.ml attributes too
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    activations = 0
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        ttype = value.type.tensor_type
        if not ttype.elem_type:
            continue
        count = 1
        for dim in ttype.shape.dim:
            count *= dim.dim_value if dim.dim_value > 0 else 1
        activations += count * np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).itemsize
    return round((weights + activations) / 1e6, 3)


def _min_version(spec: ModelSpec) -> str:
    import onnx

    model = onnx.load(str(spec.onnx_path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    table = read_toml("onnxruntime.toml")["opset_min_version"]
    known = sorted(int(k) for k in table)
    return str(table[str(max(k for k in known if k <= opset) if opset >= known[0] else known[0])])


def _ort_version() -> str:
    import onnxruntime as ort

    return ".".join(ort.__version__.split(".")[:2])
