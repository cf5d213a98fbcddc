"""A build: import the model, run each target's plan, validate every variant, write the output.

The core executes what targets declare; it never asks which target it is running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager import __version__, checking, importers, isolation, rebuild, report, samples
from packager.config import Config, TargetSettings
from packager.config import cache_dir as config_cache_dir
from packager.errors import ConfigError, FidelityError, PackagerError, UsageError, did_you_mean
from packager.importers.base import Imported
from packager.output import Staging, file_entries, file_entry
from packager.plugins import resolve_targets
from packager.progress import Reporter
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target

SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    model: str
    targets: tuple[str, ...] = ()
    precisions: tuple[str, ...] | None = None
    samples: Path | None = None
    name: str | None = None
    version: str | None = None
    out: Path | None = None
    dry_run: bool = False
    force: bool = False  # rebuild even when the build in --out came from the same inputs
    strict: bool | None = None
    latency: bool | None = None
    cache_dir: Path | None = None
    target_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # --set, by target
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --input-shape, by input


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A target that did not build: refused, a step that failed, or its fp32 variant out of tolerance."""

    target: str
    step: str
    error: PackagerError
    log: str = ""  # relative to the version folder, once the build is in place

    def to_json(self) -> dict[str, str]:
        data = {"target": self.target, "step": self.step, "reason": " ".join(self.error.message.split()),
                "code": str(self.error.exit_code)}  # fmt: skip
        if self.log:
            data["log"] = self.log
        return {k: v for k, v in data.items() if v}


@dataclass(kw_only=True)
class BuildResult:
    path: Path | None
    record: dict[str, Any]
    plans: list[tuple[Target, list[Step]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    targets: int = 0  # how many targets were asked for (refusals under --target all excluded)
    up_to_date: bool = False  # the build already in --out came from the same inputs: kept as it was


@dataclass(kw_only=True)
class _Run:
    """What every step of a build shares: where it writes, how it reports, its worker."""

    spec: ModelSpec
    vdir: Path
    scratch: Path
    logs: Path
    reporter: Reporter
    cache: Path
    checks: list[dict[str, Any]]
    worker: isolation.Worker
    checker: checking.Checker
    strict: bool
    warnings: list[str] = field(default_factory=list)  # lower-precision variants that failed


@dataclass(kw_only=True)
class _Variant:
    """A variant step of a plan: converted, and checked now or still being checked."""

    target: Target
    settings: TargetSettings
    step: Step
    record: dict[str, Any] | None = None  # known: a conversion that failed, or a settled check
    future: Future[checking.Checked] | None = None


def build(request: BuildRequest, config: Config, reporter: Reporter | None = None) -> BuildResult:
    reporter = reporter or Reporter()
    requested = list(request.targets or config.get("targets"))
    targets = resolve_targets(requested)
    _check_set_targets(request, targets)
    source = importers.detect(request.model)
    samples_path = request.samples or (Path(config.get("samples")) if config.get("samples") else None)
    if samples_path is not None:
        samples.check_exists(samples_path)
    name = request.name or config.get("name") or importers.default_name(source)
    version = str(request.version or config.get("version") or "1")
    _check_name(name, "name")
    _check_name(version, "version")
    # Absolute from here on: steps run tools in their own folders, where a relative path breaks.
    out = (request.out or Path(config.get("out"))).absolute()
    inputs = _fingerprint(request, config, targets, source, samples_path, name, version)
    if not (request.dry_run or request.force):
        kept = rebuild.up_to_date(out / name / version, inputs.fingerprint)
        if kept is not None:
            return BuildResult(path=out / name / version, record=kept, up_to_date=True,
                               targets=len({v["target"] for v in kept["variants"]}))  # fmt: skip
    if not request.dry_run:
        note = rebuild.check_destination(out, name, version, inputs.request, force=request.force)
        if note:
            reporter.note(note)
    staging = Staging(out, dry_run=request.dry_run)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see isolation.WORKER_ENV
    # One worker for the whole build: the importer, the source model's reference run, every step.
    worker = isolation.Worker(staging.scratch / "work", float(config.get("step_timeout")))
    if not request.dry_run:
        _warm_up(targets)
    try:
        result = _build(request, config, reporter, targets, source, samples_path, name, version, staging,
                        explicit="all" not in requested, inputs=inputs, worker=worker)  # fmt: skip
        if request.dry_run:
            staging.abort()
            return result
        result.path = staging.commit(name, version)
        return result
    except BaseException as exc:
        staging.abort(keep=getattr(exc, "log", None))
        raise
    finally:
        worker.close()


def _build(request: BuildRequest, config: Config, reporter: Reporter, targets: list[Target],
           source: importers.Source, samples_path: Path | None, name: str, version: str,
           staging: Staging, explicit: bool, inputs: rebuild.Inputs,
           worker: isolation.Worker) -> BuildResult:  # fmt: skip
    vdir = staging.version_dir(name, version)
    (vdir / "source").mkdir(parents=True)
    wanted = dict(request.input_shapes) or _config_shapes(config)
    logs = staging.logs(name, version)
    spec, imported, generated = _import(source, samples_path, config, name, version, vdir, reporter, wanted,
                                        worker, logs / "import.log")  # fmt: skip
    cli = {"precisions": request.precisions, "latency": request.latency, "options": request.target_options}
    strict = request.strict if request.strict is not None else bool(config.get("strict"))
    plans, skipped, failures = _plan_targets(targets, spec, config, cli, explicit, strict, reporter)
    if not plans and failures:
        raise failures[0].error
    if not plans:
        reasons = "; ".join(f"{s['target']}: {s['reason']}" for s in skipped)
        raise UsageError(f"no installed target can take this model ({reasons})",
                         hint="run `packager inspect MODEL` to see why each target refuses it")  # fmt: skip
    result = BuildResult(path=None, record={}, plans=[(t, s) for t, _, s in plans],
                         failures=failures, targets=len(plans) + len(failures))  # fmt: skip
    if request.dry_run:
        return result
    _reference(spec, imported, reporter)
    by_reason: dict[str, list[str]] = {}
    for target, _, steps in plans:
        skipped.extend({"target": target.name, "variant": s.name, "reason": s.skipped} for s in steps if s.skipped)
        for step in steps:
            if step.skipped and step.variant is not None:
                by_reason.setdefault(step.skipped, []).append(step.name)
    for reason, names in by_reason.items():  # one line per reason, not one per variant
        reporter.note(f"not built: {', '.join(names)}: {reason}")
    strict = request.strict if request.strict is not None else bool(config.get("strict"))
    run = _Run(spec=spec, vdir=vdir, scratch=staging.scratch, logs=logs, reporter=reporter,
               cache=request.cache_dir or config_cache_dir(), checks=[], strict=strict, worker=worker,
               checker=checking.Checker())  # fmt: skip
    variants: list[dict[str, Any]] = []
    try:
        # Targets whose checks outweigh their conversions go first, so that their checks run
        # beside the other targets' conversions instead of after the last one.
        order = sorted(range(len(plans)), key=lambda i: not plans[i][0].slow_checks)
        planned = {i: _run_plan(*plans[i], run, failures) for i in order}
        run.worker.close()  # every conversion is done; its process is not needed for the checks left
        with reporter.step("checks", "the last variants checked in their runtimes"):
            for (target, _, _), entries in zip(plans, (planned[i] for i in range(len(plans))), strict=True):
                records = [_settle(entry, run, failures) for entry in entries]
                _judge(target, records, run, failures)
                variants.extend(records)
    finally:
        run.checker.close()
        run.worker.close()
    result.warnings.extend(run.warnings)
    names = [t.name for t in targets]
    failures.sort(key=lambda f: names.index(f.target) if f.target in names else len(names))  # as asked, not as run
    _give_up_if_nothing_built(failures, variants, result.targets)
    record = _record(spec, source, variants, skipped, generated, config)
    record["checks"] = run.checks
    if failures:
        record["failed"] = [f.to_json() for f in failures]
    kept = _keep_logs(run.logs, vdir)
    if kept:
        record["logs"] = kept
    _write_outputs(vdir, spec, record, inputs)
    result.record = record
    return result


def _warm_up(targets: list[Target]) -> None:
    """While the worker imports the model's framework and converts it, this process imports what
    it needs next (onnx, onnxruntime: seconds) and the targets start what their checks need."""

    def load() -> None:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        for target in targets:
            with contextlib.suppress(Exception):  # the target's checks meet the same failure, named
                target.warm_up()

    threading.Thread(target=load, name="packager-warm-up", daemon=True).start()


def _fingerprint(request: BuildRequest, config: Config, targets: list[Target], source: importers.Source,
                 samples_path: Path | None, name: str, version: str) -> rebuild.Inputs:  # fmt: skip
    """What decides this build (packager.rebuild)."""
    settings = {
        "targets": sorted(t.name for t in targets), "precisions": request.precisions, "name": name,
        "version": version, "strict": request.strict, "latency": request.latency,
        "options": request.target_options, "input_shapes": request.input_shapes,
        "config": config.values, "tables": config.target_tables,
    }  # fmt: skip
    return rebuild.inputs(source_kind=source.kind, source_path=source.location, source_sha256=source.sha256,
                          samples=samples_path, settings=settings)  # fmt: skip


def _plan_targets(targets: list[Target], spec: ModelSpec, config: Config, cli: dict[str, Any], explicit: bool,
                  strict: bool, reporter: Reporter) -> tuple[list[tuple[Target, TargetSettings, list[Step]]],
                                                             list[dict[str, str]], list[Failure]]:  # fmt: skip
    """Each target's plan. A refusal skips the target under ``--target all``; a target asked for by
    name that refuses is a failure (the error itself when it is the only target, or with --strict)."""
    plans: list[tuple[Target, TargetSettings, list[Step]]] = []
    skipped: list[dict[str, str]] = []
    failures: list[Failure] = []
    for target in targets:
        reason = _refusal(target, spec)
        if reason is None:
            settings = config.for_target(target.name, target.Options, cli)
            wanted = tuple(p for p in settings.precisions if p in target.precisions)
            try:
                plans.append((target, settings, _propagate_skips(target.plan(spec, settings.options, wanted))))
                continue
            except PackagerError as exc:  # refused at plan time (an engine that cannot take it)
                reason = exc
        if reason is not None:
            if explicit and (len(targets) == 1 or strict):
                raise _with_takers(reason, target, spec)
            if explicit:
                failures.append(Failure(target=target.name, step="", error=reason))
                reporter.note(f"target '{target.name}' refused: {reason.one_line()}")
                continue
            skipped.append({"target": target.name, "reason": reason.one_line()})
            reporter.note(f"skipping target '{target.name}': {reason.one_line()}")
    return plans, skipped, failures


def _with_takers(error: PackagerError, refused: Target, spec: ModelSpec) -> PackagerError:
    """A refusal that ends the build names the installed targets whose own checks take the model."""
    from packager.plugins import load_target, target_names

    takers = []
    for name in target_names():
        if name == refused.name:
            continue
        with contextlib.suppress(PackagerError):
            if _refusal(load_target(name), spec) is None:
                takers.append(name)
    if takers:
        also = f"targets that take this model: {', '.join(takers)}"
        error.hint = f"{error.hint}; {also}" if error.hint else also
    return error


def _config_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """``input_shapes = {x = [1, 3, 320, 320]}`` from the config file, checked for its type."""
    table = config.get("input_shapes") or {}
    found: dict[str, tuple[int, ...]] = {}
    for name, dims in table.items():
        if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise ConfigError(f"`input_shapes.{name}` must be an array of integers, e.g. [1, 3, 320, 320]")
        found[name] = tuple(dims)
    return found


def _give_up_if_nothing_built(failures: list[Failure], variants: list[dict[str, Any]], asked: int) -> None:
    """The build fails whole (nothing written) when its one target failed, or when no variant of
    any target was built; otherwise it is kept and the CLI reports the failed targets."""
    if not failures:
        return
    built = [v for v in variants if v["fidelity"]["status"] != "failed"]
    if asked == 1 or not built:
        raise failures[0].error


def _import_model(source: importers.Source, workdir: Path, worker: isolation.Worker, log: Path) -> Imported:
    """The importer (torch.onnx, tf2onnx, skl2onnx) runs in the worker, like every converter; its
    model comes back as bytes, and its reference runs there too. An ONNX file is only read."""
    if source.kind == "onnx":
        return importers.run_importer(source, workdir)
    import onnx

    found = worker.call("import", importers.import_kept, (source, workdir), log, Path.cwd())
    reference = functools.partial(_kept_reference, worker, source.sha256, log) if found.has_reference else None
    return Imported(model=onnx.load_from_string(found.model), original=found.original, reference=reference,
                    reference_runtime=found.reference_runtime, labels=found.labels, task=found.task)  # fmt: skip


def _kept_reference(worker: isolation.Worker, key: str, log: Path, inputs: list[Any]) -> list[Any]:
    return list(worker.call("reference", importers.reference_kept, (key, inputs), log, Path.cwd()))


def _import(source: importers.Source, samples_path: Path | None, config: Config, name: str, version: str,
            vdir: Path, reporter: Reporter, wanted: Mapping[str, tuple[int, ...]], worker: isolation.Worker,
            log: Path) -> tuple[ModelSpec, Imported, bool]:  # fmt: skip
    start = time.perf_counter()
    with reporter.step("import", f"import {source.format} model to ONNX"):
        imported = _import_model(source, vdir / "source", worker, log)
        prep = config.preprocessing()
        model = importers.canonicalize(imported, prep, Path(source.location).name)
        labels = tuple(config.get("labels")) if config.get("labels") else None
        spec = importers.build_spec(source=source, imported=imported, model=model,
                                    onnx_path=vdir / "source" / "model.onnx", name=name,
                                    version=version, prep=prep, labels=labels)  # fmt: skip
        fixed = samples.check_shapes(wanted, spec.signature)
        if samples_path is not None:
            spec.samples = samples.load(samples_path, spec.signature, fixed)
        else:
            count, seed = int(config.get("num_samples")), int(config.get("seed"))
            spec.samples = samples.generate(spec.signature, count, seed, fixed)
    reporter.done("import", f"{len(spec.ops)} op types, {spec.num_samples} samples", time.perf_counter() - start)
    return spec, imported, samples_path is None


def _reference(spec: ModelSpec, imported: Imported, reporter: Reporter) -> None:
    start = time.perf_counter()
    with reporter.step("reference", "run the source model on the samples"):
        spec.reference, spec.reference_runtime = importers.reference_outputs(spec, imported)
    reporter.done("reference", f"source outputs from {spec.reference_runtime}", time.perf_counter() - start)


def _propagate_skips(steps: list[Step]) -> list[Step]:
    """A step that needs a step that is not built is not built either, for the same reason."""
    reasons: dict[str, str] = {}
    result = []
    for step in steps:
        reason = step.skipped or next((reasons[r] for r in step.requires if r in reasons), "")
        if reason:
            reasons[step.name] = reason
            step = dataclasses.replace(step, skipped=reason)
        result.append(step)
    return result


def _refusal(target: Target, spec: ModelSpec) -> PackagerError | None:
    if spec.source_format not in target.accepts:
        return UsageError(
            f"target '{target.name}' does not take {spec.source_format} models",
            hint=f"it takes: {', '.join(sorted(target.accepts))}",
        )
    try:
        target.check(spec)
    except PackagerError as exc:
        return exc
    return None


def _run_plan(target: Target, settings: TargetSettings, steps: list[Step], run: _Run,
              failures: list[Failure]) -> list[_Variant]:  # fmt: skip
    """Run a target's steps in order in the worker, handing each variant to the checker as soon as
    it is converted. A failed step costs the steps that need it: a lower-precision variant becomes
    a ``failed`` record; an intermediate or fp32 step fails the target."""
    artifacts: dict[str, Path] = {}
    broken: dict[str, str] = {}
    entries: list[_Variant] = []
    for step in steps:
        if step.skipped:  # said before the build ran (_build)
            continue
        blocker = next((r for r in step.requires if r in broken), None)
        if blocker is not None:
            broken[step.name] = f"not built: step '{blocker}' failed"
            run.reporter.note(f"{step.name}: {broken[step.name]}")
            continue
        start = time.perf_counter()
        log = run.logs / target.name / f"{step.name}.log"
        try:
            with run.reporter.step(step.name, step.description), run.checker.turns.converting():
                artifacts[step.name], out_dir = _run_step(target, settings, step, run, artifacts, log)
        except PackagerError as exc:
            if run.strict:
                raise
            broken[step.name] = exc.one_line()
            run.reporter.note(f"{step.name}: failed: {exc.one_line()}")
            if step.variant is not None:
                entries.append(_Variant(target=target, settings=settings, step=step,
                                        record=_unbuilt_record(target, settings, step, exc)))  # fmt: skip
            if step.variant is None or step.variant.precision == "fp32":
                failures.append(Failure(target=target.name, step=step.name, error=exc,
                                        log=f"logs/{target.name}/{step.name}.log"))  # fmt: skip
            continue
        converted = time.perf_counter() - start
        if step.variant is None:
            run.reporter.done(step.name, "intermediate", converted)
            continue
        entries.append(_check(target, settings, step, out_dir, converted, run))
        if run.strict:  # stop at the first failure: this check is waited for
            _judge(target, [_settle(entries[-1], run, failures)], run, failures)
    return entries


def _check(target: Target, settings: TargetSettings, step: Step, out_dir: Path, converted: float,
           run: _Run) -> _Variant:  # fmt: skip
    """Hand the converted variant to the checker; its line is printed when its check ends."""
    check = checking.Check(target=target, settings=settings, step=step, spec=run.spec, vdir=run.vdir,
                           out_dir=out_dir, cache=run.cache, latency=bool(settings.latency))  # fmt: skip
    future = run.checker.submit(check)

    def report(done: Future[checking.Checked]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        checked = done.result()
        if checked.error is not None:
            run.reporter.note(f"{step.name}: failed: {checked.error.one_line()}")
        elif checked.record is not None:
            detail = f"{checked.record['bytes']:,} B, {_verdict(checked.record['fidelity'])}"
            run.reporter.done(step.name, detail, converted + checked.seconds)

    future.add_done_callback(report)
    return _Variant(target=target, settings=settings, step=step, future=future)


def _settle(entry: _Variant, run: _Run, failures: list[Failure]) -> dict[str, Any]:
    """The variant's record once its check is done. A check stopped by a PackagerError is the
    variant's failure (the target's, for fp32), as a conversion's would be."""
    if entry.record is not None:
        return entry.record
    assert entry.future is not None
    checked = entry.future.result()  # an exception here is packager's own bug: it propagates
    step = entry.step
    if checked.error is not None:
        if run.strict:
            raise checked.error
        if step.variant is not None and step.variant.precision == "fp32":
            failures.append(Failure(target=entry.target.name, step=step.name, error=checked.error,
                                    log=f"logs/{entry.target.name}/{step.name}.log"))  # fmt: skip
        entry.record = _unbuilt_record(entry.target, entry.settings, step, checked.error)
    else:
        assert checked.record is not None
        entry.record = checked.record
    entry.future = None
    return entry.record


def _run_step(target: Target, settings: TargetSettings, step: Step, run: _Run, artifacts: dict[str, Path],
              log: Path) -> tuple[Path, Path]:  # fmt: skip
    """Run one step (in the worker process when it can be sent there); returns (artifact, out_dir)."""
    variant_dir = run.vdir / target.name / step.variant.id if step.variant else None
    out_dir = variant_dir or run.scratch / target.name / step.name
    out_dir.mkdir(parents=True)
    tmp = run.scratch / "tmp" / target.name / step.name
    tmp.mkdir(parents=True)
    inputs = {r: artifacts[r] for r in step.requires}
    if step.requires:
        inputs["model"] = artifacts[step.requires[0]]
    ctx = StepContext(spec=run.spec, options=settings.options, out_dir=out_dir, tmp_dir=tmp,
                      inputs=inputs, log=run.reporter.note, cache_dir=run.cache, checks=run.checks)  # fmt: skip
    if isolation.isolatable(step):
        outcome = run.worker.run(step, ctx, log)
        for note in outcome.notes:
            run.reporter.note(note)
        run.checks.extend(outcome.checks)
        artifact = outcome.artifact
    else:  # a plugin's step that cannot be sent to another process runs here
        artifact = step.run(ctx)
    shutil.rmtree(tmp, ignore_errors=True)
    return artifact, out_dir


def _verdict(fid: dict[str, Any]) -> str:
    detail = str(fid["status"])
    if "max_abs_err" in fid:
        detail += f", max abs err {fid['max_abs_err']}"
    if "top1_agreement" in fid:
        detail += f", top-1 {fid['top1_agreement']:.4f}"
    if fid["status"] != "verified" and fid.get("reason"):
        detail += f" ({fid['reason'].split(';')[0][:100]})"
    return detail


def _unbuilt_record(target: Target, settings: TargetSettings, step: Step, exc: PackagerError) -> dict[str, Any]:
    """The record of a variant whose conversion failed: kept for the record, never published."""
    info = step.variant
    assert info is not None
    limits = checking.tolerance_of(settings, info.precision)
    return {
        "id": info.id, "target": target.name, "precision": info.precision,
        "runtime": {"name": info.runtime, "min_version": info.min_version},
        "files": [], "bytes": 0,
        "fidelity": {"status": "failed", "stage": "conversion", "reason": f"not built: {' '.join(exc.message.split())}",
                     "tolerance": limits},
    }  # fmt: skip


def _record(spec: ModelSpec, source: importers.Source, variants: list[dict[str, Any]],
            skipped: list[dict[str, str]], generated: bool, config: Config) -> dict[str, Any]:  # fmt: skip
    vdir = spec.onnx_path.parent.parent
    model: dict[str, Any] = {
        "name": spec.name, "version": spec.version,
        "source": {"format": spec.source_format, "sha256": spec.source_sha256,
                   "file": Path(source.location).name if source.kind != "factory" else source.location},
        "signature": spec.signature.to_json(),
        "canonical": file_entry(spec.onnx_path, vdir) | {"ops": spec.ops},
    }  # fmt: skip
    if spec.original_path is not None:
        model["original"] = [e for e in file_entries(vdir / "source", vdir) if e["path"] != "source/model.onnx"]
    state = spec.signature.state()
    if state:  # fed back call after call: clients carry it
        model["state"] = state
    if spec.labels:
        model["labels"] = list(spec.labels)
    if spec.samples and spec.reference:  # what the fleet's drift is measured against
        from packager.fleet.drift import reference

        model["reference"] = reference(spec.samples, spec.reference)
    if spec.task:
        model["task"] = spec.task
    if not spec.preprocessing.empty:
        model["preprocessing"] = spec.preprocessing.to_json()
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "packager": __version__,
        "model": model,
        "validation": {
            "samples": "validation/samples.npz", "reference": "validation/reference.npz",
            "count": spec.num_samples, "generated": generated, "reference_runtime": spec.reference_runtime,
        } | ({"seed": int(config.get("seed"))} if generated else {}),
        "variants": variants,
        "checks": [],
    }  # fmt: skip
    if skipped:
        record["skipped"] = skipped
    return record


def _judge(target: Target, records: list[dict[str, Any]], run: _Run, failures: list[Failure]) -> None:
    """fp32 out of tolerance means the conversion is wrong: the target failed. Lower precisions warn."""
    for variant in records:
        fid = variant["fidelity"]
        if fid["status"] != "failed":
            continue
        message = f"variant '{variant['id']}' failed validation: {fid.get('reason', '')}"
        if fid.get("stage") == "conversion":
            if variant["precision"] != "fp32":
                run.warnings.append(f"variant '{variant['id']}' {fid['reason']} (kept in build.json, never published)")
            continue
        if variant["precision"] == "fp32":
            error = FidelityError(message, hint="the conversion is wrong; check the source model's ops and report it")
            if run.strict:
                raise error
            failures.append(Failure(target=target.name, step=variant["id"], error=error))
            continue
        if run.strict:
            raise FidelityError(message, hint="drop --strict to keep the build with this variant marked failed")
        run.warnings.append(message + " (kept in build.json, never published)")


def _keep_logs(logs: Path, vdir: Path) -> list[dict[str, Any]]:
    """Move the steps' non-empty logs into the version folder; returns what each holds."""
    kept: list[dict[str, Any]] = []
    if not logs.is_dir():
        return kept
    for path in sorted(logs.rglob("*.log")):
        text = path.read_text(errors="replace")
        if not text.strip():
            continue
        rel = Path("logs") / path.relative_to(logs)
        (vdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), vdir / rel)
        lines = text.splitlines()
        warnings = sum("warn" in line.lower() for line in lines)
        kept.append({"path": rel.as_posix(), "lines": len(lines), "warnings": warnings})
    shutil.rmtree(logs, ignore_errors=True)
    return kept


def _write_outputs(vdir: Path, spec: ModelSpec, record: dict[str, Any], inputs: rebuild.Inputs) -> None:
    (vdir / "validation").mkdir()
    samples.save_npz(vdir / "validation" / "samples.npz", spec.samples)
    samples.save_npz(vdir / "validation" / "reference.npz", spec.reference)
    record["validation"]["files"] = file_entries(vdir / "validation", vdir)  # what `packager verify` checks
    # What a later build compares to know it is up to date, or that it would replace another (packager.rebuild).
    record["inputs"] = {"request": inputs.request, "tree": rebuild.tree_digest(vdir)}
    if inputs.fingerprint is not None:
        record["inputs"]["fingerprint"] = inputs.fingerprint
    write_json(vdir / "build.json", record)
    (vdir / "report.html").write_text(report.render(record), encoding="utf-8")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _check_set_targets(request: BuildRequest, targets: list[Target]) -> None:
    names = [t.name for t in targets]
    for name in request.target_options:
        if name not in names:
            raise UsageError(f"--set {name}.…: '{name}' is not a target of this build{did_you_mean(name, names)}",
                             hint=f"this build's targets: {', '.join(names)}")  # fmt: skip


def _check_name(value: str, what: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
        raise UsageError(
            f"invalid model {what} '{value}': use letters, digits, '.', '_' and '-' (at most 128)",
            hint=f"pass --{what} with a simple {what}",
        )
