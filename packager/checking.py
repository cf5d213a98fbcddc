"""Variants checked in their own runtimes on threads beside the worker.

A build has three kinds of work: conversions, which run in the worker process one at a time;
checks, which load each variant in its runtime here (headless Chromium, the Lambda runtime
client, onnxruntime, LiteRT) and run the samples through it; and latency runs, which time one
sample at a time. A check needs its variant converted, and nothing else: so while the worker
converts the next step, the variant before it is checked, and a build's wall time is about its
conversions plus what of the checks cannot hide behind them (two cores both busy, as ``make -j2``
keeps them).

Latency is a figure in ``build.json``, and a figure taken beside a converter on the other core is
a slower one (measured: the Lambda bundle's p50 doubles, the browser pages' grows by a quarter).
So latency runs alone: on a thread of their own, each waits for the conversion and the check in
progress to end, and holds the next ones back while it runs (``Turns``). Loading a variant is not
timed alone: a Lambda function's init time measured with one core busy stayed within the spread
of quiet runs (0.7 to 1.5 s for the digits bundle, either way).
"""

from __future__ import annotations

import contextlib
import os
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
from packager.target import Runner, RuntimeUnavailable, Step, Target

CHECK_NICENESS = 10


class Turns:
    """Who may run now: conversions and checks side by side, latency runs alone.

    A latency run waits for the conversion and the check in progress. While it waits, no check
    starts unless a conversion runs (the run could not start then anyway), and no conversion
    starts unless a check runs (so a conversion never waits for a check to end). At most
    ``MAX_UNTIMED`` checked variants wait for their latency run, each holding its runtime open
    (a page, a function's process): past that, checks wait for them.
    """

    MAX_UNTIMED = 4

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._converting = False
        self._checking = False
        self._measuring = False
        self._waiting = 0  # latency runs waiting for their turn
        self._untimed = 0  # checked variants handed to the latency thread and not yet timed

    @contextlib.contextmanager
    def converting(self) -> Iterator[None]:
        def may_start() -> bool:
            return not self._measuring and (self._checking or not self._waiting)

        with self._holding("_converting", may_start):
            yield

    @contextlib.contextmanager
    def checking(self) -> Iterator[None]:
        def may_start() -> bool:
            room = self._untimed < self.MAX_UNTIMED
            return room and not self._measuring and (self._converting or not self._waiting)

        with self._holding("_checking", may_start):
            yield

    def untimed(self, change: int) -> None:
        """A checked variant handed to the latency thread (+1), or timed (-1)."""
        with self._cond:
            self._untimed += change
            self._cond.notify_all()

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
        try:
            with self._holding("_measuring", lambda: not (self._converting or self._checking or self._measuring)):
                yield
        finally:
            with self._cond:
                self._cond.notify_all()

    @contextlib.contextmanager
    def _holding(self, flag: str, may_start: Callable[[], bool]) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(may_start)
            setattr(self, flag, True)
            if flag == "_measuring":
                self._waiting -= 1
        try:
            yield
        finally:
            with self._cond:
                setattr(self, flag, False)
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
    """Checks variants in the order they are handed in (one thread), and times those that pass
    their check (another thread), each alone (``turns``)."""

    def __init__(self) -> None:
        self.turns = Turns()
        self._checks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="packager-check", initializer=_yield_cpu)
        self._timing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="packager-latency")

    def submit(self, check: Check) -> Future[Checked]:
        done: Future[Checked] = Future()
        self._checks.submit(self._check, check, done)
        return done

    def _check(self, check: Check, done: Future[Checked]) -> None:
        began = time.perf_counter()
        try:
            with self.turns.checking():
                began = time.perf_counter()  # what the check costs, not its wait for a turn
                record, details, runner = check_variant(check)
                tail = details | _tail(check)
        except PackagerError as exc:
            done.set_result(Checked(record=None, error=exc, seconds=time.perf_counter() - began))
            return
        except BaseException as exc:  # packager's own bug: the build reports it
            done.set_exception(exc)
            return
        worked = time.perf_counter() - began
        if runner is None:
            done.set_result(Checked(record=record | tail, error=None, seconds=worked))
            return
        self.turns.untimed(+1)
        self._timing.submit(self._time, check, record, tail, runner, done, worked)

    def _time(self, check: Check, record: dict[str, Any], tail: dict[str, Any], runner: Runner,
              done: Future[Checked], worked: float) -> None:  # fmt: skip
        try:
            with self.turns.measuring():
                began = time.perf_counter()
                record["latency_ms"] = validate.latency(runner, check.spec.samples, check.spec.signature)
                worked += time.perf_counter() - began
        except Exception as exc:  # the variant ran its samples but not this: its verdict, not a crash
            record["fidelity"] |= {"status": "failed", "reason": f"the variant failed to run: {first_line(exc)}"}
        finally:
            runner.close()
            self.turns.untimed(-1)
        done.set_result(Checked(record=record | tail, error=None, seconds=worked))

    def close(self) -> None:
        """Wait for the checks in progress (a page or a function is never left running); drop the rest."""
        self._checks.shutdown(wait=True, cancel_futures=True)
        self._timing.shutdown(wait=True, cancel_futures=True)


def _yield_cpu() -> None:
    """Lower this thread's priority (and so that of the pages and functions it starts): the
    conversions are the build's critical path, and the checks fill the CPU they leave."""
    with contextlib.suppress(OSError, AttributeError):  # setpriority on a thread is Linux's
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICENESS)


def check_variant(check: Check) -> tuple[dict[str, Any], dict[str, Any], Runner | None]:
    """The variant's record (its files, and its fidelity measured in its own runtime), what its
    runner reported (a Lambda function's init time), and the runner, still open when its latency
    is to be measured (the caller then closes it)."""
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
        runner = check.target.runner(check.out_dir, info.main_file, check.cache)
    except RuntimeUnavailable as exc:
        record["fidelity"] = {"status": "unverified", "reason": str(exc), "tolerance": limits}
        if exc.evidence:
            record["fidelity"]["evidence"] = exc.evidence
        return record, {}, None
    except Exception as exc:  # the runtime refuses the variant: that is its verdict, not a crash
        record["fidelity"] = {"status": "failed", "reason": f"the variant does not load: {first_line(exc, 300)}",
                              "tolerance": limits}  # fmt: skip
        return record, {}, None
    spec = check.spec
    try:
        fidelity = validate.fidelity(runner, spec.samples, spec.reference, check.settings.tolerance[info.precision],
                                     spec.task, spec.signature)  # fmt: skip
        details = runner.details() if hasattr(runner, "details") else {}
    except Exception as exc:  # the variant does not run: that is its verdict, not a crash
        fidelity = {"status": "failed", "runtime": runner.runtime_label,
                    "reason": f"the variant failed to run: {first_line(exc)}"}  # fmt: skip
        details = {}
    record["fidelity"] = fidelity | {"tolerance": limits}
    timed = check.latency and fidelity["status"] != "failed" and getattr(runner, "measures_latency", True)
    if not timed:  # not asked, failed, or not here in time (an emulator)
        runner.close()
        return record, details, None
    return record, details, runner


def tolerance_of(settings: TargetSettings, precision: str) -> dict[str, float]:
    tolerance = settings.tolerance[precision]
    return {"atol": tolerance.atol, "rtol": tolerance.rtol, "min_top1_agreement": tolerance.min_top1_agreement}


def _tail(check: Check) -> dict[str, Any]:
    """What a record ends with: fixed shapes, state, the memory estimate, notes."""
    info = check.step.variant
    assert info is not None
    tail: dict[str, Any] = {}
    if check.target.static_shapes:
        tail["input_shapes"] = shapes.one_sample(check.spec)
    state = check.spec.signature.state()
    if state:  # what a device carries from call to call (packager.client does)
        tail["state"] = state
    memory = check.target.peak_memory_mb(check.spec, check.out_dir, info.main_file)
    if memory is not None:
        tail["peak_memory_mb"] = memory
    if info.notes:
        tail["notes"] = info.notes
    return tail
