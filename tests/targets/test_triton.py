"""triton: a model repository Triton's own schema accepts, runnable with a batch, plus SageMaker."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import run_cli

from packager.targets.triton import parse_config


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    out = tmp_path_factory.mktemp("triton") / "dist"
    result = run_cli("build", mlp_onnx, "-t", "triton", "--samples", mlp_samples, "--out", out, "--no-latency")
    assert result.code == 0, result.err
    return out / "mlp" / "1"


def test_triton_variants_verified(dist: Path) -> None:
    record = json.loads((dist / "build.json").read_text())
    fidelity = {v["id"]: v["fidelity"] for v in record["variants"]}
    assert set(fidelity) == {"triton-fp32", "triton-fp16"}
    assert all(f["status"] == "verified" for f in fidelity.values())
    assert fidelity["triton-fp32"]["max_abs_err"] <= 1e-5
    assert "no GPU run here" in fidelity["triton-fp32"]["runtime"]


def test_triton_config_parses_with_tritons_schema(dist: Path) -> None:
    from tritonclient.grpc import model_config_pb2

    config = parse_config((dist / "triton" / "triton-fp32" / "repository" / "mlp" / "config.pbtxt").read_text())
    assert config.name == "mlp" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert [list(i.dims) for i in config.input] == [[64]]  # the batch dim belongs to Triton
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert 32 in config.dynamic_batching.preferred_batch_size


def test_triton_config_errors_are_caught() -> None:
    from packager.errors import ConversionError

    with pytest.raises(ConversionError, match="Triton's schema"):
        parse_config('name: "x" max_batch_size: "many"')


def test_triton_model_runs_with_a_batch(dist: Path) -> None:
    session = ort.InferenceSession(str(dist / "triton" / "triton-fp16" / "repository" / "mlp" / "1" / "model.onnx"))
    assert session.run(None, {"x": np.zeros((48, 64), np.float32)})[0].shape == (48, 10)


def test_triton_tarball_is_the_repository(dist: Path) -> None:
    folder = dist / "triton" / "triton-fp32"
    with tarfile.open(folder / "model.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"mlp", "mlp/1", "mlp/1/model.onnx", "mlp/config.pbtxt"}
    assert {m.mtime for m in members.values()} == {0} and {m.uid for m in members.values()} == {0}
    assert members["mlp/1/model.onnx"].size == (folder / "repository" / "mlp" / "1" / "model.onnx").stat().st_size


def test_triton_sagemaker_template_is_off_by_default(dist: Path) -> None:
    text = (dist / "triton" / "triton-fp32" / "template.yaml").read_text()
    assert 'Default: "false"' in text and "AWS::SageMaker::Endpoint" in text
    assert 'SAGEMAKER_TRITON_DEFAULT_MODEL_NAME: "mlp"' in text and "{{" not in text
