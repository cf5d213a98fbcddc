"""The digits example, as `make demo` runs it: train, export, build every target."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_digits_example_trains_exports_and_builds(tmp_path: Path) -> None:
    out = tmp_path / "build"
    subprocess.run([sys.executable, str(EXAMPLE / "train.py"), "--out", str(out), "--epochs", "8"],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    assert {p.name for p in out.iterdir()} == {"digits.keras", "digits.onnx", "samples.npz"}
    dist = tmp_path / "dist"
    result = run_cli("build", out / "digits.keras", "--samples", out / "samples.npz", "--out", dist, cwd=EXAMPLE)
    assert result.code == 0, result.err
    # Only packager's own lines at the default verbosity: TensorFlow's, CUDA's and absl's go to the logs.
    foreign = [ln for ln in result.err.splitlines() if ln.strip() and not re.match(r"(  [✓!] |built )", ln)]
    assert foreign == [], foreign
    assert f"report: {dist / 'digits' / '1' / 'report.html'}" in result.out
    record = json.loads((dist / "digits" / "1" / "build.json").read_text())
    assert record["model"]["preprocessing"] == {"scale": 0.0625}  # from examples/digits/packager.toml
    assert record["model"]["labels"] == [str(i) for i in range(10)]
    statuses = {v["id"]: v["fidelity"]["status"] for v in record["variants"]}
    assert statuses["onnx-fp32"] == "verified" and statuses["onnx-int8-static"] == "verified"
    # The bundle takes raw 0..16 pixels; the exported ONNX file takes pixels / 16.
    import onnxruntime as ort

    raw = np.load(out / "samples.npz")["pixels"][:32]
    bundle = ort.InferenceSession(str(dist / "digits" / "1" / "onnx" / "onnx-fp32" / "model.onnx"))
    exported = ort.InferenceSession(str(out / "digits.onnx"))
    np.testing.assert_allclose(
        bundle.run(None, {"pixels": raw})[0], exported.run(None, {"pixels": raw / 16})[0], atol=1e-4
    )
    # `targets = ["all"]` in the example's packager.toml: every installed target was built.
    assert {v["target"] for v in record["variants"]} >= {"onnx", "lambda-zip", "lambda-container", "triton"}
    zipped = next(v for v in record["variants"] if v["id"] == "lambda-zip-fp32")
    assert zipped["fidelity"]["max_abs_err"] <= 1e-5 and zipped["init_ms"] > 0
    sizes = {c["name"]: c["value"] for c in record["checks"]}
    assert sizes["lambda-zip-fp32.function.zip.zipped_bytes"] <= 25_000_000
    assert sizes["lambda-zip-fp32.unzipped_bytes"] <= 75_000_000
    _check_samconfig_deploys_the_example(dist, tmp_path)


def _check_samconfig_deploys_the_example(dist: Path, tmp_path: Path) -> None:
    """The repository's samconfig.toml (its `digits` config) names the template `make demo` writes."""
    import shutil

    from packager.tools import sam

    root = tmp_path / "repo"
    (root / "examples" / "digits").mkdir(parents=True)
    shutil.copyfile(EXAMPLE.parents[1] / "samconfig.toml", root / "samconfig.toml")
    (root / "examples" / "digits" / "dist").symlink_to(dist)
    tool = sam.find("sam")
    assert tool is not None, "`make setup` installs the SAM CLI"
    command = [str(tool), "validate", "--config-file", "samconfig.toml", "--config-env", "digits"]
    done = subprocess.run(command, cwd=root, env=sam.offline_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr
