"""The ``lambda-container`` target: a Docker context on AWS's Lambda Python base image, for models
or dependencies too large for a .zip (images may be 10 GB).

Each variant folder holds ``context/`` (Dockerfile, handler, model, pinned requirements) and
``template.yaml`` (``PackageType: Image``; ``sam build`` builds the image). No Docker engine runs
here, so the image size is an estimate (base image + installed wheels + model) checked against
10 GB, and the same handler is run from the context files with the same wheels by awslambdaric.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from packager import budget
from packager.resources import fill, read_toml, template_path
from packager.runtimes.aws_lambda import LambdaRunner, runtime_python
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import lambda_zip
from packager.targets import onnx as onnx_target
from packager.targets.lambda_zip import HANDLER, LambdaOptions


class LambdaContainerTarget(Target):
    name = "lambda-container"
    summary = "AWS Lambda container image context (Dockerfile) + SAM template; for bundles over zip limits"
    emits = "context/Dockerfile, template.yaml"
    precisions = ("fp32", "int8")
    extra = "lambda"
    Options = LambdaOptions

    def check(self, spec: ModelSpec) -> None:
        onnx_target.OnnxTarget().check(spec)

    def plan(self, spec: ModelSpec, options: LambdaOptions, precisions: tuple[str, ...]) -> list[Step]:
        where = f"{options.runtime} {options.arch}"
        steps = onnx_target.model_steps("container", spec, precisions)
        description = f"fetch onnxruntime + numpy wheels for {where} (what the image installs; cached)"
        steps.append(Step(name="container-deps", run=_dependencies, description=description))
        for precision in precisions:
            model_step = "container-model" if precision == "fp32" else "container-model-int8"
            variant = VariantInfo(id=f"lambda-container-{precision}", precision=precision, runtime="lambda",
                                  min_version=options.runtime, main_file="context/Dockerfile")  # fmt: skip
            steps.append(
                Step(
                    name=variant.id,
                    variant=variant,
                    run=_context,
                    requires=(model_step, "container-deps"),
                    description=f"write the Docker context and template for {where}; estimate the image size",
                )
            )
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> LambdaRunner:
        signature = json.loads((variant_dir / "context" / "model" / "signature.json").read_text())
        runtime_python(signature["runtime"], signature["arch"])
        site = lambda_zip.site_packages(cache_dir, signature["runtime"], signature["arch"], slimmed=False)
        work = Path(tempfile.mkdtemp(prefix="packager-container-"))
        task = work / "task"
        shutil.copytree(variant_dir / "context", task)  # what COPY puts in LAMBDA_TASK_ROOT
        return LambdaRunner(work=work, task=task, paths=[site], cache_dir=cache_dir)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(spec.onnx_path)


def _dependencies(ctx: StepContext) -> Path:
    options: LambdaOptions = ctx.options
    return lambda_zip.site_packages(ctx.cache_dir, options.runtime, options.arch, slimmed=False)


def _context(ctx: StepContext) -> Path:
    options: LambdaOptions = ctx.options
    spec, facts = ctx.spec, read_toml("lambda.toml")
    context = ctx.out_dir / "context"
    (context / "model").mkdir(parents=True)
    model = ctx.inputs["model"]
    shutil.copyfile(model, context / "model" / "model.onnx")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    signature = lambda_zip.signature_for(spec, options, sha)
    (context / "model" / "signature.json").write_text(json.dumps(signature, indent=1) + "\n")
    shutil.copyfile(HANDLER, context / "inference.py")
    pins = [*lambda_zip.requirements(), *facts["powertools"]["local"]]
    (context / "requirements.txt").write_text("\n".join(pins) + "\n")
    values = {"model": spec.name, "version": spec.version, "runtime": options.runtime, "arch": options.arch,
              "python": facts["runtimes"][options.runtime]["python"]}  # fmt: skip
    (context / "Dockerfile").write_text(fill(template_path("lambda", "Dockerfile").read_text(), values))
    (ctx.out_dir / "template.yaml").write_text(_template(spec, options))
    lambda_zip.lint_template(ctx, ctx.out_dir / "template.yaml")
    _gate(ctx, context, ctx.inputs["container-deps"])
    return context / "Dockerfile"


def _gate(ctx: StepContext, context: Path, site: Path) -> None:
    facts = read_toml("lambda.toml")
    parts = [("base image (estimate)", facts["container"]["base_image_bytes"])]
    parts += [(f"site-packages/{p.name}", _tree_bytes(p)) for p in site.iterdir()]
    parts += [(p.relative_to(context).as_posix(), p.stat().st_size) for p in context.rglob("*") if p.is_file()]
    total = sum(size for _, size in parts)
    limit = facts["limits"]["image_bytes"]
    if not ctx.check(f"{ctx.out_dir.name}.image_bytes_estimate", total, limit):
        top = sorted(parts, key=lambda item: -item[1])[:10]
        raise budget.fail("the container image (estimate)", total, limit, top,
                          ["build the int8 variant (-p int8)", "load the model from S3 at init"])  # fmt: skip
    lambda_zip.payload_gate(ctx, ctx.out_dir.name, facts["limits"]["payload_bytes"])  # invoked like a zip function


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _template(spec: ModelSpec, options: LambdaOptions) -> str:
    values = {
        "description": f"packager: {spec.name} {spec.version} as a {options.runtime} {options.arch} image",
        "memory_mb": str(options.memory_mb), "timeout_s": str(options.timeout_s), "arch": options.arch,
        "model": spec.name, "max_batch": str(lambda_zip.max_batch(spec, options)),
        "tag": f"{options.runtime}-v{spec.version}",
    }  # fmt: skip
    return fill(template_path("lambda", "container.yaml").read_text(), values)
