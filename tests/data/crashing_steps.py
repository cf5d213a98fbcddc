"""Step functions that misbehave on purpose, for the isolation tests.

They live in a module (not in the test) so that the step worker, a fresh interpreter, can import
them by name, as it does every target's steps.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from packager.errors import UnsupportedOpError
from packager.spec import ModelSpec
from packager.target import Runner, RuntimeUnavailable, Step, StepContext, Target, VariantInfo


def ok(ctx: StepContext) -> Path:
    out = ctx.out_dir / "artifact.txt"
    out.write_text("made in the worker")
    ctx.log("a note from the worker")
    ctx.check("crash.bytes", 3, 10)
    return out


def noisy(ctx: StepContext) -> Path:
    print("printed by the converter")
    os.write(2, b"written to descriptor 2 by native code\n")
    Path("stray.data").write_text("a converter that writes where it runs")
    return ok(ctx)


def refuses(ctx: StepContext) -> Path:
    raise UnsupportedOpError("this converter cannot take op Fancy", hint="use another target")


def raises(ctx: StepContext) -> Path:
    raise ValueError("Cannot take the length of shape with unknown rank.")


def illegal_instruction(ctx: StepContext) -> Path:
    sys.stdout.write("about to die\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGILL)
    time.sleep(30)
    raise AssertionError("unreachable")


def hangs(ctx: StepContext) -> Path:
    time.sleep(600)
    raise AssertionError("unreachable")


def exits(ctx: StepContext) -> Path:
    os._exit(3)


class CrashTarget(Target):
    """A target whose fp32 step dies by SIGILL (as TensorFlow's oneDNN kernels did in onnx2tf)."""

    name = "crash"
    summary = "dies on purpose"
    emits = "nothing"
    precisions = ("fp32",)

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        info = VariantInfo(id="crash-fp32", precision="fp32", runtime="c", min_version="1", main_file="artifact.txt")
        return [Step(name="crash-fp32", description="die", run=illegal_instruction, variant=info)]


class HalfBrokenTarget(Target):
    """A target whose fp32 step works (no runtime here: unverified) and whose fp16 conversion raises."""

    name = "half-broken"
    summary = "fp16 fails on purpose"
    emits = "artifact.txt"
    precisions = ("fp32", "fp16")

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        steps = []
        for precision, run in (("fp32", ok), ("fp16", raises)):
            info = VariantInfo(id=f"half-{precision}", precision=precision, runtime="c", min_version="1",
                               main_file="artifact.txt")  # fmt: skip
            steps.append(Step(name=info.id, description=precision, run=run, variant=info))
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> Runner:
        raise RuntimeUnavailable("no runtime for this test target")


# ---- checks beside conversions (packager.checking) -------------------------------------------


def _wait_for(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def first(ctx: StepContext) -> Path:
    return ok(ctx)


def second_waits_for_the_first_check(ctx: StepContext) -> Path:
    """Converts only once the variant before it is being checked: a build that checks after its
    conversions (not beside them) never gets here, and the check below times out."""
    (ctx.out_dir.parent / "second-started").touch()
    if not _wait_for(ctx.out_dir.parent / "first-checked", 60):
        raise RuntimeError("the first variant was never checked while this step ran")
    return ok(ctx)


def converting_marked(ctx: StepContext) -> Path:
    """A conversion that says it runs (a marker file) for a while."""
    marker = ctx.out_dir.parent / "converting"
    marker.touch()
    try:
        _wait_for(ctx.out_dir.parent / "never", 3)
        return ok(ctx)
    finally:
        marker.unlink()


class SourceRunner:
    """The source model in onnxruntime. overlap-first's first call waits for the next conversion
    to start; the first one-sample call (a latency run) fails if a conversion starts beside it."""

    runtime_label = "onnxruntime (the source model)"

    def __init__(self, variant_dir: Path) -> None:
        import onnxruntime as ort

        self.folder, self.name = variant_dir.parent, variant_dir.name
        self.first_call, self.first_single = True, True
        source = variant_dir.parent.parent / "source" / "model.onnx"
        self.session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.first_call and self.name == "overlap-first":
            if not _wait_for(self.folder / "second-started", 60):
                raise RuntimeError("the next conversion never started while this variant was checked")
            (self.folder / "first-checked").touch()
        self.first_call = False
        if self.first_single and len(next(iter(inputs.values()))) == 1:
            self.first_single = False
            if _wait_for(self.folder / "converting", 2):  # a latency run of 2 s
                raise RuntimeError("timed while a conversion ran beside it")
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, dict(inputs)), strict=True))

    def close(self) -> None:
        pass


class OverlapTarget(Target):
    """overlap-first is checked while overlap-second converts (which waits for that check)."""

    name = "overlap"
    summary = "checks beside conversions"
    emits = "artifact.txt"
    precisions = ("fp32",)
    steps: tuple[tuple[str, Any], ...] = (
        ("overlap-first", first),
        ("overlap-second", second_waits_for_the_first_check),
    )

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        steps = []
        for vid, run in self.steps:
            info = VariantInfo(id=vid, precision="fp32", runtime="c", min_version="1", main_file="artifact.txt")
            steps.append(Step(name=vid, description=vid, run=run, variant=info))
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> Runner:
        return SourceRunner(variant_dir)


class TimedTarget(OverlapTarget):
    """'timed' is timed once converted; 'marked', converted after it, must not run beside that."""

    name = "timed"
    steps = (("timed", first), ("marked", converting_marked))
