"""The ``coreml`` target: Core ML ML-program packages for Apple devices.

Paths: from the torch program itself when the source is PyTorch (traced, preprocessing folded),
otherwise from the common single-signature SavedModel (targets/_savedmodel.py). Variants:
``coreml-fp32``, ``coreml-fp16`` and ``coreml-int8`` (fp16 compute, int8 linear-quantized
weights), each as ``model.mlpackage`` and a reproducible ``model.mlpackage.zip`` for transport.

Core ML runs only on Apple platforms, so nothing here can run these packages: fidelity is
recorded as ``unverified`` with that reason. What is checked is the package's spec (inputs,
outputs, shapes, types, ops, deployment target), and, as evidence, the fidelity of the graph it
was converted from, measured here. Never a number for the package itself.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packager import batching, shapes, validate
from packager.archive import tree_entries, write_zip
from packager.config import Tolerance
from packager.errors import ConversionError, first_line
from packager.importers.base import quiet_native_output
from packager.runtimes.tflite import to_variant
from packager.spec import ModelSpec
from packager.target import RuntimeUnavailable, Step, StepContext, Target, VariantInfo
from packager.targets import _savedmodel
from packager.targets import onnx as onnx_target

DEPLOYMENT = "iOS16"  # the first with ML programs and fp16/int8 weight compression


class CoremlTarget(Target):
    name = "coreml"
    static_shapes = True
    summary = "Core ML ML program (fp32, fp16, int8 weights) .mlpackage; spec checked (runs only on Apple)"
    emits = "model.mlpackage, model.mlpackage.zip"
    precisions = ("fp32", "fp16", "int8")
    extra = "coreml"

    def check(self, spec: ModelSpec) -> None:
        _savedmodel.refuse_sklearn(spec, self.name)
        if spec.source_format != "torch":  # a torch program goes to coremltools directly
            _savedmodel.refuse_recurrent(spec, self.name)

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        from_torch = spec.source_format == "torch"
        path = "torch program → coremltools" if from_torch else f"{_savedmodel.path_for(spec)} → coremltools"
        steps = [] if from_torch else [_savedmodel.step(spec)]
        requires = () if from_torch else (_savedmodel.STEP,)
        for precision in precisions:
            variant = VariantInfo(id=f"coreml-{precision}", precision=precision, runtime="coreml",
                                  min_version=DEPLOYMENT, main_file="model.mlpackage.zip")  # fmt: skip
            description = f"{path} ({precision}, ML program, {DEPLOYMENT}); check the spec"
            steps.append(
                Step(
                    name=variant.id,
                    variant=variant,
                    run=_convert(precision),
                    requires=requires,
                    description=description,
                )
            )
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> Any:
        check = json.loads((variant_dir / "spec_check.json").read_text())
        raise RuntimeUnavailable(
            "Core ML runs only on macOS/iOS; on this Linux host the package's spec was checked "
            f"({check['summary']}) but its numerics were not run",
            evidence=check.get("evidence"),
        )

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(spec.onnx_path)


def _convert(precision: str) -> Callable[[StepContext], Path]:
    """The step function for one variant: a partial, so that it can be sent to the step worker."""
    return functools.partial(_run_convert, precision)


def _run_convert(precision: str, ctx: StepContext) -> Path:
    with quiet_native_output():  # it warns about untested TF/torch versions on import
        import coremltools as ct

    spec = ctx.spec
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        with quiet_native_output():
            if spec.source_format == "torch":
                model, evidence = _from_torch(ct, spec, compute)
            else:
                model, evidence = _from_savedmodel(ct, ctx, compute)
            if precision == "int8":
                config = ct.optimize.coreml.OptimizationConfig(
                    global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric")
                )
                model = ct.optimize.coreml.linear_quantize_weights(model, config=config)
    except Exception as exc:
        hint = "build tflite or onnx for this model; Core ML lacks an op it uses"
        raise ConversionError(f"coremltools could not convert the model ({precision}): {first_line(exc)}",
                              hint=hint) from exc  # fmt: skip
    package = ctx.out_dir / "model.mlpackage"
    model.save(str(package))
    _fixed_identifiers(package)
    check = spec_check(package, spec)
    check["evidence"] = evidence
    ctx.check(f"{ctx.out_dir.name}.spec_mismatches", len(check["problems"]), 0)
    if check["problems"]:
        raise ConversionError(f"the Core ML package does not match the model: {'; '.join(check['problems'])}")
    (ctx.out_dir / "spec_check.json").write_text(json.dumps(check, indent=1, sort_keys=True) + "\n")
    write_zip(ctx.out_dir / "model.mlpackage.zip", tree_entries(package, prefix="model.mlpackage/"))
    return ctx.out_dir / "model.mlpackage.zip"


def _from_torch(ct: Any, spec: ModelSpec, compute: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    program = torch.export.load(str(spec.original_path))
    prep = spec.preprocessing

    class WithPreprocessing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = program.module()

        def forward(self, *xs: torch.Tensor) -> Any:
            if not prep.empty:
                rank = xs[0].dim()
                x = xs[0]
                if prep.mean is not None:
                    x = x - torch.from_numpy(prep.constant(prep.mean, rank))
                if prep.std is not None:
                    x = x / torch.from_numpy(prep.constant(prep.std, rank))
                if prep.scale is not None:
                    x = x * prep.scale
                xs = (x, *xs[1:])
            return self.inner(*xs)

    first = batching.take(spec.samples, spec.signature.inputs, 0, 1)
    example = tuple(torch.from_numpy(first[t.name]) for t in spec.signature.inputs)
    wrapper = WithPreprocessing()  # no .eval(): an exported program is fixed already and refuses train()
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, example)
        ones = [batching.take(spec.samples, spec.signature.inputs, i, i + 1) for i in range(spec.num_samples)]
        outs = [wrapper(*[torch.from_numpy(one[t.name]) for t in spec.signature.inputs]) for one in ones]
    inputs = [ct.TensorType(name=feature_name(t.name), shape=tuple(e.shape), dtype=np.float32)
              for t, e in zip(spec.signature.inputs, example, strict=True)]  # fmt: skip
    outputs = [ct.TensorType(name=feature_name(t.name)) for t in spec.signature.outputs]
    model = ct.convert(traced, inputs=inputs, outputs=outputs, convert_to="mlprogram", compute_precision=compute,
                       minimum_deployment_target=getattr(ct.target, DEPLOYMENT))  # fmt: skip
    got = [o if isinstance(o, (list, tuple)) else (o,) for o in outs]
    produced = {t.name: np.concatenate([g[i].numpy() for g in got]) for i, t in enumerate(spec.signature.outputs)}
    return model, _evidence(spec, produced, f"torch {torch.__version__.split('+')[0]} (the traced program converted)")


def _from_savedmodel(ct: Any, ctx: StepContext, compute: Any) -> tuple[Any, dict[str, Any]]:
    import tensorflow as tf

    savedmodel = ctx.inputs["model"]
    layout = _savedmodel.layout(savedmodel)
    spec = ctx.spec
    first = batching.take(spec.samples, spec.signature.inputs, 0, 1)
    fixed = {e["name"]: [1, *list(to_variant(first[e["source"]], e["perm"]).shape[1:])]
             for e in layout["inputs"]}  # fmt: skip
    inputs = [ct.TensorType(name=name, shape=tuple(shape), dtype=np.float32) for name, shape in fixed.items()]
    model = ct.convert(str(savedmodel), source="tensorflow", inputs=inputs, convert_to="mlprogram",
                       compute_precision=compute, minimum_deployment_target=getattr(ct.target, DEPLOYMENT))  # fmt: skip
    model = _named_like_source(ct, model, layout)
    fn = tf.saved_model.load(str(savedmodel)).signatures["serving_default"]
    rows = []
    for i in range(spec.num_samples):
        one = batching.take(spec.samples, spec.signature.inputs, i, i + 1)
        feeds = {e["name"]: tf.constant(to_variant(one[e["source"]], e["perm"]))
                 for e in layout["inputs"]}  # fmt: skip
        result = fn(**feeds)
        rows.append({e["source"]: np.transpose(result[e["name"]].numpy(), e["perm"]) if e["perm"]
                     else result[e["name"]].numpy() for e in layout["outputs"]})  # fmt: skip
    produced = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
    return model, _evidence(spec, produced, f"tensorflow {tf.__version__} (the SavedModel converted)")


def feature_name(name: str) -> str:
    """A tensor name as an ML program allows it ([A-Za-z_][A-Za-z0-9_]*): ``sigmoid_0.tmp_0`` →
    ``sigmoid_0_tmp_0``. spec_check.json maps each source name to it."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"_{cleaned}"


def _named_like_source(ct: Any, model: Any, layout: Mapping[str, Any]) -> Any:
    """Give the package the model's own input and output names (TF names outputs Identity, ...)."""
    proto = model.get_spec()
    renames = [(e["name"], e["source"]) for e in layout["inputs"]]
    converted = [f.name for f in proto.description.output]
    renames += [(old, e["source"]) for old, e in zip(converted, layout["outputs"], strict=True)]
    for old, new in renames:
        if old != feature_name(new):
            ct.utils.rename_feature(proto, old, feature_name(new))
    return ct.models.MLModel(proto, weights_dir=model.weights_dir, skip_model_load=True)


def _evidence(spec: ModelSpec, produced: Mapping[str, np.ndarray], runtime: str) -> dict[str, Any]:
    loose = Tolerance(atol=1e-4, rtol=1e-4, min_top1_agreement=0.0)
    result = validate.compare(spec.reference, produced, loose, spec.task)
    result.pop("status", None)
    result.pop("reason", None)
    return {"of": "the graph this package was converted from, not the package", "runtime": runtime,
            "samples": spec.num_samples, **result}  # fmt: skip


def spec_check(package: Path, spec: ModelSpec) -> dict[str, Any]:
    """Inputs, outputs, shapes, types, ops and deployment target, read from the package's spec."""
    import coremltools as ct

    with quiet_native_output():
        model = ct.models.MLModel(str(package), skip_model_load=True)
    proto = model.get_spec()
    problems: list[str] = []
    inputs = {f.name: list(f.type.multiArrayType.shape) for f in proto.description.input}
    outputs = [f.name for f in proto.description.output]
    fixed = shapes.one_sample(spec)  # what the package was converted at: one sample, any layout
    for t in spec.signature.inputs:
        if feature_name(t.name) not in inputs:
            problems.append(f"input '{t.name}' is missing (has {sorted(inputs)})")
        elif sorted(fixed[t.name]) != sorted(inputs[feature_name(t.name)]):  # one sample, any layout
            problems.append(
                f"input '{t.name}' has shape {inputs[feature_name(t.name)]}, the model {fixed[t.name]} (one sample)"
            )
    for t in spec.signature.outputs:
        if feature_name(t.name) not in outputs:
            problems.append(f"output '{t.name}' is missing (has {outputs})")
    ops: Counter[str] = Counter()
    for function in proto.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
    if proto.specificationVersion < 7:
        problems.append(f"specification version {proto.specificationVersion} is older than {DEPLOYMENT}'s (7)")
    summary = (f"ML program, spec v{proto.specificationVersion} ({DEPLOYMENT}+), inputs {inputs}, "
               f"outputs {outputs}, {sum(ops.values())} ops of {len(ops)} kinds")  # fmt: skip
    names = {t.name: feature_name(t.name) for t in (*spec.signature.inputs, *spec.signature.outputs)}
    return {"summary": summary, "inputs": inputs, "outputs": outputs, "names": names, "ops": dict(sorted(ops.items())),
            "specification_version": proto.specificationVersion, "problems": problems}  # fmt: skip


def _fixed_identifiers(package: Path) -> None:
    """coremltools names a package's items with random UUIDs; derive them from the paths instead,
    so building twice gives the same bytes (the identifiers only have to agree within the file)."""
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renames = {}
    for old, item in manifest.get("itemInfoEntries", {}).items():
        renames[old] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"packager:{item.get('path', old)}")).upper()
    manifest["itemInfoEntries"] = {renames[k]: v for k, v in manifest["itemInfoEntries"].items()}
    if manifest.get("rootModelIdentifier") in renames:
        manifest["rootModelIdentifier"] = renames[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
