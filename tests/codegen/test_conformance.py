"""ONNX's own node test cases for every op the C generator supports (the list comes from the code)."""

from __future__ import annotations

from collections import Counter

import pytest
from conformance import cases, run_case

CASES = cases()
# Ops whose node tests include float32 cases; the rest (Reshape, Squeeze, ...) take int64 shapes
# there and are covered by the model tests.
MUST_PASS = {
    "gemm", "matmul", "add", "sub", "mul", "div", "relu", "leakyrelu", "sigmoid", "tanh", "softmax", "conv",
    "maxpool", "averagepool", "globalaveragepool", "batchnorm", "flatten", "transpose", "concat", "clip",
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case_matches_onnx(case) -> None:
    status, err = run_case(case)
    assert status in ("ok", "unsupported"), f"{case.name}: max abs error {err}"


def test_every_supported_op_passes_some_node_case() -> None:
    passed = Counter(c.name[5:].split("_")[0] for c in CASES if run_case(c)[0] == "ok")
    assert set(passed) >= MUST_PASS, MUST_PASS - set(passed)
    assert sum(passed.values()) >= 100
