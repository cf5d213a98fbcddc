"""Each importer on a real small model: canonical ONNX that matches the source framework."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import models

from packager import config, importers
from packager.pipeline import BuildRequest, build


def build_fp32(model: str | Path, out: Path, samples: Path | None = None) -> dict:
    request = BuildRequest(model=str(model), targets=("onnx",), precisions=("fp32",), samples=samples,
                           out=out, latency=False)  # fmt: skip
    result = build(request, config.load(out.parent, environ={}))
    assert result.path is not None
    return json.loads((result.path / "build.json").read_text())


def only_variant(record: dict) -> dict:
    (fp32,) = [v for v in record["variants"] if v["id"] == "onnx-fp32"]
    return fp32


def test_import_torch_pt2(model_dir: Path, digits_images: Path, tmp_path: Path) -> None:
    record = build_fp32(models.make_torch_pt2(model_dir), tmp_path / "dist", digits_images)
    assert record["model"]["source"]["format"] == "torch"
    assert record["validation"]["reference_runtime"].startswith("torch ")
    assert record["model"]["signature"]["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert only_variant(record)["fidelity"]["status"] == "verified"
    assert only_variant(record)["fidelity"]["max_abs_err"] < 1e-4
    assert record["model"]["original"][0]["path"] == "source/original.pt2"


def test_import_torch_factory(digits_images: Path, tmp_path: Path) -> None:
    record = build_fp32("models:torch_cnn", tmp_path / "dist", digits_images)
    assert record["model"]["name"] == "torch_cnn"
    assert record["model"]["signature"]["inputs"][0]["shape"][0] == "batch"
    assert only_variant(record)["fidelity"]["status"] == "verified"
    # The original is kept as an exported program a later target can convert from.
    import torch

    program = torch.export.load(str(tmp_path / "dist" / "torch_cnn" / "1" / "source" / "original.pt2"))
    x = torch.randn(3, 1, 8, 8)
    model, _ = models.torch_cnn()
    np.testing.assert_allclose(program.module()(x).detach().numpy(), model(x).detach().numpy(), atol=1e-5)


def test_import_keras(model_dir: Path, digits_nhwc: Path, tmp_path: Path) -> None:
    record = build_fp32(models.make_keras_cnn(model_dir), tmp_path / "dist", digits_nhwc)
    sig = record["model"]["signature"]
    assert sig["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["batch", 8, 8, 1]}]
    assert sig["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]
    assert record["validation"]["reference_runtime"].startswith("tensorflow ")
    assert only_variant(record)["fidelity"]["status"] == "verified"
    assert record["model"]["original"][0]["path"] == "source/original.keras"


def test_import_saved_model(model_dir: Path, digits_nhwc: Path, tmp_path: Path) -> None:
    record = build_fp32(models.make_saved_model(model_dir), tmp_path / "dist", digits_nhwc)
    assert record["model"]["source"]["format"] == "keras"
    assert record["model"]["signature"]["outputs"][0]["name"] == "output_0"
    assert only_variant(record)["fidelity"]["status"] == "verified"
    assert any(e["path"].endswith("saved_model.pb") for e in record["model"]["original"])


@pytest.mark.parametrize("maker", [models.make_sklearn_forest, models.make_sklearn_pipeline])
def test_import_sklearn(maker, model_dir: Path, mlp_samples: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "raw.npz", input=models.digits(200)[0])
    record = build_fp32(maker(model_dir), tmp_path / "dist", tmp_path / "raw.npz")
    assert record["model"]["task"] == "classification"
    assert record["model"]["labels"] == [str(i) for i in range(10)]
    assert [o["name"] for o in record["model"]["signature"]["outputs"]] == ["label", "probabilities"]
    fid = only_variant(record)["fidelity"]
    assert fid["status"] == "verified" and fid["top1_agreement"] == 1.0
    assert record["validation"]["reference_runtime"].startswith("scikit-learn ")


def test_import_onnx_keeps_no_original(mlp_onnx: Path) -> None:
    source = importers.detect(str(mlp_onnx))
    assert (source.format, source.kind) == ("onnx", "onnx")


def test_import_folds_preprocessing_from_config(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text("[preprocessing]\nscale = 0.0625\n")
    x = models.digits(64)[0]  # raw 0..16 pixels
    np.savez(tmp_path / "raw.npz", x=x)
    request = BuildRequest(model=str(mlp_onnx), precisions=("fp32",), samples=tmp_path / "raw.npz",
                           out=tmp_path / "dist", latency=False)  # fmt: skip
    result = build(request, config.load(tmp_path, environ={}))
    assert result.path is not None
    # The bundle takes raw pixels and gives what the original gives on pixels / 16.
    import onnxruntime as ort

    bundle = ort.InferenceSession(str(result.path / "onnx" / "onnx-fp32" / "model.onnx"))
    original = ort.InferenceSession(str(mlp_onnx))
    np.testing.assert_allclose(bundle.run(None, {"x": x})[0], original.run(None, {"x": x / 16})[0], atol=1e-5)
    canonical = onnx.load(str(result.path / "source" / "model.onnx"))
    assert canonical.graph.node[0].op_type == "Mul"
