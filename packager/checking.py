"""Variants checked in their own runtimes on a thread beside the worker.

A build has two kinds of work: conversions, which run in the worker process (one at a time), and
checks, which load each variant in its runtime here and run the samples through it (headless
Chromium, the Lambda runtime client, onnxruntime, LiteRT). They need each other only in one
direction: a check needs its variant converted. So while the worker converts the next step, the
variant before it is checked on the ``Checker``'s thread, and a build's wall time is about its
conversions plus what of the checks cannot hide behind them: two cores both busy, as ``make -j2``
keeps them.

What is measured in time is measured alone: latency runs, and loading a variant whose load is
itself a figure (a Lambda function's init), wait for the worker to finish the step it is on and
hold the next one back until they are done (``Turns``), so that no figure in ``build.json`` is
slowed down by a converter on the other core.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager import shapes, validate
from packager.config import TargetSettings
from packager.errors import PackagerError, first_line
from packager.output import file_entries
from packager.spec import ModelSpec
from packager.target import RuntimeUnavailable, Step, Target


class Turns:
    """Conversions and timed measurements take turns; everything else runs side by side.

    ``converting()`` (the worker's steps) waits while a measurement runs or waits to run, so a
    measurement waits for at most the step in progress; ``measuring()`` waits for that step.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._converting = False
        self._measuring = False
        self._waiting = 0

    @contextlib.contextmanager
    def converting(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._measuring and not self._waiting)
            self._converting = True
        try:
            yield
        finally:
            with self._cond:
                self._converting = False
                self._cond.notify_all()

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._converting and not self._measuring)
            self._waiting -= 1
            self._measuring = True
        try:
            yield
        finally:
            with self._cond:
                self._measuring = False
                self._cond.notify_all()


@dataclass(frozen=True, kw_only=True)
class Check:
    """One variant to check: what ``check_variant`` needs."""

    target: Target
    settings: TargetSettings
    step: Step
    spec: ModelSpec
    vdir: Path
    out_dir: Path
    cache: Path
    latency: bool


@dataclass(frozen=True, kw_only=True)
class Checked:
    """A check's outcome: the variant's record, or the PackagerError that stopped it."""

    record: dict[str, Any] | None
    error: PackagerError | None
    seconds: float


class Checker:
    """One thread that checks variants in the order they are handed in."""

    def __init__(self) -> None:
        self.turns = Turns()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="packager-check")

    def submit(self, check: Check) -> Future[Checked]:
        return self._pool.submit(self._run, check)

    def _run(self, check: Check) -> Checked:
        start = time.perf_counter()
        try:
            record = check_variant(check, self.turns.measuring)
        except PackagerError as exc:
            return Checked(record=None, error=exc, seconds=time.perf_counter() - start)
        return Checked(record=record, error=None, seconds=time.perf_counter() - start)

    def close(self) -> None:
        """Wait for the check in progress (a page or a function is never left running); drop the rest."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _alone() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def check_variant(check: Check, alone: Callable[[], contextlib.AbstractContextManager[None]] = _alone
                  ) -> dict[str, Any]:  # fmt: skip
    """The variant's record: its files, and its fidelity and latency measured in its own runtime.
    ``alone`` is held while something is timed (latency, a load that is a figure)."""
    info = check.step.variant
    assert info is not None
    limits = tolerance_of(check.settings, info.precision)
    files = file_entries(check.out_dir, check.vdir)
    record: dict[str, Any] = {
        "id": info.id, "target": check.target.name, "precision": info.precision,
        "runtime": {"name": info.runtime, "min_version": info.min_version},
        "main_file": (check.out_dir / info.main_file).relative_to(check.vdir).as_posix(),
        "files": files, "bytes": sum(f["bytes"] for f in files),
    }  # fmt: skip
    if info.arch:
        record["arch"] = info.arch
    try:
        with alone() if check.target.timed_load else contextlib.nullcontext():
            runner = check.target.runner(check.out_dir, info.main_file, check.cache)
    except RuntimeUnavailable as exc:
        record["fidelity"] = {"status": "unverified", "reason": str(exc), "tolerance": limits}
        if exc.evidence:
            record["fidelity"]["evidence"] = exc.evidence
        return _finish(record, check)
    except Exception as exc:  # the runtime refuses the variant: that is its verdict, not a crash
        record["fidelity"] = {"status": "failed", "reason": f"the variant does not load: {first_line(exc, 300)}",
                              "tolerance": limits}  # fmt: skip
        return _finish(record, check)
    spec = check.spec
    try:
        fidelity = validate.fidelity(runner, spec.samples, spec.reference, check.settings.tolerance[info.precision],
                                     spec.task, spec.signature)  # fmt: skip
        latency = None
        if check.latency and getattr(runner, "measures_latency", True):  # not under an emulator
            with alone():
                latency = validate.latency(runner, spec.samples, spec.signature)
        details = runner.details() if hasattr(runner, "details") else {}
    except Exception as exc:  # the variant does not run: that is its verdict, not a crash
        fidelity = {"status": "failed", "runtime": runner.runtime_label,
                    "reason": f"the variant failed to run: {first_line(exc)}"}  # fmt: skip
        latency, details = None, {}
    finally:
        runner.close()
    record["fidelity"] = fidelity | {"tolerance": limits}
    if latency is not None:
        record["latency_ms"] = latency
    record.update(details)
    return _finish(record, check)


def tolerance_of(settings: TargetSettings, precision: str) -> dict[str, float]:
    tolerance = settings.tolerance[precision]
    return {"atol": tolerance.atol, "rtol": tolerance.rtol, "min_top1_agreement": tolerance.min_top1_agreement}


def _finish(record: dict[str, Any], check: Check) -> dict[str, Any]:
    info = check.step.variant
    assert info is not None
    if check.target.static_shapes:
        record["input_shapes"] = shapes.one_sample(check.spec)
    state = check.spec.signature.state()
    if state:  # what a device carries from call to call (packager.client does)
        record["state"] = state
    memory = check.target.peak_memory_mb(check.spec, check.out_dir, info.main_file)
    if memory is not None:
        record["peak_memory_mb"] = memory
    if info.notes:
        record["notes"] = info.notes
    return record
