"""Shadow runs on the device: the candidate beside stable on a sample of real calls.

The app gets stable's answer and nothing else. A sampled call's inputs (copied) and stable's
outputs go to one worker thread, which runs the candidate and compares; while it is busy, further
samples are skipped, so a shadow never queues work or delays a call. The candidate's time is held
to ``cpu_budget`` times stable's over the model's life: a sample that would go over is skipped.

Agreement: for an output with a class axis (last axis of 2 or more), the top-1 class of every
row; for any other output, every value within 1e-3 + 1e-2 * |stable's|. ``diff`` is the largest
absolute difference over the outputs both give. Outputs pair by name (in order when none share
a name); a shape that differs is a disagreement with no diff.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from packager.client import runtimes
from packager.client.telemetry import Telemetry

log = logging.getLogger("packager.client")
ATOL, RTOL = 1e-3, 1e-2


class Shadow:
    """The candidate's runner and the settings the signed pointer gave it."""

    def __init__(self, runner: runtimes.Runner, *, version: str, variant: str, sample: float, cpu_budget: float,
                 telemetry: Telemetry, seed: int | None = None) -> None:  # fmt: skip
        self.runner, self.telemetry = runner, telemetry
        self.version, self.variant = version, variant
        self.sample, self.cpu_budget = float(sample), float(cpu_budget)
        self.base_ms = 0.0  # stable's time over every call
        self.spent_ms = 0.0  # the candidate's
        self.runs = self.skipped = 0
        self._random = random.Random(seed)
        self._work: queue.Queue[tuple[dict[str, np.ndarray], dict[str, np.ndarray], float] | None] = queue.Queue(1)
        self._thread = threading.Thread(target=self._loop, name=f"packager-shadow-{variant}", daemon=True)
        self._thread.start()

    def offer(self, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], base_ms: float) -> bool:
        """Called after each stable call; True when this one was handed to the shadow."""
        self.base_ms += base_ms
        if self._random.random() >= self.sample:
            return False
        if self.spent_ms > self.cpu_budget * self.base_ms:
            self.skipped += 1
            return False
        item = ({k: np.array(v, copy=True) for k, v in feeds.items()}, dict(outputs), base_ms)
        try:
            self._work.put_nowait(item)
        except queue.Full:
            self.skipped += 1
            return False
        return True

    def drain(self, seconds: float = 30.0) -> None:
        """Wait (up to ``seconds``) until the shadow has run what it was handed."""
        deadline = time.monotonic() + seconds
        while self._work.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        self.drain()
        self._work.put(None)
        self._thread.join(timeout=5)
        self.runner.close()

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            try:
                if item is None:
                    return
                self._run(*item)
            finally:
                self._work.task_done()

    def _run(self, feeds: dict[str, np.ndarray], base: dict[str, np.ndarray], base_ms: float) -> None:
        start = time.perf_counter()
        try:
            theirs = self.runner.predict(feeds)
        except Exception as exc:  # the candidate's failure is telemetry, never the app's problem
            self.telemetry.record("error", version=self.version, variant=self.variant,
                                  detail=f"shadow: {type(exc).__name__}: {exc}")  # fmt: skip
            return
        ms = (time.perf_counter() - start) * 1000
        self.spent_ms += ms
        self.runs += 1
        agree, diff = compare(base, theirs)
        self.telemetry.shadowed(ms, version=self.version, variant=self.variant, base_ms=base_ms, agree=agree,
                                diff=diff)  # fmt: skip


def compare(base: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[bool, float | None]:
    """(agree, largest absolute difference) of two runs' outputs (see the module docstring)."""
    names = [n for n in base if n in theirs]
    pairs = [(base[n], theirs[n]) for n in names] or list(zip(base.values(), theirs.values(), strict=False))
    if not pairs:
        return False, None
    agree, diff = True, 0.0
    for ours, other in pairs:
        a = np.asarray(ours, dtype=np.float64)
        b = np.asarray(other, dtype=np.float64)
        if a.shape != b.shape:
            return False, None
        if a.size == 0:
            continue
        gap = np.abs(a - b)
        diff = max(diff, float(np.nanmax(gap)) if np.isfinite(gap).any() else float("inf"))
        if a.ndim >= 2 and a.shape[-1] >= 2:
            agree = agree and bool(np.array_equal(a.argmax(axis=-1), b.argmax(axis=-1)))
        else:
            agree = agree and bool(np.all(gap <= ATOL + RTOL * np.abs(a)))
    return agree, diff if np.isfinite(diff) and diff <= 1e15 else None
