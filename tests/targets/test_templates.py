"""The SAM templates packager writes pass cfn-lint and `sam validate` (plain and --lint), offline.
Also covers the lambda-zip options that change the template: a layer and a model on S3."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli

from packager.tools import sam
from packager.tools.pythons import find_python


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path) -> Path:
    if None in sam.verify().values():
        pytest.fail(f"the template checkers are missing ({sam.verify()}); `make setup` installs them")
    work = tmp_path_factory.mktemp("templates")
    (work / "packager.toml").write_text(
        "[target.lambda-zip]\nlayer = true\nmodel_from_s3 = true\nmax_batch = 16\n"
        '[target.lambda-container]\narch = "x86_64"\n'
    )
    result = run_cli("build", mlp_onnx, "-t", "lambda-zip", "-t", "lambda-container", "-t", "triton", "-p", "fp32",
                     "--no-latency", "--out", "dist", cwd=work)  # fmt: skip
    assert result.code == 0, result.err
    return work / "dist" / "mlp" / "1"


TEMPLATES = [
    "lambda-zip/lambda-zip-fp32/template.yaml",
    "lambda-container/lambda-container-fp32/template.yaml",
    "triton/triton-fp32/template.yaml",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_passes_cfn_lint(dist: Path, template: str) -> None:
    result = sam.cfn_lint(dist / template)
    assert result is not None
    assert result == (0, ""), result[1]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("lint", [True, False])
def test_template_passes_sam_validate(dist: Path, template: str, lint: bool) -> None:
    result = sam.sam_validate(dist / template, lint=lint)
    assert result is not None
    code, output = result
    assert code == 0, output
    assert "is a valid SAM Template" in output


def test_build_records_the_lint_as_a_check(dist: Path) -> None:
    record = json.loads((dist / "build.json").read_text())
    lint = {c["name"]: c for c in record["checks"] if c["name"].endswith("cfn_lint_findings")}
    assert set(lint) == {"lambda-zip-fp32.template.cfn_lint_findings",
                         "lambda-container-fp32.template.cfn_lint_findings",
                         "triton-fp32.template.cfn_lint_findings"}  # fmt: skip
    assert all(c["ok"] is True and c["value"] == 0 for c in lint.values())


def test_layer_and_s3_model_split_the_bundle(dist: Path) -> None:
    folder = dist / "lambda-zip" / "lambda-zip-fp32"
    with zipfile.ZipFile(folder / "function.zip") as function, zipfile.ZipFile(folder / "layer.zip") as layer:
        assert sorted(function.namelist()) == ["inference.py", "model/signature.json"]
        assert "python/onnxruntime/__init__.py" in layer.namelist()
    assert (folder / "model.onnx").is_file()
    text = (folder / "template.yaml").read_text()
    assert "ContentUri: layer.zip" in text and "MODEL_S3_URI: !Ref ModelS3Uri" in text
    assert "s3:GetObject" in text and 'MAX_BATCH: "16"' in text


@pytest.mark.skipif(find_python("3.12") is None, reason="no Python 3.12 here to run the python3.12 bundle")
def test_layer_bundle_and_container_context_run_under_awslambdaric(dist: Path) -> None:
    record = json.loads((dist / "build.json").read_text())
    for variant in record["variants"]:
        if variant["target"] == "triton":
            continue
        assert variant["fidelity"]["status"] == "verified", variant["id"]
        assert variant["fidelity"]["max_abs_err"] <= 1e-5
        assert variant["init_ms"] > 0


def test_container_context_is_buildable(dist: Path) -> None:
    context = dist / "lambda-container" / "lambda-container-fp32" / "context"
    dockerfile = (context / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.12" in dockerfile and 'CMD ["inference.handler"]' in dockerfile
    pins = (context / "requirements.txt").read_text().split()
    assert any(p.startswith("onnxruntime==") for p in pins) and any(p.startswith("numpy==") for p in pins)
    assert {p.name for p in context.iterdir()} == {"Dockerfile", "inference.py", "model", "requirements.txt"}
    record = json.loads((dist / "build.json").read_text())
    (image,) = [c for c in record["checks"] if c["name"] == "lambda-container-fp32.image_bytes_estimate"]
    assert image["ok"] and image["limit"] == 10 * 1024**3


def test_verify_reruns_the_cloud_bundles(dist: Path) -> None:
    result = run_cli("verify", dist)
    assert result.code == 0, result.out + result.err
    assert result.out.count("✓") == 3 and "Traceback" not in result.err
