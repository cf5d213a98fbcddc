"""Bad input: a one-line error with a hint, a non-zero exit code, and no output left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import Run, models, run_cli


def assert_clean_failure(result: Run, code: int, fragment: str, out: Path) -> None:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    assert len(result.error_lines) == 1, result.err
    assert fragment in result.error_lines[0]
    assert not out.exists(), f"{out} was left behind"


def test_error_truncated_onnx(mlp_onnx: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(mlp_onnx.read_bytes()[: mlp_onnx.stat().st_size // 2])
    result = run_cli("build", bad, "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "'truncated.onnx' is not a valid ONNX model", tmp_path / "dist")
    assert "(hint:" in result.error_lines[0]


def test_error_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("these are my notes, not a model\n" * 20)
    result = run_cli("build", bad, "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "'notes.onnx' is not a valid ONNX model", tmp_path / "dist")


def test_error_unknown_target_suggests_closest(mlp_onnx: Path, tmp_path: Path) -> None:
    result = run_cli("build", mlp_onnx, "--target", "onxx", "--out", tmp_path / "dist")
    assert_clean_failure(result, 2, "unknown target 'onxx'; did you mean 'onnx'?", tmp_path / "dist")


def test_error_missing_samples_file(mlp_onnx: Path, tmp_path: Path) -> None:
    result = run_cli("build", mlp_onnx, "--samples", tmp_path / "nope.npz", "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "samples file", tmp_path / "dist")
    assert "does not exist" in result.error_lines[0]


def test_error_samples_of_wrong_shape(mlp_onnx: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 8, 8), np.float32))
    result = run_cli("build", mlp_onnx, "--samples", tmp_path / "s.npz", "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "have shape (10, 8, 8); the model's input 'x' takes [batch, 64]", tmp_path / "dist")


def test_error_op_the_target_cannot_take(model_dir: Path, tmp_path: Path) -> None:
    custom = models.make_onnx_custom_op(model_dir)
    result = run_cli("build", custom, "--target", "onnx", "--out", tmp_path / "dist")
    assert_clean_failure(result, 4, "com.example::FancyActivation", tmp_path / "dist")


def test_error_out_is_a_file(mlp_onnx: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "occupied"
    blocker.write_text("a file where the output folder should go")
    result = run_cli("build", mlp_onnx, "--out", blocker / "dist")
    assert_clean_failure(result, 5, "cannot write to --out", blocker / "dist")
    assert blocker.read_text() == "a file where the output folder should go"


def test_error_out_not_writable(mlp_onnx: Path, tmp_path: Path) -> None:
    # sysfs refuses new folders even to root, so this holds wherever the tests run.
    result = run_cli("build", mlp_onnx, "--out", "/sys/packager-test-dist")
    assert_clean_failure(result, 5, "cannot write to --out '/sys/packager-test-dist'", Path("/sys/packager-test-dist"))


def test_error_missing_model_file(tmp_path: Path) -> None:
    result = run_cli("build", tmp_path / "missing.onnx", "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "does not exist", tmp_path / "dist")


def test_error_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\0" * 10)
    result = run_cli("build", tmp_path / "model.bin", "--out", tmp_path / "dist")
    assert_clean_failure(result, 3, "cannot tell the format of 'model.bin'", tmp_path / "dist")


def test_error_bad_config_key(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text('outt = "x"\n')
    result = run_cli("build", mlp_onnx, "--out", "dist", cwd=tmp_path)
    assert_clean_failure(result, 2, "unknown key `outt`; did you mean 'out'?", tmp_path / "dist")


def test_failed_rebuild_keeps_the_previous_output(mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    assert run_cli("build", mlp_onnx, "--out", out, "--no-latency", "-p", "fp32").code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    np.savez(tmp_path / "s.npz", x=np.zeros((3, 5), np.float32))
    result = run_cli("build", mlp_onnx, "--out", out, "--samples", tmp_path / "s.npz", "--force")
    assert result.code == 3
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
