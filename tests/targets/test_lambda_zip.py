"""lambda-zip end to end: wheels for Lambda's platform, slimmed, zipped, gated, and run by the
real runtime interface client (awslambdaric) under the runtime's Python."""

from __future__ import annotations

import json
import platform
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from packager.tools.pythons import find_python

MB = 1_000_000


def build(model: Path, out: Path, *args: str, config: str = "") -> tuple[int, str, dict | None]:
    if config:
        (out.parent / "packager.toml").write_text(config)
    result = run_cli("build", model, "--target", "lambda-zip", "--out", out, *args, cwd=out.parent)
    record = None
    if result.code == 0:
        record = json.loads(next(out.glob("*/1/build.json")).read_text())
    return result.code, result.err, record


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> dict:
    out = tmp_path_factory.mktemp("lambda") / "dist"
    code, err, record = build(mlp_onnx, out, "--samples", str(mlp_samples))
    assert code == 0, err
    assert record is not None
    record["_dir"] = str(next(out.glob("*/1")))
    return record


def checks(record: dict, variant: str) -> dict[str, int]:
    return {
        c["name"].removeprefix(variant + "."): c["value"] for c in record["checks"] if c["name"].startswith(variant)
    }


@pytest.mark.skipif(find_python("3.12") is None, reason="no Python 3.12 here to run the python3.12 bundle")
def test_lambda_zip_verified_through_awslambdaric(built: dict) -> None:
    variants = {v["id"]: v for v in built["variants"]}
    assert set(variants) == {"lambda-zip-fp32", "lambda-zip-int8"}
    fp32 = variants["lambda-zip-fp32"]
    assert fp32["fidelity"]["status"] == "verified"
    assert fp32["fidelity"]["runtime"].startswith("awslambdaric on Python 3.12")
    assert fp32["fidelity"]["max_abs_err"] <= 1e-5
    assert 0 < fp32["init_ms"] < 10_000
    assert fp32["latency_ms"]["p50"] > 0
    assert variants["lambda-zip-int8"]["fidelity"]["status"] == "verified"


def test_lambda_zip_sizes_are_checked_and_small(built: dict) -> None:
    sizes = checks(built, "lambda-zip-fp32")
    assert sizes["function.zip.zipped_bytes"] <= 25 * MB
    assert sizes["unzipped_bytes"] <= 75 * MB
    assert all(c["ok"] is True for c in built["checks"])
    assert all(c["limit"] > 0 for c in built["checks"] if c["name"].endswith("bytes_at_max_batch"))
    assert {"request_bytes_at_max_batch", "response_bytes_at_max_batch"} <= set(sizes)


def test_lambda_zip_holds_handler_model_and_slim_deps(built: dict) -> None:
    with zipfile.ZipFile(Path(built["_dir"]) / "lambda-zip" / "lambda-zip-fp32" / "function.zip") as archive:
        names = archive.namelist()
        signature = json.loads(archive.read("model/signature.json"))
        infos = archive.infolist()
    assert names == sorted(names)
    assert {"inference.py", "model/model.onnx", "onnxruntime/__init__.py", "numpy/__init__.py"} <= set(names)
    assert not any("/tests/" in n or n.endswith(".pyi") or n.startswith("onnxruntime/tools/") for n in names)
    assert not any(n.startswith(("aws_lambda_powertools/", "google/")) for n in names)  # layer / unused
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert signature["runtime"] == "python3.12" and signature["arch"] == "x86_64"
    assert signature["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]


def test_lambda_zip_template_references_the_bundle(built: dict) -> None:
    text = (Path(built["_dir"]) / "lambda-zip" / "lambda-zip-fp32" / "template.yaml").read_text()
    assert "CodeUri: function.zip" in text and "Runtime: python3.12" in text and "Architectures: [x86_64]" in text
    assert "AWSLambdaPowertoolsPythonV3-python312-x86_64" in text
    assert "/v2/models/mlp/infer" in text and "{{" not in text


def test_lambda_zip_refuses_a_runtime_without_the_glibc(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, _ = build(mlp_onnx, tmp_path / "dist", config='[target.lambda-zip]\nruntime = "python3.11"\n')
    assert code == 2
    assert "python3.11 runs on Amazon Linux 2 (glibc 2.26)" in err and "python3.12" in err
    assert not (tmp_path / "dist").exists()


def test_lambda_zip_unknown_option_is_named(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, _ = build(mlp_onnx, tmp_path / "dist", config='[target.lambda-zip]\narchitecture = "arm64"\n')
    assert code == 2 and "unknown key `architecture`" in err


def test_lambda_zip_over_the_limit_fails_at_build_time(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper, save

    # 16M random float32 weights: 64 MB that no compression shrinks, over the 50 MB upload limit.
    weights = np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4096])],
        [numpy_helper.from_array(weights, "w")],
    )  # fmt: skip
    model = tmp_path / "big.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    code, err, _ = build(model, tmp_path / "dist", "-p", "fp32", "--no-latency")
    assert code == 10, err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "function.zip (zipped) is" in line and "over the limit of 52,428,800 bytes" in line
    assert "model/ 67.1 MB" in line  # the biggest contributor, named
    assert "-p int8" in line and "layer = true" in line and "model_from_s3" in line and "lambda-container" in line
    assert not (tmp_path / "dist").exists()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="checks the cross-arch path from an x86_64 host")
def test_lambda_zip_arm64_is_size_checked_and_honestly_unverified(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, record = build(mlp_onnx, tmp_path / "dist", "-p", "fp32", "--no-latency",
                              config='[target.lambda-zip]\narch = "arm64"\n')  # fmt: skip
    assert code == 0, err
    assert record is not None
    (variant,) = record["variants"]
    assert variant["fidelity"]["status"] == "unverified"
    assert "arm64 bundle cannot run on this x86_64 host" in variant["fidelity"]["reason"]
    sizes = checks(record, "lambda-zip-fp32")
    assert sizes["function.zip.zipped_bytes"] <= 50 * 1024 * 1024
    with zipfile.ZipFile(
        next((tmp_path / "dist").glob("*/1")) / "lambda-zip" / "lambda-zip-fp32" / "function.zip"
    ) as z:
        assert any(n.endswith("aarch64-linux-gnu.so") for n in z.namelist())


@pytest.mark.skipif(find_python("3.13") is None, reason="no Python 3.13 here to run the python3.13 bundle")
def test_lambda_zip_python313_runs_under_313(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, record = build(mlp_onnx, tmp_path / "dist", "-p", "fp32", "--no-latency",
                              config='[target.lambda-zip]\nruntime = "python3.13"\n')  # fmt: skip
    assert code == 0, err
    assert record is not None
    (variant,) = record["variants"]
    assert variant["fidelity"]["status"] == "verified"
    assert "Python 3.13" in variant["fidelity"]["runtime"]
