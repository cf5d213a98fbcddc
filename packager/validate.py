"""Fidelity and latency: the shared mechanism every target's variants go through.

A variant is run in its own runtime (the target's Runner) on the sample inputs and compared with
the source model's outputs. Numbers here are measured, never assumed.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from packager import batching
from packager.config import Tolerance
from packager.spec import Signature
from packager.target import Runner

CHUNK = 32


def run_samples(runner: Runner, samples: Mapping[str, np.ndarray], signature: Signature,
                batched: bool) -> dict[str, np.ndarray]:  # fmt: skip
    """Run every sample, in chunks when the variant takes a batch, else one by one; each input is
    cut on its own batch axis and each output joined on its own."""
    count = batching.count(samples, signature.inputs)
    step = CHUNK if batched else 1
    parts = [runner.predict(batching.take(samples, signature.inputs, start, start + step))
             for start in range(0, count, step)]  # fmt: skip
    return batching.join(parts, signature.outputs)


def compare(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
            tolerance: Tolerance, task: str | None) -> dict[str, Any]:  # fmt: skip
    """Max abs error over float outputs, top-1 agreement over class outputs, and the verdict."""
    max_err = 0.0
    problems: list[str] = []
    agreements: list[float] = []
    for name, ref in reference.items():
        if name not in outputs:
            problems.append(f"output '{name}' is missing")
            continue
        got = np.asarray(outputs[name])
        if got.shape != ref.shape:
            problems.append(f"output '{name}' has shape {got.shape}, the source {ref.shape}")
            continue
        if np.issubdtype(ref.dtype, np.floating):
            if not np.all(np.isfinite(got)):
                problems.append(f"output '{name}' has NaN or inf")
                continue
            err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
            max_err = max(max_err, err)
            limit = tolerance.atol + tolerance.rtol * float(np.max(np.abs(ref), initial=0.0))
            if err > limit:
                problems.append(f"output '{name}' max abs error {err:.3g} > {limit:.3g}")
            if task != "regression" and ref.ndim == 2 and ref.shape[1] > 1:
                agreements.append(float(np.mean(np.argmax(got, 1) == np.argmax(ref, 1))))
        elif ref.ndim == 1 and task != "regression":
            agreements.append(float(np.mean(got == ref)))
        elif not np.array_equal(got, ref):
            problems.append(f"output '{name}' differs from the source")
    result: dict[str, Any] = {"max_abs_err": _round(max_err)}
    if agreements:
        top1 = min(agreements)
        result["top1_agreement"] = round(top1, 6)
        if top1 < tolerance.min_top1_agreement:
            problems.append(f"top-1 agreement {top1:.4f} < {tolerance.min_top1_agreement}")
    result["status"] = "failed" if problems else "verified"
    if problems:
        result["reason"] = "; ".join(problems)
    return result


def fidelity(runner: Runner, samples: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
             tolerance: Tolerance, task: str | None, signature: Signature) -> dict[str, Any]:  # fmt: skip
    outputs = run_samples(runner, samples, signature, batching.axis_zero(signature.inputs))
    verdict = compare(reference, outputs, tolerance, task)
    record: dict[str, Any] = {
        "status": verdict.pop("status"),
        "runtime": runner.runtime_label,
        "samples": batching.count(samples, signature.inputs),
    }
    record.update(verdict)
    return record


def latency(runner: Runner, samples: Mapping[str, np.ndarray], signature: Signature, *, max_runs: int = 200,
            min_runs: int = 20, budget_s: float = 0.5) -> dict[str, Any]:  # fmt: skip
    """p50/p90 of single-sample predictions after 3 warm-up calls: 200 runs, or as many as fit in
    half a second but at least 20 (a p90 from fewer says little). Nothing else of the build runs
    meanwhile (packager.checking), so half a second is enough to see it."""
    one = batching.take(samples, signature.inputs, 0, 1)
    for _ in range(3):
        runner.predict(one)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter()
        runner.predict(one)
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "p50": _round(float(np.percentile(times, 50))),
        "p90": _round(float(np.percentile(times, 90))),
        "runs": len(times),
        "host": platform.machine(),
    }


def _round(value: float) -> float:
    return float(f"{value:.4g}")
