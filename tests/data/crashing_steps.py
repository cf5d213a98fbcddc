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
