"""Every exit code the README's table lists, driven once through the CLI as a user meets it; and
every code the CLI can return is in that table."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import models, run_cli
from onnx import TensorProto, helper, save

import packager.errors as errors

ROOT = Path(__file__).resolve().parents[2]
DRIVEN: set[int] = set()  # the codes the tests below saw


def _table() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Errors and exit codes") :]
    section = section[: section.index("\n## ")]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.M)}


def _expect(result: object, code: int, fragment: str) -> None:
    assert result.code == code, (result.code, result.err)  # type: ignore[attr-defined]
    assert fragment in result.err, result.err  # type: ignore[attr-defined]
    assert "Traceback" not in result.err  # type: ignore[attr-defined]
    DRIVEN.add(code)


def _shim(tmp_path: Path, code: str) -> dict[str, str]:
    """A sitecustomize on PYTHONPATH: the CLI process starts with ``code`` run."""
    folder = tmp_path / "shim"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def test_exit_codes_of_bad_input(mlp_onnx: Path, model_dir: Path, tmp_path: Path) -> None:
    _expect(run_cli("build", mlp_onnx, "--target", "onxn", "--out", tmp_path / "a"), 2, "did you mean 'onnx'")
    _expect(run_cli("build", "--no-such-flag"), 2, "No such option")
    _expect(run_cli("build", tmp_path / "missing.onnx"), 3, "does not exist")
    det = models.make_onnx_det(model_dir)
    _expect(run_cli("build", det, "-t", "static-lib", "--out", tmp_path / "b"), 4, "Det")
    (tmp_path / "file").write_text("x")
    _expect(run_cli("build", mlp_onnx, "--out", tmp_path / "file"), 5, "is a file")


def test_exit_code_6_a_package_that_is_not_installed(tmp_path: Path) -> None:
    env = _shim(tmp_path, "import sys\nsys.modules['uvicorn'] = None  # as if it were not installed\n")
    _expect(run_cli("serve", "--registry", tmp_path, env=env), 6, "'uvicorn', which is not installed")


def test_exit_codes_7_and_15_a_converter_that_fails(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text("def make():\n    raise RuntimeError('the weights are not there')\n")
    _expect(run_cli("build", "failing:make", "--out", tmp_path / "a", cwd=tmp_path), 7, "the weights are not there")
    det = models.make_onnx_det(tmp_path)
    _expect(run_cli("build", det, "-t", "onnx", "-t", "static-lib", "-p", "fp32", "--no-latency",
                    "--out", tmp_path / "b"), 15, "1 of 2 targets failed: static-lib")  # fmt: skip


def test_exit_code_8_an_fp32_variant_out_of_tolerance(model_dir: Path, tmp_path: Path) -> None:
    """No difference at all allowed: scikit-learn computes the reference in float64 and the
    converted graph in float32, so the probabilities differ in their last bits on any machine
    (a Keras model's did not always: TensorFlow and onnxruntime can round alike), and the fp32
    variant fails, and the build with it."""
    model = models.make_sklearn_pipeline(model_dir)
    (tmp_path / "packager.toml").write_text("[tolerance.fp32]\natol = 0\nrtol = 0\n")
    _expect(run_cli("build", model, "-t", "onnx", "-p", "fp32", "--no-latency", "--out", tmp_path / "d",
                    cwd=tmp_path), 8, "variant 'onnx-fp32' failed validation")  # fmt: skip


def test_exit_code_9_verify(built_mlp: Path, tmp_path: Path) -> None:
    vdir = tmp_path / "mlp" / "1"
    shutil.copytree(built_mlp, vdir)
    (vdir / "source" / "model.onnx").write_bytes(b"changed")
    _expect(run_cli("verify", vdir), 9, "no longer match")


def test_exit_code_10_a_sample_over_lambdas_payload(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2_000_000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2_000_000])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "wide", [x], [y])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "wide.onnx"))
    np.savez(tmp_path / "s.npz", x=np.ones((2, 2_000_000), np.float32))
    _expect(run_cli("build", tmp_path / "wide.onnx", "--samples", tmp_path / "s.npz", "-t", "lambda-zip",
                    "--out", tmp_path / "d"), 10, "payload")  # fmt: skip


def test_exit_codes_11_12_13_of_registries(built_mlp: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    _expect(run_cli("rollout", "mlp", "--version", "3", "--registry", reg), 11, "is not published")
    assert run_cli("publish", built_mlp, "--registry", reg).code == 0
    other = tmp_path / "other" / "mlp" / "1"
    shutil.copytree(built_mlp, other)
    record = json.loads((other / "build.json").read_text())
    record["model"]["labels"] = [str(i) for i in range(10)]  # another build under the same version
    (other / "build.json").write_text(json.dumps(record))
    _expect(run_cli("publish", other, "--registry", reg), 12, "already published with other content")
    signed = tmp_path / "signed"
    assert run_cli("keys", "init", "--keys", tmp_path / "keys", "--registry", signed).code == 0
    _expect(run_cli("publish", built_mlp, "--registry", signed), 13, "pass --keys DIR")


def test_exit_code_14_a_client_that_cannot_resolve(tmp_path: Path) -> None:
    _expect(run_cli("fetch", "mlp", "--server", "http://127.0.0.1:9", "--cache", tmp_path), 14, "error:")


def test_exit_code_70_a_bug_is_one_line_with_how_to_see_it(mlp_onnx: Path, tmp_path: Path) -> None:
    env = _shim(tmp_path, "import packager.inspect\n\n"
                          "def broken(model):\n    raise ZeroDivisionError('a bug of packager')\n\n"
                          "packager.inspect.inspect_model = broken\n")  # fmt: skip
    result = run_cli("inspect", mlp_onnx, env=env)
    _expect(result, 70, "internal error: ZeroDivisionError: a bug of packager")
    assert "PACKAGER_DEBUG=1" in result.err


def test_exit_code_130_interrupted_leaves_nothing(mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    # Ctrl-C as in a terminal: a run started in the background of a non-interactive shell (CI
    # under nohup, `cmd &`) inherits SIGINT ignored, and Python then leaves it ignored
    proc = subprocess.Popen([sys.executable, "-m", "packager", "build", mlp_onnx, "-t", "onnx", "-t", "lambda-zip",
                             "--out", str(out)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(out.glob(".packager-staging-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the build, past the import
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))
    DRIVEN.add(130)


def test_exit_codes_every_code_is_in_the_readme_and_every_row_was_driven() -> None:
    table = _table()
    raised = _raised_error_classes()
    codes = {cls.exit_code for cls in raised} | _literal_exits() | {2}  # 2: click's own usage errors
    assert codes <= set(table), f"codes the CLI can return that the README lacks: {sorted(codes - set(table))}"
    assert set(table) <= codes, f"README rows no code path returns: {sorted(set(table) - codes)}"
    if len(DRIVEN) > 1:  # run with the tests above (not alone with -k)
        assert set(table) <= DRIVEN, f"README codes no test above drove: {sorted(set(table) - DRIVEN)}"


def _raised_error_classes() -> set[type[errors.PackagerError]]:
    """The PackagerError classes some code makes (calls by name) in packager, targets or handlers."""
    names: set[str] = set()
    for folder in ("packager", "targets", "handlers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    func = node.func
                    names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.PackagerError)
            and c.__name__ in names}  # fmt: skip


def _literal_exits() -> set[int]:
    """``sys.exit(<number>)`` and the INTERNAL_ERROR and INTERRUPTED constants in the CLI."""
    text = (ROOT / "packager" / "cli.py").read_text()
    found = {int(n) for n in re.findall(r"sys\.exit\((\d+)\)", text)}
    found |= {int(n) for n in re.findall(r"^(?:INTERNAL_ERROR|INTERRUPTED) = (\d+)", text, re.M)}
    return found
