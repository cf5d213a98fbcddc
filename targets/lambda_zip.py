"""The ``lambda-zip`` target: an AWS Lambda .zip serving the model over the Open Inference Protocol.

Each variant folder holds ``function.zip`` (handler + model + slimmed onnxruntime/numpy for the
Lambda runtime and arch), ``layer.zip`` with ``layer = true``, ``model.onnx`` with
``model_from_s3 = true`` (upload it; the function loads it at init), and ``template.yaml`` for
``sam deploy``. Sizes are checked against Lambda's limits at build time, and the bundle is run
here by the real runtime interface client under the runtime's Python before it is recorded.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from packager import batching, budget, cache
from packager.archive import Entry, tree_entries, write_zip
from packager.errors import ConversionError, UsageError
from packager.resources import fill, handler_path, read_toml, template_path
from packager.runtimes.aws_lambda import LambdaRunner
from packager.spec import ModelSpec, TensorSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import lambda_native
from packager.targets import onnx as onnx_target
from packager.tools import pip, sam

HANDLER = handler_path("inference.py")


@dataclass(frozen=True, kw_only=True)
class LambdaOptions:
    """``[tool.packager.target.lambda-zip]`` keys."""

    runtime: str = "python3.12"
    arch: str = "x86_64"
    layer: bool = False
    model_from_s3: bool = False
    max_batch: int = 0  # 0: the largest batch (at most 64) whose request and response fit the payload limit
    memory_mb: int = 1024
    timeout_s: int = 30
    HELP: ClassVar[dict[str, str]] = {
        "runtime": "Lambda runtime the bundle is built and checked for (python3.11, python3.12, python3.13)",
        "arch": "Lambda architecture: x86_64 or arm64",
        "layer": "put the dependencies in layer.zip (a Lambda layer) instead of function.zip",
        "model_from_s3": "leave the model out of the bundle; the function loads it from S3 at init",
        "max_batch": "largest batch one request may carry; 0: the largest whose request and response fit 6 MB",
        "memory_mb": "the function's memory in template.yaml (Lambda gives CPU in proportion)",
        "timeout_s": "the function's timeout in template.yaml",
        "engine": "lambda-zip only: 'onnxruntime', or 'native' (the model compiled to C, a stdlib-only handler)",
    }

    def __post_init__(self) -> None:
        facts = read_toml("lambda.toml")
        if self.runtime not in facts["runtimes"]:
            raise ValueError(f"runtime must be one of {', '.join(facts['runtimes'])}, not '{self.runtime}'")
        if self.arch not in facts["arch"]:
            raise ValueError(f"arch must be one of {', '.join(facts['arch'])}, not '{self.arch}'")
        if not 0 <= self.max_batch <= 4096:
            raise ValueError("max_batch must be between 1 and 4096, or 0 for the largest that fits Lambda's payload")


ENGINES = ("onnxruntime", "native")


@dataclass(frozen=True, kw_only=True)
class LambdaZipOptions(LambdaOptions):
    """``[tool.packager.target.lambda-zip]`` keys: the shared Lambda keys and the engine.

    ``engine = "native"`` serves the model compiled to C (see targets/lambda_native.py).
    """

    engine: str = "onnxruntime"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not '{self.engine}'")
        if self.engine == "native" and (self.layer or self.model_from_s3):
            key = "layer" if self.layer else "model_from_s3"
            raise ValueError(f'{key} = true does not apply to engine = "native": its model is compiled into '
                             "a library of a few hundred KB and it has no dependencies to move")  # fmt: skip


class LambdaZipTarget(Target):
    name = "lambda-zip"
    summary = "AWS Lambda .zip + SAM template; Open Inference Protocol over an HTTP API; sizes gated"
    emits = "function.zip, template.yaml"
    precisions = ("fp32", "int8")
    extra = "lambda"
    Options = LambdaZipOptions

    def check(self, spec: ModelSpec) -> None:
        onnx_target.OnnxTarget().check(spec)

    def plan(self, spec: ModelSpec, options: LambdaZipOptions, precisions: tuple[str, ...]) -> list[Step]:
        _check_runtime(options)
        if options.engine == "native":
            return _native_plan(spec, options, precisions)
        where = f"{options.runtime} {options.arch}" + (", dependencies in a layer" if options.layer else "")
        steps = onnx_target.model_steps("lambda", spec, precisions)
        steps.append(Step(name="lambda-deps", run=_dependencies,
                          description=f"fetch onnxruntime + numpy wheels for {where}, slim them (cached)"))  # fmt: skip
        for precision in precisions:
            model_step = "lambda-model" if precision == "fp32" else "lambda-model-int8"
            variant = VariantInfo(id=f"lambda-zip-{precision}", precision=precision, runtime="lambda",
                                  min_version=options.runtime, main_file="function.zip")  # fmt: skip
            description = f"zip handler + model + deps for {where}; check Lambda's limits"
            steps.append(
                Step(
                    name=variant.id,
                    variant=variant,
                    run=_bundle,
                    requires=(model_step, "lambda-deps"),
                    description=description,
                )
            )
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> LambdaRunner:
        return LambdaRunner.from_zip(variant_dir, cache_dir)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(spec.onnx_path)


def _native_plan(spec: ModelSpec, options: LambdaZipOptions, precisions: tuple[str, ...]) -> list[Step]:
    """The model compiled to C for the Lambda arch, zipped with the stdlib-only handler."""
    lambda_native.check_model(spec)
    cc = lambda_native.compiler(options.arch)
    where = f"{options.runtime} {options.arch}"
    compile_lib = f"generate C99, compile lib.so for {where} with {cc}; check ldd and glibc"
    variant = VariantInfo(id=lambda_native.VARIANT_ID, precision="fp32", runtime="lambda",
                          min_version=options.runtime, main_file="function.zip",
                          notes="native engine: the model compiled to C, a stdlib-only handler")  # fmt: skip
    steps = [
        *onnx_target.model_steps("lambda", spec, ("fp32",)),
        Step(name="lambda-native-lib", run=lambda_native.compile_step, requires=("lambda-model",),
             description=compile_lib),
        Step(name=variant.id, variant=variant, run=_bundle, requires=("lambda-model", "lambda-native-lib"),
             description=f"zip the stdlib handler + library for {where}; check Lambda's limits"),
    ]  # fmt: skip
    if "int8" in precisions:
        int8 = 'the native engine compiles fp32 only; int8 needs engine = "onnxruntime"'
        steps.append(Step(name="lambda-native-int8", run=_bundle, description="", skipped=int8))
    return steps


def _check_runtime(options: LambdaZipOptions) -> None:
    facts = read_toml("lambda.toml")
    runtime = facts["runtimes"][options.runtime]
    engine = facts["engines"][options.engine]
    need = engine["min_glibc"]
    if _version(runtime["glibc"]) < _version(need):
        raise UsageError(
            f"{options.runtime} runs on {runtime['os']} (glibc {runtime['glibc']}), but {engine['needs']} glibc {need}",
            hint='set runtime = "python3.12" or "python3.13" in [tool.packager.target.lambda-zip], '
            "or use the lambda-container target",
        )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def requirements() -> list[str]:
    """The same onnxruntime and numpy this build validated with, pinned."""
    import onnxruntime

    return [f"onnxruntime=={onnxruntime.__version__}", f"numpy=={np.__version__}"]


def _dependencies(ctx: StepContext) -> Path:
    options: LambdaOptions = ctx.options
    return site_packages(ctx.cache_dir, options.runtime, options.arch, slimmed=True)


def site_packages(cache_dir: Path, runtime_name: str, arch_name: str, *, slimmed: bool) -> Path:
    """onnxruntime + numpy installed from wheels for the Lambda runtime's platform (slimmed for
    zips); cached by everything that decides the result."""
    facts = read_toml("lambda.toml")
    runtime, arch = facts["runtimes"][runtime_name], facts["arch"][arch_name]["wheel"]
    reqs = requirements()
    rules = facts["slim"] if slimmed else {}

    def make(staging: Path) -> None:
        pip.install_for_platform(reqs, staging / "site", python_version=runtime["python"],
                                 platforms=pip.manylinux_tags(runtime["glibc"], arch))  # fmt: skip
        if slimmed:
            slim(staging / "site", rules, arch)

    folder = cache_dir / "lambda-deps" / cache.key(runtime_name, arch, reqs, rules)
    return cache.cached(folder, make) / "site"


def slim(site: Path, rules: Mapping[str, list[str]], arch: str) -> None:
    """Drop what a serving process never imports; strip shared objects (not vendored ones)."""
    for rel in rules["drop_paths"]:
        shutil.rmtree(site / rel, ignore_errors=True)
    for pattern in rules["drop_globs"]:
        for path in site.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in rules["drop_dir_names"]:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in rules["drop_suffixes"]:
            path.unlink()
    strip = _strip_tool(arch)
    if strip is None:
        return
    for so in sorted(site.rglob("*.so*")):
        # Vendored libraries (numpy.libs/, *.libs/) are left alone: stripping breaks OpenBLAS.
        if so.is_file() and not any(part.endswith(".libs") for part in so.relative_to(site).parts):
            subprocess.run([strip, "--strip-unneeded", str(so)], check=True, capture_output=True)


def _strip_tool(arch: str) -> str | None:
    if arch == platform.machine():
        return shutil.which("strip")
    return shutil.which(f"{arch}-linux-gnu-strip")


def _bundle(ctx: StepContext) -> Path:
    """function.zip (+ layer.zip), template.yaml; every Lambda size limit checked."""
    options: LambdaZipOptions = ctx.options
    spec = ctx.spec
    model_path = ctx.inputs["model"]
    model_sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    signature = signature_for(spec, options, model_sha)
    if options.engine == "native":
        return _native_bundle(ctx, signature, model_sha)
    site = ctx.inputs["lambda-deps"]
    signature_json = (json.dumps(signature, indent=1) + "\n").encode()
    function = [
        Entry(name="inference.py", source=HANDLER.read_bytes()),
        Entry(name="model/signature.json", source=signature_json),
    ]
    if options.model_from_s3:
        shutil.copyfile(model_path, ctx.out_dir / "model.onnx")
    else:
        function.append(Entry(name="model/model.onnx", source=model_path))
    deps = tree_entries(site, prefix="python/" if options.layer else "")
    layer = deps if options.layer else []
    if not options.layer:
        function += deps
    write_zip(ctx.out_dir / "function.zip", function)
    if layer:
        write_zip(ctx.out_dir / "layer.zip", layer)
    _gate(ctx, function, layer)
    (ctx.out_dir / "template.yaml").write_text(template(spec, options, model_sha))
    lint_template(ctx, ctx.out_dir / "template.yaml")
    return ctx.out_dir / "function.zip"


def _native_bundle(ctx: StepContext, signature: dict[str, Any], model_sha: str) -> Path:
    library = ctx.inputs["lambda-native-lib"]
    native = lambda_native.signature(signature, library)
    function = lambda_native.function_entries(library, (json.dumps(native, indent=1) + "\n").encode())
    zipped = write_zip(ctx.out_dir / "function.zip", function)
    _gate(ctx, function, [])
    lambda_native.check_size(ctx, zipped)
    (ctx.out_dir / "template.yaml").write_text(template(ctx.spec, ctx.options, model_sha))
    lint_template(ctx, ctx.out_dir / "template.yaml")
    return ctx.out_dir / "function.zip"


def lint_template(ctx: StepContext, path: Path) -> None:
    """cfn-lint the generated template where it is installed; its findings fail the build."""
    result = sam.cfn_lint(path)
    name = f"{ctx.out_dir.name}.template.cfn_lint_findings"
    if result is None:
        ctx.unchecked(name, "cfn-lint is not installed here (pip install cfn-lint)")
        return
    code, findings = result
    if not ctx.check(name, 0 if code == 0 else max(1, findings.count("\n") // 2 + 1), 0):
        raise ConversionError(f"the generated {path.name} fails cfn-lint: {findings.splitlines()[0]}",
                              hint="this is a packager bug; please report it with the template")  # fmt: skip


def signature_for(spec: ModelSpec, options: LambdaOptions, model_sha: str) -> dict[str, Any]:
    """What the handler reads at init: the model's name, signature and where it runs."""
    return {
        "name": spec.name, "version": spec.version, "model_file": "model.onnx", "model_sha256": model_sha,
        "max_batch": max_batch(spec, options), "runtime": options.runtime, "arch": options.arch,
        "inputs": [t.to_json() for t in spec.signature.inputs],
        "outputs": [t.to_json() for t in spec.signature.outputs],
    }  # fmt: skip


def _gate(ctx: StepContext, function: list[Entry], layer: list[Entry]) -> None:
    limits = read_toml("lambda.toml")["limits"]
    vid = ctx.out_dir.name
    fixes = ["build the int8 variant (-p int8)", "set layer = true to move dependencies into a layer",
             "set model_from_s3 = true to load the model from S3 at init",
             "or use the lambda-container target (10 GB images)"]  # fmt: skip
    sizes = [(e.name, e.size()) for e in function + layer]
    total = sum(size for _, size in sizes)
    parts = budget.contributors(sizes)
    for name in ("function.zip", "layer.zip"):
        path = ctx.out_dir / name
        if path.is_file() and not ctx.check(f"{vid}.{name}.zipped_bytes", path.stat().st_size, limits["zipped_bytes"]):
            raise budget.fail(f"{name} (zipped)", path.stat().st_size, limits["zipped_bytes"], parts, fixes)
    if not ctx.check(f"{vid}.unzipped_bytes", total, limits["unzipped_bytes"]):
        raise budget.fail("the function unzipped (with its layers)", total, limits["unzipped_bytes"], parts, fixes)
    payload_gate(ctx, vid, limits["payload_bytes"])


AUTO_MAX_BATCH = 64


def max_batch(spec: ModelSpec, options: LambdaOptions) -> int:
    """``max_batch`` as set, or the largest batch up to 64 whose request and response both fit
    Lambda's synchronous payload (1 when even one sample does not: the gate refuses that)."""
    if options.max_batch:
        return options.max_batch
    limit = int(read_toml("lambda.toml")["limits"]["payload_bytes"])
    per_sample = max(_payload_sizes(spec, 1))
    return max(1, min(AUTO_MAX_BATCH, limit // max(per_sample, 1)))


def payload_gate(ctx: StepContext, vid: str, limit: int) -> None:
    """Refuse a bundle whose requests or responses at its max_batch cannot reach the function."""
    batch = max_batch(ctx.spec, ctx.options)
    request, response = _payload_sizes(ctx.spec, batch)
    if not ctx.options.max_batch:
        ctx.log(f"{vid}: max_batch {batch}, the largest batch (at most {AUTO_MAX_BATCH}) whose request "
                f"and response fit the {limit:,} B payload")  # fmt: skip
    for what, size in (("request", request), ("response", response)):
        if ctx.check(f"{vid}.{what}_bytes_at_max_batch", size, limit):
            continue
        if batch > 1:
            fits = max(1, int(batch * limit / size))
            raise budget.fail(f"a {what} at max_batch {batch}", size, limit, [], [f"set max_batch to {fits} or less"])
        raise budget.fail(f"one sample's {what}", size, limit, [],
                          ["send the input by reference (an S3 key the handler reads) instead of in the body",
                           "or serve it from a GPU endpoint (the triton target), which has no such limit"])  # fmt: skip


def _payload_sizes(spec: ModelSpec, batch: int) -> tuple[int, int]:
    """JSON sizes of one request and one response at ``batch``, scaled from the first sample."""

    def body(arrays: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...]) -> int:
        one = batching.take(arrays, specs, 0, 1)
        tensors = [{"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.reshape(-1).tolist()}
                   for k, v in one.items()]  # fmt: skip
        return len(json.dumps({"inputs": tensors}))

    signature = spec.signature
    return body(spec.samples, signature.inputs) * batch, body(spec.reference, signature.outputs) * batch


def template(spec: ModelSpec, options: LambdaZipOptions, model_sha: str) -> str:
    facts = read_toml("lambda.toml")
    native = options.engine == "native"
    values = {
        "description": f"packager: {spec.name} {spec.version} on {options.runtime} {options.arch}"
        + (", native engine" if native else ""),
        "handler": lambda_native.HANDLER_NAME if native else "inference.handler",
        "memory_mb": str(options.memory_mb), "timeout_s": str(options.timeout_s),
        "powertools_version": str(facts["powertools"]["layer_version"]),
        "powertools_account": facts["powertools"]["account"],
        "python_tag": options.runtime.replace(".", ""), "runtime": options.runtime, "arch": options.arch,
        "model": spec.name, "max_batch": str(max_batch(spec, options)),
        "parameters": "", "environment": "", "policies": "", "resources": "",
    }  # fmt: skip
    values |= _powertools_values(values, native)
    if options.layer:
        values["layers"] += "        - !Ref DependenciesLayer"
        values["resources"] = (
            "\n  DependenciesLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n"
            f"      Description: onnxruntime and numpy for {options.runtime} {options.arch}\n"
            f"      ContentUri: layer.zip\n      CompatibleRuntimes: [{options.runtime}]\n"
            f"      CompatibleArchitectures: [{options.arch}]\n"
        )
    if options.model_from_s3:
        values["parameters"] = (
            '  ModelS3Uri:\n    Type: String\n    AllowedPattern: "^s3://[^/]+/.+$"\n'
            "    Description: s3://bucket/key where model.onnx from this folder was uploaded.\n"
        )
        values["environment"] = f'          MODEL_S3_URI: !Ref ModelS3Uri\n          MODEL_SHA256: "{model_sha}"'
        values["policies"] = (
            "      Policies:\n        - Statement:\n            - Effect: Allow\n              Action: s3:GetObject\n"
            '              Resource: !Sub\n                - "arn:${AWS::Partition}:s3:::${ObjectPath}"\n'
            '                - ObjectPath: !Select [1, !Split ["s3://", !Ref ModelS3Uri]]'
        )
    return fill(template_path("lambda", "function.yaml").read_text(), values)


def _powertools_values(values: dict[str, str], native: bool) -> dict[str, str]:
    """The Powertools layer and its version parameter; the native engine's handler needs neither."""
    if native:
        return {"powertools_parameter": "", "layers": ""}
    name = f"AWSLambdaPowertoolsPythonV3-{values['python_tag']}-{values['arch']}"
    layer = f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:{values['powertools_account']}:layer:{name}"
    layer += ":${PowertoolsLayerVersion}"
    parameter = (
        "  PowertoolsLayerVersion:\n    Type: Number\n    Default: " + values["powertools_version"]
        + "\n    Description: Version of AWS's public Powertools for AWS Lambda (Python) v3 layer."
    )  # fmt: skip
    return {"powertools_parameter": parameter, "layers": f'      Layers:\n        - !Sub "{layer}"\n'}
