"""The C generator against every node test case of the onnx wheel: a scoreboard.

    python bench/conformance.py [--jobs 2] [--match REGEX] [--out bench/results/conformance.json]

Each case folder holds a model (one node, or a function expanded into several), its inputs and
the outputs ONNX's reference computed. A case

- passes when the generated library, compiled with gcc -O1 and called through ctypes, gives every
  output within atol 1e-5 + rtol 1e-4 of the expected value (``TOLERANCE``; a float16 output within
  one float16 step, ``HALF_TOLERANCE``; integers and bools exactly; ``ROUNDED`` lists the
  cases whose expected values are rounded, and the looser atol they get);
- is refused when packager says it cannot take it, with the reason: the generator's own refusal
  (an op, attribute or element type it does not have), or what the library format cannot hold (a
  sequence or optional input);
- mismatches otherwise: a wrong number, a crash, or a library that does not build. The goal is
  none.

Every input is given at run time through ``<prefix>_infer``, in its own type; integer and bool
outputs must be equal. Where the generator refuses an input computed at run time that real
graphs hold as a constant (a Reshape's shape, a Slice's starts, a Resize's scales, a reduction's
axes that fix a shape), the case runs again with the inputs after the first as constants (the
op still computes on the case's own data). The batch is the case's first dimension as it is.
Every case runs in a worker process (a crash costs that case only). Results: ``cases``, ``passed``, ``refused``,
``mismatched``, ``by_op`` (the same four per op; an expanded function's case counts for the op
it expands), the most common refusal reasons and every mismatch by name.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
# float16 outputs: one float16 step (2^-10 relative, 2^-14 near zero): the reference rounds each
# step of its float16 computation and the library computes in float, rounding the result once
HALF_TOLERANCE = {"atol": 2.0**-14, "rtol": 2.0**-10}
# Cases whose expected values are themselves rounded: compared at a looser absolute tolerance,
# with the reason (onnxruntime's own output is as far from them as the library's).
ROUNDED = {"test_averagepool_2d_ceil_last_window_starts_on_pad": (1e-4, "its outputs are written to 4 decimals"),
           "test_gridsample_bicubic": (1e-4, "its outputs are written to 4 decimals (onnxruntime and ONNX's "
                                             "reference are 5.0e-5 from them too)")}  # fmt: skip
CASE_SECONDS = 120


def node_tests() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def case_folders(match: str | None) -> list[Path]:
    pattern = re.compile(match) if match else None
    return [d for d in sorted(node_tests().iterdir())
            if (d / "model.onnx").is_file() and (pattern is None or pattern.search(d.name))]  # fmt: skip


def op_of(folder: Path) -> str:
    """The op a case tests: its one node's, or for an expanded function the op of its twin case."""
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    if len(ops) == 1:
        return ops[0]
    twin = re.sub(r"_expanded(_ver\d+)?$", "", folder.name)
    if twin != folder.name and (folder.parent / twin / "model.onnx").is_file():
        base = onnx.load(str(folder.parent / twin / "model.onnx"), load_external_data=False)
        if len(base.graph.node) == 1:
            return base.graph.node[0].op_type
    return "(graph: " + "+".join(sorted(set(ops))) + ")" if ops else "(no node)"


def _tensor(path: Path) -> Any:
    import onnx
    from onnx import numpy_helper

    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def run_case(folder: Path) -> tuple[str, str]:
    """("passed" | "refused" | "mismatched", the reason or the largest error)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    values = [*model.graph.input, *model.graph.output]
    if not all(v.type.HasField("tensor_type") for v in values):
        return "refused", "an input or output that is not a tensor (sequence, optional or map)"
    data = folder / "test_data_set_0"
    inputs = [_tensor(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    expected = [_tensor(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    if not inputs:
        return "refused", "no input (a library computes from its inputs)"
    if not expected:
        return "refused", "no output"
    initialized = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initialized]
    if len(graph_inputs) != len(inputs):
        return "refused", "an optional input left out"
    with tempfile.TemporaryDirectory() as tmp:
        status, why = _generated(model, inputs, expected, Path(tmp), folder.name, np, onnx)
    if status == "refused" and ("at run time" in why or "depends on the data" in why) and len(inputs) > 1:
        for value, array in zip(graph_inputs[1:], inputs[1:], strict=True):
            model.graph.initializer.append(numpy_helper.from_array(array, value.name))
        kept = model.graph.input[0]
        del model.graph.input[:]
        model.graph.input.append(kept)
        with tempfile.TemporaryDirectory() as tmp:
            return _generated(model, inputs[:1], expected, Path(tmp), folder.name, np, onnx)
    return status, why


def _generated(model: Any, xs: list[Any], expected: list[Any], work: Path, name: str, np: Any,
               onnx: Any) -> tuple[str, str]:  # fmt: skip
    import ctypes

    from packager import codegen
    from packager.errors import PackagerError
    from packager.runtimes.c import header_outputs

    onnx.save(model, str(work / "case.onnx"))
    shapes = {value.name: list(x.shape) for value, x in zip(model.graph.input, xs, strict=True)}
    batch = xs[0].shape[0] if xs[0].ndim else 1
    try:
        prepared = codegen.prepare(work / "case.onnx", work, batch=batch, shapes=shapes)
        source = codegen.generate(prepared, "t", {"name": name, "version": "1", "sha256": "-", "signature": "{}"})
    except PackagerError as exc:
        return "refused", exc.message.removeprefix("static-lib: ")[:300]
    except Exception as exc:  # a converter's own failure on the case (onnxruntime's folding, shape inference)
        return "refused", f"preparing the graph failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    ins, outs = header_outputs("t", source.header, "INPUT"), header_outputs("t", source.header)
    if [x.size for x in xs] != [size for _, size, _ in ins] or [e.size for e in expected] != [s for _, s, _ in outs]:
        return "refused", "the library's fixed shapes differ from the case's (a shape the generator fixes otherwise)"
    (work / "t.h").write_text(source.header)
    (work / "model.c").write_text(source.code)
    built = subprocess.run(["gcc", "-std=c99", "-O1", "-fPIC", "-shared", "-o", "libt.so", "model.c", "-lm"],
                           cwd=work, capture_output=True, text=True, check=False)  # fmt: skip
    if built.returncode != 0:
        return "mismatched", "the generated C does not compile: " + built.stderr.strip().splitlines()[-1][:200]
    lib = ctypes.CDLL(str(work / "libt.so"))
    given = [np.ascontiguousarray(x, dtype=dtype) for x, (_, _, dtype) in zip(xs, ins, strict=True)]
    ys = [np.zeros(max(size, 1), dtype) for _, size, dtype in outs]
    pointers = (ctypes.c_void_p * len(ys))(*[y.ctypes.data for y in ys])
    feeds = (ctypes.c_void_p * len(given))(*[x.ctypes.data for x in given])
    if lib.t_infer(feeds, ctypes.c_size_t(1), pointers, None) != 0:
        return "mismatched", "the library's run returned an error"
    worst, ok = 0.0, True
    for got_array, want_array, (_, size, _) in zip(ys, expected, outs, strict=True):
        if want_array.dtype.kind in "iub" or got_array.dtype.kind in "iub":
            equal = np.array_equal(got_array[:size].astype(want_array.dtype), want_array.reshape(-1))
            error, fits = (0.0 if equal else float("inf")), equal
        else:
            error, fits = _compare(got_array[:size].astype(np.float64), want_array.reshape(-1).astype(np.float64),
                                   name, np, half=want_array.dtype == np.float16)  # fmt: skip
        worst, ok = max(worst, error), ok and fits
    return ("passed", f"{worst:.3g}") if ok else ("mismatched", f"max abs error {worst:.3g}")


def _compare(got: Any, want: Any, name: str, np: Any, half: bool = False) -> tuple[float, bool]:
    """(the largest error, whether every value is within tolerance; ``half``: of a float16
    output); NaN matches NaN, and equal infinities are exact."""
    both_nan = np.isnan(want) & np.isnan(got)
    with np.errstate(invalid="ignore"):
        err = np.where(both_nan | (got == want), 0.0, np.abs(got - want))
    tolerance = HALF_TOLERANCE if half else TOLERANCE
    allowed = ROUNDED.get(name, (tolerance["atol"], ""))[0] + tolerance["rtol"] * np.abs(want)
    worst = float(np.nanmax(err, initial=0.0)) if err.size else 0.0
    return worst, bool(np.all((err <= allowed) | both_nan)) and not np.any(np.isnan(err))


def _worker(folder: str) -> tuple[str, str, str]:
    path = Path(folder)
    try:
        op = op_of(path)
    except Exception as exc:
        return path.name, "(unreadable)", f"refused\tthe model does not load: {exc}"[:300]
    try:
        status, why = run_case(path)
    except Exception as exc:
        status, why = "mismatched", f"the harness failed: {type(exc).__name__}: {str(exc)[:200]}"
    return path.name, op, f"{status}\t{why}"


class Worker:
    """A process that runs cases one at a time (folder names in on stdin, results out on stdout):
    started once and reused, started again after a case crashed it or ran past ``CASE_SECONDS``."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def run(self, folder: Path) -> tuple[str, str, str]:
        import select

        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{folder}\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + CASE_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.process.stdout.readline()
            if not line:  # the worker died on this case
                self.process.wait()
                return folder.name, op_of(folder), f"mismatched\tthe case crashed (exit {self.process.returncode})"
            if line.startswith("{"):  # anything else is a library printing on stdout
                found = json.loads(line)
                return found["name"], found["op"], found["result"]
        self.stop()
        return folder.name, op_of(folder), f"mismatched\tno answer within {CASE_SECONDS} s"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def serve() -> None:
    """The worker's loop: a case folder a line in, its result a JSON line out."""
    import os

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the libraries print goes to stderr, not into the answers
    for line in sys.stdin:
        name, op, result = _worker(line.strip())
        out.write(json.dumps({"name": name, "op": op, "result": result}) + "\n")
        out.flush()


def summarise(results: list[tuple[str, str, str]]) -> dict[str, Any]:
    by_op: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    mismatches = []
    for name, op, result in results:
        status, why = result.split("\t", 1)
        counts = by_op.setdefault(op, Counter())
        counts["cases"] += 1
        counts[status] += 1
        if status == "refused":
            short = re.sub(r" \(it does: .*", "", why)  # the generator's list of the ops it has
            reasons[re.sub(r"\b\d+\b", "N", short)[:160]] += 1
        elif status == "mismatched":
            mismatches.append({"case": name, "op": op, "why": why})
    total = Counter(status.split("\t", 1)[0] for _, _, status in results)
    import onnx

    return {"onnx": onnx.__version__, "tolerance": TOLERANCE, "float16_tolerance": HALF_TOLERANCE,
            "cases": len(results), "passed": total["passed"],
            "refused": total["refused"], "mismatched": total["mismatched"],
            "pass_rate": round(total["passed"] / max(len(results), 1), 4),
            "rounded_cases": {case: {"atol": atol, "why": why} for case, (atol, why) in ROUNDED.items()},
            "by_op": {op: {k: c[k] for k in ("cases", "passed", "refused", "mismatched")}
                      for op, c in sorted(by_op.items())},
            "top_refusals": [{"reason": r, "cases": n} for r, n in reasons.most_common(40)],
            "mismatches": mismatches}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--match", help="only the case folders whose name this regular expression finds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "conformance.json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    folders = case_folders(args.match)
    started = time.perf_counter()
    workers = [Worker() for _ in range(args.jobs)]
    queue = list(reversed(folders))
    results: list[tuple[str, str, str]] = []

    def drain(worker: Worker) -> list[tuple[str, str, str]]:
        mine = []
        while queue:
            folder = queue.pop()
            mine.append(worker.run(folder))
            if (len(folders) - len(queue)) % 100 == 0:
                print(f"{len(folders) - len(queue)} of {len(folders)} cases", file=sys.stderr, flush=True)
        worker.stop()
        return mine

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for found in pool.map(drain, workers):
            results.extend(found)
    results.sort()
    doc = summarise(results)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("cases", "passed", "refused", "mismatched", "pass_rate")}))


if __name__ == "__main__":
    main()
