"""Several targets, some failing: every target that can build does; the failures are reported."""

from __future__ import annotations

import json
from pathlib import Path

import crashing_steps
import numpy as np
import pytest
from conftest import models, run_cli

from packager import config, pipeline
from packager.errors import ConversionError
from packager.plugins import load_target


def _build(model: Path, out: Path, targets: list[object], monkeypatch: pytest.MonkeyPatch,
           **request: object) -> pipeline.BuildResult:  # fmt: skip
    monkeypatch.setattr(pipeline, "resolve_targets", lambda names: targets)
    req = pipeline.BuildRequest(model=str(model), targets=("onnx", "x"), out=out, cache_dir=out.parent / "cache",
                                **{"latency": False, **request})  # type: ignore[arg-type]  # fmt: skip
    return pipeline.build(req, config.load(out.parent, environ={}))


def test_partial_build_a_crashing_converter_costs_its_target_only(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dist"
    result = _build(mlp_onnx, out, [load_target("onnx"), crashing_steps.CrashTarget()], monkeypatch)
    assert [(f.target, f.step) for f in result.failures] == [("crash", "crash-fp32")]
    assert "was killed by SIGILL" in result.failures[0].error.message
    record = json.loads((out / "mlp" / "1" / "build.json").read_text())
    onnx = [v for v in record["variants"] if v["target"] == "onnx"]
    assert onnx and {v["fidelity"]["status"] for v in onnx} == {"verified"}
    assert record["failed"][0]["target"] == "crash" and record["failed"][0]["code"] == "7"
    log = out / "mlp" / "1" / record["failed"][0]["log"]
    assert "about to die" in log.read_text()
    assert "crash" in (out / "mlp" / "1" / "report.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]
    assert sorted(p.name for p in out.iterdir()) == ["mlp"]  # no staging, no logs area left


def test_partial_build_a_failed_lower_precision_is_a_failed_variant(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dist"
    result = _build(mlp_onnx, out, [crashing_steps.HalfBrokenTarget()], monkeypatch)
    assert result.failures == []
    record = json.loads((out / "mlp" / "1" / "build.json").read_text())
    status = {v["id"]: v["fidelity"] for v in record["variants"]}
    assert status["half-fp32"]["status"] == "unverified"
    assert status["half-fp16"]["status"] == "failed" and status["half-fp16"]["stage"] == "conversion"
    assert "ValueError: Cannot take the length of shape" in status["half-fp16"]["reason"]
    assert any("half-fp16" in w and "never published" in w for w in result.warnings)


def test_partial_build_strict_stops_at_the_first_failure(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dist"
    with pytest.raises(ConversionError, match="SIGILL"):
        _build(mlp_onnx, out, [crashing_steps.CrashTarget(), load_target("onnx")], monkeypatch, strict=True)
    logs = list(out.rglob("crash-fp32.log"))
    assert len(logs) == 1 and "about to die" in logs[0].read_text()  # the log the error names is kept
    assert not (out / "mlp").exists()


def test_partial_build_cli_exit_code_names_the_failed_target(model_dir: Path, tmp_path: Path) -> None:
    model = models.make_onnx_det(model_dir)
    result = run_cli("build", model, "-t", "onnx", "-t", "static-lib", "--out", tmp_path / "dist", "--no-latency")
    assert result.code == 15, result.err
    assert len(result.error_lines) == 1 and "1 of 2 targets failed: static-lib" in result.error_lines[0]
    assert "Det" in result.error_lines[0]
    record = json.loads((tmp_path / "dist" / "det" / "1" / "build.json").read_text())
    assert {v["target"] for v in record["variants"]} == {"onnx"}
    assert record["failed"] == [{"target": "static-lib", "reason": record["failed"][0]["reason"], "code": "4"}]
    strict = run_cli("build", model, "-t", "onnx", "-t", "static-lib", "--strict", "--out", tmp_path / "d2")
    assert strict.code == 4 and not (tmp_path / "d2").exists()


def test_streaming_model_with_state_and_a_scalar_input_builds(model_dir: Path, tmp_path: Path) -> None:
    """The batch on axis 1 of the state, a sample rate without a batch: run in onnxruntime and
    through the Lambda handler under awslambdaric; the state pair is recorded."""
    model = models.make_onnx_streaming(model_dir)
    samples = models.streaming_samples(tmp_path / "s.npz")
    result = run_cli("build", model, "--samples", samples, "-t", "onnx", "-t", "lambda-zip", "-p", "fp32",
                     "--out", tmp_path / "dist", "--no-latency")  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "streaming" / "1" / "build.json").read_text())
    state = [{"input": "state", "output": "stateN", "shape": [2, "batch", 3], "dtype": "float32"}]
    assert record["model"]["state"] == state
    assert all(v["state"] == state for v in record["variants"])
    assert record["model"]["signature"]["inputs"][1]["shape"] == [2, "batch", 3]
    fidelity = {v["id"]: v["fidelity"] for v in record["variants"]}
    assert {f["status"] for f in fidelity.values()} == {"verified"}, fidelity
    assert fidelity["lambda-zip-fp32"]["samples"] == 24 and fidelity["lambda-zip-fp32"]["max_abs_err"] < 1e-5


def test_dynamic_height_and_width_are_fixed_from_the_samples_for_static_targets(
    model_dir: Path, tmp_path: Path
) -> None:
    """Shape arithmetic on a dynamic height and width folds away once the samples fix them:
    static-lib (no Shape/Gather kernels) and onnx2tf take the model; onnx keeps it dynamic."""
    model = models.make_onnx_dynamic_hw(model_dir)
    np.savez(tmp_path / "s.npz", images=np.random.default_rng(0).random((6, 3, 24, 40)).astype(np.float32))
    result = run_cli("build", model, "--samples", tmp_path / "s.npz", "-t", "onnx", "-t", "static-lib", "-t", "tflite",
                     "-p", "fp32", "--out", tmp_path / "dist", "--no-latency", cwd=tmp_path)  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "dynamic_hw" / "1" / "build.json").read_text())
    variants = {v["id"]: v for v in record["variants"]}
    assert {v["fidelity"]["status"] for v in variants.values()} == {"verified"}, variants
    assert variants["static-lib-fp32"]["input_shapes"] == {"images": [1, 3, 24, 40]}
    assert variants["tflite-fp32"]["input_shapes"] == {"images": [1, 3, 24, 40]}
    assert "input_shapes" not in variants["onnx-fp32"]
    assert record["model"]["signature"]["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "s.npz"]  # nothing left where it ran


def test_input_shape_sets_the_generated_samples_and_is_checked(model_dir: Path, tmp_path: Path) -> None:
    model = models.make_onnx_dynamic_hw(model_dir)
    result = run_cli("build", model, "--input-shape", "images=1,3,16,20", "-t", "static-lib", "--out",
                     tmp_path / "dist", "--no-latency")  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "dynamic_hw" / "1" / "build.json").read_text())
    assert record["variants"][0]["input_shapes"] == {"images": [1, 3, 16, 20]}
    wrong = run_cli("build", model, "--input-shape", "images=1,4,16,20", "--out", tmp_path / "d2")
    assert wrong.code == 3 and "does not fit the input's [batch, 3, height, width]" in wrong.err
    unknown = run_cli("build", model, "--input-shape", "imgs=1,3,16,20", "--out", tmp_path / "d3")
    assert unknown.code == 3 and "did you mean 'images'?" in unknown.err


def test_an_importer_that_crashes_is_one_line_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "crashing_factory.py").write_text(
        "import os, signal\n\n\ndef make():\n    print('loading the weights', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    result = run_cli("build", "crashing_factory:make", "--out", tmp_path / "dist", cwd=tmp_path)
    assert result.code == 7, result.err
    (line,) = result.error_lines
    assert "step 'import' was killed by SIGSEGV" in line and "import.log" in line
    assert "Traceback" not in result.err
    (log,) = (tmp_path / "dist" / ".packager-logs").rglob("import.log")
    assert "loading the weights" in log.read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["crashing_factory.py", "dist"]


def test_checks_run_beside_the_next_conversion(mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """overlap-first's check waits for overlap-second's conversion to start, which waits for that
    check: a build that checked only between conversions would fail both."""
    out = tmp_path / "dist"
    result = _build(mlp_onnx, out, [crashing_steps.OverlapTarget()], monkeypatch)
    assert result.failures == []
    record = json.loads((out / "mlp" / "1" / "build.json").read_text())
    assert {v["id"]: v["fidelity"]["status"] for v in record["variants"]} == {
        "overlap-first": "verified", "overlap-second": "verified"}  # fmt: skip


def test_latency_is_timed_with_no_conversion_beside_it(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'marked' converts (for 3 s) right after 'timed' is checked; 'timed''s latency run fails
    if that conversion starts while it runs."""
    out = tmp_path / "dist"
    result = _build(mlp_onnx, out, [crashing_steps.TimedTarget()], monkeypatch, latency=True)
    record = json.loads((out / "mlp" / "1" / "build.json").read_text())
    assert result.failures == [], record["variants"]
    variants = {v["id"]: v for v in record["variants"]}
    assert {k: v["fidelity"]["status"] for k, v in variants.items()} == {"timed": "verified", "marked": "verified"}
    assert variants["timed"]["latency_ms"]["runs"] >= 20
