"""The ``triton`` target: a Triton Inference Server model repository, the GPU cloud fallback.

Each variant folder holds ``repository/<model>/config.pbtxt`` (dynamic batching, GPU instances)
and ``repository/<model>/1/model.onnx``, the same repository as ``model.tar.gz`` (what SageMaker
loads), and ``template.yaml`` with the SageMaker model, endpoint configuration and endpoint,
created only when asked for. The config is parsed with Triton's own protobuf schema; the model
is run here in onnxruntime on the CPU with batches, the graph Triton's onnxruntime backend runs.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from packager import batching
from packager.errors import ConversionError, first_line
from packager.resources import fill, template_path
from packager.runtimes.ort import OrtRunner
from packager.spec import ModelSpec, TensorSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import lambda_zip
from packager.targets import onnx as onnx_target

TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
         "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
         "string": "TYPE_STRING"}  # fmt: skip
KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO")


@dataclass(frozen=True, kw_only=True)
class TritonOptions:
    """``[tool.packager.target.triton]`` keys."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "KIND_GPU"
    HELP: ClassVar[dict[str, str]] = {
        "max_batch_size": "config.pbtxt max_batch_size: the largest batch dynamic batching forms",
        "max_queue_delay_us": "how long Triton waits to fill a batch, in microseconds",
        "instances": "model instances per GPU (instance_group count)",
        "kind": f"where the instances run: {', '.join(KINDS)}",
    }

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not '{self.kind}'")
        if self.max_batch_size < 0 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ValueError("max_batch_size and max_queue_delay_us must be >= 0, instances >= 1")


class TritonTarget(Target):
    name = "triton"
    summary = "Triton model repository (dynamic batching, GPU) + SageMaker endpoint template: the cloud fallback"
    emits = "repository/<model>/config.pbtxt, model.tar.gz, template.yaml"
    precisions = ("fp32", "fp16")
    extra = "triton"
    Options = TritonOptions

    def check(self, spec: ModelSpec) -> None:
        onnx_target.OnnxTarget().check(spec)

    def plan(self, spec: ModelSpec, options: TritonOptions, precisions: tuple[str, ...]) -> list[Step]:
        steps = [
            Step(name="triton-model", description="optimize the graph for onnxruntime", run=onnx_target.model_fp32)
        ]
        if "fp16" in precisions:
            steps.append(Step(name="triton-model-fp16", description="float16 weights and compute, IO kept float32",
                              run=onnx_target.to_fp16, requires=("triton-model",)))  # fmt: skip
        for precision in precisions:
            model_step = "triton-model" if precision == "fp32" else "triton-model-fp16"
            variant = VariantInfo(id=f"triton-{precision}", precision=precision, runtime="triton",
                                  min_version="2.0", main_file=f"repository/{spec.name}/1/model.onnx")  # fmt: skip
            batching = f"max_batch_size {options.max_batch_size}, dynamic batching, {options.instances} {options.kind}"
            description = f"write the model repository ({batching}) and the SageMaker template"
            steps.append(
                Step(name=variant.id, variant=variant, run=_repository, requires=(model_step,), description=description)
            )
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> OrtRunner:
        runner = OrtRunner(variant_dir / main_file)
        runner.runtime_label += " on CPU (the graph Triton's onnxruntime backend serves; no GPU run here)"
        return runner

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(variant_dir / main_file)


def config_text(spec: ModelSpec, options: TritonOptions) -> str:
    """config.pbtxt: with max_batch_size > 0 Triton owns the batch dim, so dims leave it out."""
    # Triton batches on the first axis of every input and output; a model batched elsewhere
    # (state [2, batch, 128]) or with an input that has no batch is served unbatched.
    signature = spec.signature
    batched = options.max_batch_size > 0 and batching.axis_zero((*signature.inputs, *signature.outputs))
    max_batch = options.max_batch_size if batched else 0

    def tensor(t: TensorSpec) -> str:
        dims = [d if isinstance(d, int) else -1 for d in (t.shape[1:] if batched else t.shape)]
        return f'  {{ name: "{t.name}" data_type: {TYPES[t.dtype]} dims: [ {", ".join(map(str, dims))} ] }}'

    preferred = [b for b in (4, 8, 16, 32, 64, 128) if b <= max_batch]
    lines = [
        f'name: "{spec.name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
        "input [", ",\n".join(tensor(t) for t in spec.signature.inputs), "]",
        "output [", ",\n".join(tensor(t) for t in spec.signature.outputs), "]",
        f"instance_group [ {{ count: {options.instances} kind: {options.kind} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
    ]  # fmt: skip
    if max_batch:
        sizes = f"preferred_batch_size: [ {', '.join(map(str, preferred))} ] " if preferred else ""
        lines.append(f"dynamic_batching {{ {sizes}max_queue_delay_microseconds: {options.max_queue_delay_us} }}")
    return "\n".join(lines) + "\n"


def parse_config(text: str):  # -> model_config_pb2.ModelConfig
    """Parse with Triton's own schema; any mistake is a ConversionError naming it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConversionError(f"config.pbtxt does not parse with Triton's schema: {first_line(exc)}") from exc


def _repository(ctx: StepContext) -> Path:
    spec, options = ctx.spec, ctx.options
    model_dir = ctx.out_dir / "repository" / spec.name
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(ctx.inputs["model"], model_dir / "1" / "model.onnx")
    text = config_text(spec, options)
    parsed = parse_config(text)
    ctx.check(f"{ctx.out_dir.name}.config_pbtxt_parses", 0 if parsed.name == spec.name else 1, 0)
    (model_dir / "config.pbtxt").write_text(text)
    _write_tar(ctx.out_dir / "model.tar.gz", ctx.out_dir / "repository")
    values = {"description": f"packager: {spec.name} {spec.version} on Triton (SageMaker, GPU)",
              "model": spec.name, "version": spec.version}  # fmt: skip
    (ctx.out_dir / "template.yaml").write_text(fill(template_path("triton", "sagemaker.yaml").read_text(), values))
    lambda_zip.lint_template(ctx, ctx.out_dir / "template.yaml")
    return model_dir / "1" / "model.onnx"


def _write_tar(path: Path, root: Path) -> None:
    """A reproducible .tar.gz: sorted, owner root, mtime 0, gzip header without a timestamp."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(item), arcname=item.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if item.is_dir() else 0o644
            if item.is_file():
                with item.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
