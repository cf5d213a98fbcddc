"""The onnx target, end to end through the CLI, with every variant run in onnxruntime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import models, run_cli

VARIANTS = {"onnx-fp32", "onnx-ort-fp32", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8-static"}


def test_onnx_build_writes_every_variant_verified(built_mlp: Path) -> None:
    record = json.loads((built_mlp / "build.json").read_text())
    assert record["schema"] == 1
    assert {v["id"] for v in record["variants"]} == VARIANTS
    for variant in record["variants"]:
        fid = variant["fidelity"]
        assert fid["status"] == "verified", variant["id"]
        assert fid["runtime"].startswith("onnxruntime ")
        assert fid["samples"] == 200
        assert 0.0 <= fid["max_abs_err"] < 1.0
        assert 0.98 <= fid["top1_agreement"] <= 1.0
        assert variant["latency_ms"]["p50"] > 0
        for entry in variant["files"]:
            assert (built_mlp / entry["path"]).stat().st_size == entry["bytes"]
    assert (built_mlp / "report.html").is_file()


def test_onnx_build_json_signature_has_symbolic_batch(built_mlp: Path) -> None:
    record = json.loads((built_mlp / "build.json").read_text())
    assert record["model"]["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]
    assert record["model"]["signature"]["outputs"][0]["shape"] == ["batch", 10]


def test_onnx_variants_really_differ_in_precision(built_mlp: Path) -> None:
    import onnx

    def ops(variant: str) -> set[str]:
        return {n.op_type for n in onnx.load(str(built_mlp / "onnx" / variant / "model.onnx")).graph.node}

    assert "DynamicQuantizeLinear" in ops("onnx-int8-dynamic") or "MatMulInteger" in ops("onnx-int8-dynamic")
    assert "QuantizeLinear" in ops("onnx-int8-static") and "DequantizeLinear" in ops("onnx-int8-static")
    fp16 = onnx.load(str(built_mlp / "onnx" / "onnx-fp16" / "model.onnx"))
    assert {i.data_type for i in fp16.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # IO stays fp32


def test_onnx_ort_variant_runs_with_a_batch(built_mlp: Path) -> None:
    session = ort.InferenceSession(str(built_mlp / "onnx" / "onnx-ort-fp32" / "model.ort"))
    out = session.run(None, {"x": np.zeros((7, 64), np.float32)})[0]
    assert out.shape == (7, 10)


def test_onnx_report_lists_every_variant_and_a_chart(built_mlp: Path) -> None:
    page = (built_mlp / "report.html").read_text()
    for variant in VARIANTS:
        assert variant in page
    assert "<svg" in page and "<script" not in page and "http" not in page.split("<body>")[1]


def test_verify_passes_on_a_fresh_build(built_mlp: Path) -> None:
    result = run_cli("verify", built_mlp)
    assert result.code == 0, result.out + result.err
    assert result.out.count("✓") == len(VARIANTS)


def test_verify_detects_a_changed_file(built_mlp: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built_mlp, copy)
    target = copy / "onnx" / "onnx-fp16" / "model.onnx"
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    result = run_cli("verify", copy)
    assert result.code == 9
    assert "onnx-fp16" in result.out and "changed since the build" in result.out


@pytest.mark.parametrize("source", ["onnx", "keras", "pt2"])
def test_build_twice_gives_identical_bytes(source: str, model_dir: Path, tmp_path: Path) -> None:
    model = models.MAKERS[source](model_dir)
    trees = []
    for i in range(2):
        out = tmp_path / f"dist{i}"
        result = run_cli("build", model, "--out", out, "--no-latency")
        assert result.code == 0, result.err
        trees.append(next(out.glob("*/1")))
    files = sorted(p.relative_to(trees[0]) for p in trees[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(trees[1]) for p in trees[1].rglob("*") if p.is_file())
    assert len(files) >= 9
    for rel in files:
        assert (trees[0] / rel).read_bytes() == (trees[1] / rel).read_bytes(), rel


def test_dry_run_prints_plan_and_writes_nothing(mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    result = run_cli("build", mlp_onnx, "--dry-run", "--out", out)
    assert result.code == 0, result.err
    assert "onnx-int8-static [variant int8]: quantize to int8 QDQ" in result.out
    assert not out.exists()


def test_precision_flag_limits_variants(mlp_onnx: Path, tmp_path: Path) -> None:
    result = run_cli("build", mlp_onnx, "-p", "int8", "--out", tmp_path, "--no-latency")
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "mlp" / "1" / "build.json").read_text())
    assert {v["id"] for v in record["variants"]} == {"onnx-int8-dynamic", "onnx-int8-static"}
    assert not (tmp_path / "mlp" / "1" / "onnx" / "onnx-fp32").exists()  # intermediate, not shipped


def test_int8_not_built_for_models_without_quantizable_ops(model_dir: Path, tmp_path: Path) -> None:
    forest = models.make_sklearn_forest(model_dir)
    result = run_cli("build", forest, "--out", tmp_path, "--no-latency")
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "forest" / "1" / "build.json").read_text())
    assert {v["id"] for v in record["variants"]} == {"onnx-fp32", "onnx-ort-fp32", "onnx-fp16"}
    assert {s["variant"] for s in record["skipped"]} == {"onnx-int8-dynamic", "onnx-int8-static"}


def test_failed_int8_is_kept_but_strict_fails(mlp_onnx: Path, mlp_samples: Path, tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text("[tolerance.int8]\natol = 0.0\nrtol = 0.0\n")
    result = run_cli("build", mlp_onnx, "--samples", mlp_samples, "--out", "dist", "-p", "int8", cwd=tmp_path)
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "mlp" / "1" / "build.json").read_text())
    assert {v["fidelity"]["status"] for v in record["variants"]} == {"failed"}
    assert "never published" in result.err
    strict = run_cli("build", mlp_onnx, "--samples", mlp_samples, "--out", "d2", "-p", "int8", "--strict",
                     cwd=tmp_path)  # fmt: skip
    assert strict.code == 8 and not (tmp_path / "d2").exists()


def test_fp32_out_of_tolerance_fails_the_build(mlp_onnx: Path, tmp_path: Path) -> None:
    # A tolerance no float computation can meet after graph optimization still passes when
    # outputs are exact; force a failure with a top-1 floor above 1.
    (tmp_path / "packager.toml").write_text("[tolerance.fp32]\nmin_top1_agreement = 1.01\n")
    result = run_cli("build", mlp_onnx, "--out", "dist", cwd=tmp_path)
    assert result.code == 8
    assert result.error_lines and "variant 'onnx-fp32' failed validation" in result.error_lines[0]
    assert not (tmp_path / "dist").exists()


def test_onnx_takes_weights_held_in_constant_nodes(model_dir: Path, tmp_path: Path) -> None:
    model = models.make_onnx_constant_weights(model_dir)
    result = run_cli("build", model, "-t", "onnx", "-p", "fp32", "--out", tmp_path, "--no-latency")
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "constant_weights" / "1" / "build.json").read_text())
    assert {v["fidelity"]["status"] for v in record["variants"]} == {"verified"}
    inspect = run_cli("inspect", model)
    assert "parameters: 35 " in inspect.out, inspect.out  # 6x5 weights + 5 biases, all in Constant nodes


def test_onnx_refuses_what_onnxruntime_refuses_naming_the_op(model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_onnx_double_erf(model_dir), "-t", "onnx", "--out", tmp_path / "d")
    assert result.code == 4
    assert "target 'onnx' cannot take op(s) Erf (opset 13): onnxruntime's CPU provider refuses" in result.err
