"""report.html against a golden file (regenerate with: pytest --update-golden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.report import render

GOLDEN = Path(__file__).parents[1] / "golden" / "report.html"


def record() -> dict:
    def variant(vid: str, precision: str, size: int, err: float, status: str, p50: float) -> dict:
        fidelity = {"status": status, "runtime": "onnxruntime 1.31.1", "samples": 256,
                    "max_abs_err": err, "top1_agreement": 0.996}  # fmt: skip
        if status == "failed":
            fidelity["reason"] = "top-1 agreement 0.9700 < 0.98"
        return {
            "id": vid, "target": "onnx", "precision": precision,
            "runtime": {"name": "onnxruntime", "min_version": "1.13"},
            "files": [], "bytes": size, "fidelity": fidelity,
            "latency_ms": {"p50": p50, "p90": p50 * 1.2, "runs": 200, "host": "x86_64"},
            "peak_memory_mb": 0.5,
        }  # fmt: skip

    return {
        "schema": 1, "packager": "0.1.0",
        "model": {
            "name": "digits", "version": "1",
            "source": {"format": "keras", "sha256": "ab" * 32, "file": "digits.keras"},
            "signature": {"inputs": [{"name": "pixels", "dtype": "float32", "shape": ["batch", 8, 8, 1]}],
                          "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]},
        },
        "validation": {"count": 256, "generated": False, "reference_runtime": "tensorflow 2.19.0"},
        "variants": [
            variant("onnx-fp32", "fp32", 157_000, 5.7e-6, "verified", 0.041),
            variant("onnx-fp16", "fp16", 82_000, 6.6e-3, "verified", 0.060),
            variant("onnx-int8-static", "int8", 54_000, 0.29, "failed", 0.052),
        ],
        "checks": [
            {"name": "lambda-zip-fp32.function.zip.zipped_bytes", "value": 23285240, "limit": 52428800, "ok": True},
            {"name": "lambda-zip-fp32.template.cfn_lint_findings", "ok": None, "reason": "cfn-lint is not installed"},
        ],
        "skipped": [{"target": "onnx", "variant": "onnx-int8-dynamic", "reason": "no quantizable op <&>"}],
    }  # fmt: skip


def test_report_matches_golden(request: pytest.FixtureRequest) -> None:
    page = render(record())
    if request.config.getoption("--update-golden"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(page)
    assert page == GOLDEN.read_text(), "report.html changed; review it and run pytest --update-golden"


def test_report_escapes_model_text() -> None:
    page = render(record())
    assert "no quantizable op &lt;&amp;&gt;" in page
    assert "<&>" not in page


def test_report_is_self_contained() -> None:
    page = render(record())
    assert "<script" not in page and "<link" not in page and "src=" not in page
