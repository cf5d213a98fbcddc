"""Size and speed of every onnx-target variant of a build, as ratios to its fp32 variant.

    python bench/onnx_variants.py examples/digits/dist/digits/1 [--out bench/results/onnx_variants.json]

Each variant runs in onnxruntime (CPU, one thread) on the build's own samples at batch 1 and
batch 64. Rounds are interleaved (every variant once per round) so a noisy neighbour slows all
of them alike; the ratios, measured in one run, are the figures to compare, not the ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(sess: ort.InferenceSession, feed: dict[str, np.ndarray], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        sess.run(None, feed)
    return (time.perf_counter() - start) / repeat * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, help="a version folder holding build.json")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "onnx_variants.json")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    record = json.loads((args.build / "build.json").read_text())
    with np.load(args.build / record["validation"]["samples"]) as data:
        samples = {k: data[k] for k in data.files}
    variants = [v for v in record["variants"] if v["target"] == "onnx"]
    sessions = {v["id"]: session(args.build / v["main_file"]) for v in variants}
    feeds = {b: {k: np.resize(x, (b, *x.shape[1:])) for k, x in samples.items()} for b in (1, 64)}
    times: dict[tuple[str, int], list[float]] = {(vid, b): [] for vid in sessions for b in feeds}
    for _ in range(args.rounds):
        for vid, sess in sessions.items():
            for b, feed in feeds.items():
                times[(vid, b)].append(timed(sess, feed, repeat=200 if b == 1 else 20))
    base = "onnx-fp32"
    results = []
    for v in variants:
        row = {"id": v["id"], "bytes": v["bytes"], "size_ratio": round(v["bytes"] / _bytes(variants, base), 3),
               "fidelity": v["fidelity"]["status"], "max_abs_err": v["fidelity"].get("max_abs_err")}  # fmt: skip
        for b in feeds:
            ms = statistics.median(times[(v["id"], b)])
            row[f"batch{b}_ms"] = round(ms, 5)
            row[f"batch{b}_speedup_vs_fp32"] = round(statistics.median(times[(base, b)]) / ms, 3)
        results.append(row)
    out = {"model": record["model"]["name"], "host": platform.machine(), "onnxruntime": ort.__version__,
           "rounds": args.rounds, "baseline": base, "variants": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for row in results:
        print(f"{row['id']:20} {row['bytes']:>9,} B  x{row['size_ratio']:<6} "
              f"b1 {row['batch1_ms']:.4f} ms (x{row['batch1_speedup_vs_fp32']})  "
              f"b64 {row['batch64_ms']:.3f} ms (x{row['batch64_speedup_vs_fp32']})")  # fmt: skip
    print(f"wrote {args.out}")


def _bytes(variants: list[dict], vid: str) -> int:
    return next(v["bytes"] for v in variants if v["id"] == vid)


if __name__ == "__main__":
    main()
