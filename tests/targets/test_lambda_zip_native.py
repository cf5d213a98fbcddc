"""lambda-zip with engine = "native": the digits CNN compiled to C, zipped with the stdlib-only
handler, and run by the real runtime interface client (awslambdaric) under the runtime's Python."""

from __future__ import annotations

import json
import platform
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import models, run_cli

from packager.config import cache_dir
from packager.runtimes.aws_lambda import LambdaRunner
from packager.tools.lambda_runtime import http_event
from packager.tools.pythons import find_python

MB = 1_000_000
NATIVE = '[target.lambda-zip]\nengine = "native"\n'
needs_312 = pytest.mark.skipif(find_python("3.12") is None, reason="no Python 3.12 here to run the python3.12 bundle")


def build(model: Path, out: Path, *args: str, config: str = NATIVE) -> tuple[int, str, dict | None]:
    (out.parent / "packager.toml").write_text(config)
    result = run_cli("build", model, "--target", "lambda-zip", "--out", out, *args, cwd=out.parent)
    record = None
    if result.code == 0:
        record = json.loads(next(out.glob("*/1/build.json")).read_text())
        record["_dir"] = str(next(out.glob("*/1")) / "lambda-zip" / "lambda-native-fp32")
    return result.code, result.err, record


@pytest.fixture(scope="module")
def cnn(model_dir: Path) -> Path:
    return models.make_torch_pt2(model_dir)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cnn: Path, digits_images: Path) -> dict:
    code, err, record = build(cnn, tmp_path_factory.mktemp("native") / "dist", "--samples", str(digits_images))
    assert code == 0, err
    assert record is not None
    return record


def checks(record: dict) -> dict[str, int]:
    prefix = "lambda-native-fp32."
    return {c["name"].removeprefix(prefix): c["value"] for c in record["checks"] if c["name"].startswith(prefix)}


@needs_312
def test_lambda_native_verified_through_awslambdaric(built: dict) -> None:
    (variant,) = built["variants"]
    assert variant["id"] == "lambda-native-fp32" and variant["runtime"] == {
        "name": "lambda",
        "min_version": "python3.12",
    }
    assert variant["fidelity"]["status"] == "verified"
    assert variant["fidelity"]["runtime"].startswith("awslambdaric on Python 3.12")
    assert "native engine" in variant["fidelity"]["runtime"]
    assert variant["fidelity"]["max_abs_err"] <= 1e-5 and variant["fidelity"]["top1_agreement"] == 1.0
    assert 0 < variant["init_ms"] < 10_000
    assert variant["latency_ms"]["p50"] > 0


def test_lambda_native_int8_is_recorded_as_not_built(built: dict) -> None:
    (skip,) = built["skipped"]
    assert skip["variant"] == "lambda-native-int8" and 'engine = "onnxruntime"' in skip["reason"]


def test_lambda_native_zip_is_under_a_megabyte_and_checked(built: dict) -> None:
    sizes = checks(built)
    assert sizes["function.zip.zipped_bytes"] <= 1 * MB
    assert sizes["function.zip.native_engine_advice_bytes"] == sizes["function.zip.zipped_bytes"]
    assert sizes["lib.shared_libs_beyond_libc_libm"] == 0
    assert sizes["lib.glibc_minor_needed"] <= 34  # Amazon Linux 2023
    assert all(c["ok"] is not False for c in built["checks"])


def test_lambda_native_zip_holds_the_handler_and_library_only(built: dict) -> None:
    with zipfile.ZipFile(Path(built["_dir"]) / "function.zip") as archive:
        names = archive.namelist()
        signature = json.loads(archive.read("model/signature.json"))
        infos = archive.infolist()
    assert names == ["model/libcnn.so", "model/signature.json", "native_inference.py"]
    assert not any(n.startswith(("numpy", "onnxruntime", "aws_lambda_powertools")) for n in names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert signature["engine"] == "native" and signature["handler"] == "native_inference.handler"
    assert (signature["input_size"], signature["output_size"]) == (64, 10)


def test_lambda_native_template_needs_no_powertools_layer(built: dict) -> None:
    text = (Path(built["_dir"]) / "template.yaml").read_text()
    assert "Handler: native_inference.handler" in text and "CodeUri: function.zip" in text
    assert "Powertools" not in text and "Layers:" not in text and "{{" not in text
    lint = [c for c in built["checks"] if c["name"] == "lambda-native-fp32.template.cfn_lint_findings"]
    assert lint and lint[0]["ok"] in (True, None)


@pytest.fixture(scope="module")
def running(built: dict) -> Iterator[LambdaRunner]:
    if find_python("3.12") is None:
        pytest.skip("no Python 3.12 here to run the python3.12 bundle")
    runner = LambdaRunner.from_zip(Path(built["_dir"]), cache_dir())
    yield runner
    runner.close()


def invoke(runner: LambdaRunner, method: str, path: str, body: object = None) -> tuple[int, dict]:
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    answer = runner.function.invoke(http_event(method, path, text))
    return answer["statusCode"], json.loads(answer["body"])


@pytest.mark.parametrize(
    ("tensor", "code", "fragment"),
    [
        (
            {"shape": [1, 64]},
            "wrong_shape",
            "inputs[0] ('input'): shape [1, 64] does not fit the model's [-1, 1, 8, 8]",
        ),
        ({"datatype": "FP64"}, "wrong_datatype", "inputs[0] ('input'): datatype is 'FP64'; expected 'FP32'"),
        ({"data": [0.0] * 63}, "wrong_data_size", "inputs[0] ('input'): 'data' has 63 values; shape [1, 1, 8, 8]"),
        ({"name": "x"}, "unknown_input", "inputs[0]: unknown input 'x'; the model takes ['input']"),
    ],
)
def test_lambda_native_bad_request_gets_400_naming_the_field(running: LambdaRunner, tensor: dict, code: str,
                                                             fragment: str) -> None:  # fmt: skip
    good = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
    status, body = invoke(running, "POST", "/v2/models/cnn/infer", {"inputs": [good | tensor]})
    assert status == 400
    assert body["error"]["code"] == code and fragment in body["error"]["message"]


def test_lambda_native_serves_metadata_and_404s(running: LambdaRunner) -> None:
    status, body = invoke(running, "GET", "/v2/models/cnn")
    assert status == 200 and body["platform"] == "packager_c"
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert invoke(running, "GET", "/v2/models/resnet")[1]["error"]["code"] == "model_not_found"
    assert invoke(running, "GET", "/v2/health/ready") == (200, {"ready": True})


def test_lambda_native_zip_is_reproducible(built: dict, cnn: Path, digits_images: Path, tmp_path: Path) -> None:
    code, err, again = build(cnn, tmp_path / "dist", "--samples", str(digits_images), "--no-latency")
    assert code == 0, err
    assert again is not None
    first = (Path(built["_dir"]) / "function.zip").read_bytes()
    assert (Path(again["_dir"]) / "function.zip").read_bytes() == first


def two_outputs(folder: Path) -> Path:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])], "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])],
    )  # fmt: skip
    path = folder / "two.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_lambda_native_refuses_a_model_with_two_outputs(tmp_path: Path) -> None:
    code, err, _ = build(two_outputs(tmp_path), tmp_path / "dist", "--dry-run")
    assert code == 4, err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "native engine serves models with one float32 input and one float32 output" in line
    assert "1 input(s) and 2 output(s)" in line and 'engine = "onnxruntime"' in line


def test_lambda_native_refuses_a_layer(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, _ = build(mlp_onnx, tmp_path / "dist", "--dry-run", config=NATIVE + "layer = true\n")
    assert code == 2 and 'layer = true does not apply to engine = "native"' in err


def test_lambda_zip_engine_is_set_from_the_environment_or_the_cli(mlp_onnx: Path, tmp_path: Path) -> None:
    env = {"PACKAGER_TARGET_LAMBDA_ZIP_ENGINE": "native"}
    from_env = run_cli("build", mlp_onnx, "-t", "lambda-zip", "--dry-run", cwd=tmp_path, env=env)
    assert from_env.code == 0, from_env.err
    assert "lambda-native-fp32 [variant fp32]" in from_env.out
    cli_wins = run_cli("build", mlp_onnx, "-t", "lambda-zip", "--dry-run", "--set", "lambda-zip.engine=onnxruntime",
                       cwd=tmp_path, env=env)  # fmt: skip
    assert cli_wins.code == 0, cli_wins.err
    assert "lambda-zip-fp32 [variant fp32]" in cli_wins.out and "lambda-native" not in cli_wins.out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="checks the cross-arch path from an x86_64 host")
def test_lambda_native_arm64_needs_the_cross_compiler(mlp_onnx: Path, tmp_path: Path) -> None:
    code, err, record = build(mlp_onnx, tmp_path / "dist", "-p", "fp32", "--no-latency",
                              config=NATIVE + 'arch = "arm64"\n')  # fmt: skip
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        assert code == 6
        assert "compiles the model with aarch64-linux-gnu-gcc, which is not on PATH" in err
        assert "apt-get install gcc-aarch64-linux-gnu" in err
        return
    assert code == 0, err
    assert record is not None
    (variant,) = record["variants"]
    assert variant["fidelity"]["status"] == "unverified"
    assert "arm64 bundle cannot run on this x86_64 host" in variant["fidelity"]["reason"]
