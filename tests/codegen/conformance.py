"""Runs ONNX's own backend node test cases (shipped in the onnx wheel) through packager's C
generator: model and input/output protobufs that no one here wrote."""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from packager import codegen
from packager.errors import UnsupportedOpError

NODE_TESTS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


@dataclass
class Case:
    name: str
    folder: Path


def cases() -> list[Case]:
    """Every node test whose op the generator lists as supported (the list comes from the code)."""
    found = []
    for folder in sorted(NODE_TESTS.iterdir()):
        model_path = folder / "model.onnx"
        if not model_path.is_file() or not (folder / "test_data_set_0").is_dir():
            continue
        model = onnx.load(str(model_path))
        ops = {n.op_type for n in model.graph.node}
        tensors_only = all(v.type.HasField("tensor_type") for v in [*model.graph.input, *model.graph.output])
        if len(model.graph.node) == 1 and ops <= codegen.SUPPORTED_OPS and not model.functions and tensors_only:
            found.append(Case(folder.name, folder))
    return found


def _tensor(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def run_case(case: Case) -> tuple[str, float]:
    """('unsupported', 0) when the generator refuses a feature, else ('ok'|'mismatch', max error)."""
    model = onnx.load(str(case.folder / "model.onnx"))
    data = case.folder / "test_data_set_0"
    inputs = [_tensor(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    expected = [_tensor(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    if len(expected) != 1 or any(a.dtype != np.float32 for a in [*inputs, *expected]) or not inputs:
        return "unsupported", 0.0
    # The first input stays an input; the others become constants (the generator takes one input).
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    for value, array in zip(graph_inputs[1:], inputs[1:], strict=True):
        model.graph.initializer.append(numpy_helper.from_array(array, value.name))
    del model.graph.input[1:]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx.save(model, str(work / "case.onnx"))
        try:
            prepared = codegen.prepare(work / "case.onnx", work)
            source = codegen.generate(prepared, "t", {"name": case.name, "version": "1", "sha256": "-",
                                                       "signature": "{}"})  # fmt: skip
        except UnsupportedOpError:
            return "unsupported", 0.0
        (work / "t.h").write_text(source.header)
        (work / "model.c").write_text(source.code)
        subprocess.run(["gcc", "-std=c99", "-O1", "-fPIC", "-shared", "-o", "libt.so", "model.c", "-lm"],
                       cwd=work, check=True, capture_output=True)  # fmt: skip
        lib = ctypes.CDLL(str(work / "libt.so"))
        x = np.ascontiguousarray(inputs[0], dtype=np.float32)
        y = np.zeros(source.output_size, np.float32)
        if x.size != source.input_size or expected[0].size != source.output_size:
            return "unsupported", 0.0
        lib.t_predict(ctypes.c_void_p(x.ctypes.data), ctypes.c_size_t(1), ctypes.c_void_p(y.ctypes.data))
    err = float(np.max(np.abs(y - expected[0].reshape(-1)), initial=0.0))
    scale = float(np.max(np.abs(expected[0]), initial=1.0))
    return ("ok" if err <= 1e-4 * max(1.0, scale) else "mismatch"), err
