"""lambda-zip against a naive bundle of the same dependencies: sizes and cold init, one run.

    python bench/lambda_bundle.py [--model tests-mlp | path/to/model.onnx] [--runs 5]

"naive" is what a hand-made Lambda zip usually is: `pip install --target` of the same
onnxruntime and numpy wheels for the Lambda platform, zipped as is. "packager" is the same
wheels after lambda-zip's slimming. Both bundles carry the same handler and model and are
started cold by awslambdaric under the runtime's Python, --runs times each, interleaved;
the figure to read is the ratio, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tests-mlp")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lambda_bundle.json")
    args = parser.parse_args()

    from packager.archive import Entry, tree_entries, unzipped_size, write_zip
    from packager.config import cache_dir
    from packager.resources import read_toml
    from packager.runtimes.aws_lambda import local_tools, runtime_python
    from packager.targets.lambda_zip import HANDLER, requirements, site_packages
    from packager.tools import pip
    from packager.tools.lambda_runtime import LocalFunction, http_event

    work = Path(tempfile.mkdtemp(prefix="bench-lambda-"))
    model = _model(args.model, work)
    arch = "arm64" if platform.machine() == "aarch64" else platform.machine()
    facts = read_toml("lambda.toml")
    runtime = facts["runtimes"][args.runtime]
    naive_site = work / "naive-site"
    pip.install_for_platform(requirements(), naive_site, python_version=runtime["python"],
                             platforms=pip.manylinux_tags(runtime["glibc"], facts["arch"][arch]["wheel"]))  # fmt: skip
    slim_site = site_packages(cache_dir(), args.runtime, arch, slimmed=True)
    signature = {
        "name": "bench", "version": "1", "model_file": "model.onnx", "model_sha256": "-", "max_batch": 64,
        "runtime": args.runtime, "arch": arch,
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
    }  # fmt: skip
    common = [Entry(name="inference.py", source=HANDLER.read_bytes()), Entry(name="model/model.onnx", source=model),
              Entry(name="model/signature.json", source=json.dumps(signature).encode())]  # fmt: skip
    bundles = {"naive": (naive_site, 6), "packager": (slim_site, 9)}
    python, version = runtime_python(args.runtime, arch)
    tools = local_tools(python, version, cache_dir())
    results: dict[str, dict] = {}
    for name, (site, level) in bundles.items():
        zipped = work / f"{name}.zip"
        write_zip(zipped, common + tree_entries(site), level=level)
        task = work / f"{name}-task"
        shutil.unpack_archive(zipped, task)
        results[name] = {"zipped_bytes": zipped.stat().st_size, "unzipped_bytes": unzipped_size(zipped),
                         "task": task, "init_ms": [], "invoke_ms": []}  # fmt: skip
    event = http_event("POST", "/v2/models/bench/infer", json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}))  # fmt: skip
    import time

    for _ in range(args.runs):
        for row in results.values():
            function = LocalFunction(python=python, task_root=row["task"], paths=tools, handler="inference.handler",
                                     runtime=args.runtime, memory_mb=1024, timeout_s=60)  # fmt: skip
            start = time.perf_counter()
            function.invoke(event)
            row["invoke_ms"].append((time.perf_counter() - start) * 1000)
            row["init_ms"].append(function.init_ms)
            function.close()
    report = {"runtime": args.runtime, "arch": arch, "runs": args.runs, "requirements": requirements(),
              "bundles": {}, "ratios_packager_to_naive": {}}  # fmt: skip
    for name, row in results.items():
        report["bundles"][name] = {"zipped_bytes": row["zipped_bytes"], "unzipped_bytes": row["unzipped_bytes"],
                                   "cold_init_ms_median": round(statistics.median(row["init_ms"]), 1),
                                   "first_invoke_ms_median": round(statistics.median(row["invoke_ms"]), 2)}  # fmt: skip
    for key in ("zipped_bytes", "unzipped_bytes", "cold_init_ms_median", "first_invoke_ms_median"):
        ratio = report["bundles"]["packager"][key] / report["bundles"]["naive"][key]
        report["ratios_packager_to_naive"][key] = round(ratio, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def _model(name: str, work: Path) -> Path:
    if name != "tests-mlp":
        return Path(name)
    import models

    return models.make_onnx_mlp(work, "model.onnx")


if __name__ == "__main__":
    main()
