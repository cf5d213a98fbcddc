"""lambda-zip's two engines on the digits CNN: sizes, cold init and invoke latency, one run.

    python bench/lambda_engines.py [--runs 5] [--invokes 100] [--runtime python3.12]

Builds the digits CNN (tests/data/models.py ``torch_cnn``: Conv 3x3 + BatchNorm + ReLU +
MaxPool + Linear on 1x8x8 digits) with ``packager build -t lambda-zip`` once per engine
(``--set lambda-zip.engine=onnxruntime|native``), then starts each function.zip cold under
awslambdaric against the local Runtime API, --runs times, the engines interleaved: init is the
time from process start to the runtime client's first poll (what build.json records as
``init_ms``); "first invoke" is the cold sandbox's first request; "warm invoke" is the median
round trip of --invokes one-sample requests after it (the local Runtime API's own overhead is in
both). The onnxruntime engine gets Powertools on its path, as AWS's layer gives it; the native
engine gets nothing but awslambdaric. The figures to read are the ratios, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT))
ENGINES = ("onnxruntime", "native")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--invokes", type=int, default=100)
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lambda_engines.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    try:
        model, samples = _model(work)
        variants = {engine: _build(engine, model, samples, args.runtime, work) for engine in ENGINES}
        report = _measure(variants, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _model(work: Path) -> tuple[Path, Path]:
    import models
    import numpy as np

    x, _ = models.digits(160)
    samples = work / "digits.npz"
    np.savez(samples, x=(x / 16.0).reshape(-1, 1, 8, 8))
    return models.make_torch_pt2(work), samples


def _build(engine: str, model: Path, samples: Path, runtime: str, work: Path) -> Path:
    out = work / engine
    (work / "packager.toml").write_text(f'[target.lambda-zip]\nruntime = "{runtime}"\n')
    command = [sys.executable, "-m", "packager", "build", str(model), "-t", "lambda-zip", "-p", "fp32", "--no-latency",
               "--samples", str(samples), "--out", str(out), "--set", f"lambda-zip.engine={engine}"]  # fmt: skip
    subprocess.run(command, cwd=work, check=True, capture_output=True)
    record = json.loads(next(out.glob("*/1/build.json")).read_text())
    (variant,) = record["variants"]
    if variant["fidelity"]["status"] != "verified":
        raise SystemExit(f"{engine}: {variant['fidelity']}")
    return (next(out.glob("*/1")) / variant["main_file"]).parent


def _measure(variants: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    from packager.archive import unzipped_size
    from packager.config import cache_dir
    from packager.runtimes.aws_lambda import LambdaRunner
    from packager.tools.lambda_runtime import http_event

    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]})
    event = http_event("POST", "/v2/models/cnn/infer", body)
    rows: dict[str, dict[str, list[float]]] = {e: {"init": [], "first": [], "warm": []} for e in variants}
    for _ in range(args.runs):
        for engine, folder in variants.items():
            runner = LambdaRunner.from_zip(folder, cache_dir())
            try:
                rows[engine]["init"].append(runner.function.init_ms)
                rows[engine]["first"].append(_invoke_ms(runner, event))
                rows[engine]["warm"].extend(_invoke_ms(runner, event) for _ in range(args.invokes))
            finally:
                runner.close()
    engines = {}
    for engine, folder in variants.items():
        zipped = folder / "function.zip"
        engines[engine] = {
            "variant": folder.name, "zipped_bytes": zipped.stat().st_size, "unzipped_bytes": unzipped_size(zipped),
            "cold_init_ms_median": round(statistics.median(rows[engine]["init"]), 1),
            "cold_init_ms_all": rows[engine]["init"],
            "first_invoke_ms_median": round(statistics.median(rows[engine]["first"]), 2),
            "warm_invoke_ms_median": round(statistics.median(rows[engine]["warm"]), 3),
        }  # fmt: skip
    keys = ("zipped_bytes", "unzipped_bytes", "cold_init_ms_median", "first_invoke_ms_median", "warm_invoke_ms_median")
    ratios = {k: round(engines["native"][k] / engines["onnxruntime"][k], 4) for k in keys}
    return {
        "model": "digits CNN (tests/data/models.py torch_cnn), 1x8x8 float32 -> 10 logits",
        "runtime": args.runtime, "arch": platform.machine(), "runs": args.runs, "invokes_per_run": args.invokes,
        "versions": _versions(), "engines": engines, "ratios_native_to_onnxruntime": ratios,
    }  # fmt: skip


def _invoke_ms(runner: Any, event: dict[str, Any]) -> float:
    start = time.perf_counter()
    answer = runner.function.invoke(event)
    elapsed = (time.perf_counter() - start) * 1000.0
    if answer["statusCode"] != 200:
        raise SystemExit(f"invoke failed: {answer}")
    return elapsed


def _versions() -> dict[str, str]:
    import onnxruntime

    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, check=False).stdout.strip()
    return {"onnxruntime": onnxruntime.__version__, "gcc": gcc}


if __name__ == "__main__":
    main()
