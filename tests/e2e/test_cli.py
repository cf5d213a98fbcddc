"""The commands besides build: --help, targets, inspect, verify."""

from __future__ import annotations

from pathlib import Path

from conftest import models, run_cli


def test_help_is_light_and_names_every_command() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in ("build", "targets", "inspect", "verify"):
        assert command in result.out


def test_cli_import_pulls_no_framework() -> None:
    import subprocess
    import sys

    heavy = "('torch', 'tensorflow', 'onnx', 'onnxruntime', 'numpy')"
    code = f"import sys, packager.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"


def test_targets_lists_onnx() -> None:
    result = run_cli("targets")
    assert result.code == 0 and "onnx" in result.out and "fp16" in result.out


def test_inspect_shows_signature_ops_and_targets(mlp_onnx: Path) -> None:
    result = run_cli("inspect", mlp_onnx)
    assert result.code == 0, result.err
    assert "[batch, 64]" in result.out and "Gemm×2" in result.out
    assert "onnx" in result.out and "yes" in result.out


def test_inspect_json_names_the_op_a_target_refuses(model_dir: Path) -> None:
    import json

    result = run_cli("inspect", models.make_onnx_custom_op(model_dir), "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["ops"] == {"com.example::FancyActivation": 1}
    assert info["targets"]["onnx"].startswith("no:") and "FancyActivation" in info["targets"]["onnx"]


def test_verify_without_a_build_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("verify", tmp_path)
    assert result.code == 3 and "no build.json" in result.error_lines[0]
