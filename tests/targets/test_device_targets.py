"""tflite, coreml, tfjs and ort-web from a Keras and a torch source, each variant run in the
runtime a device uses: LiteRT, and headless Chromium for the pages; Core ML only spec-checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import models, run_cli

TARGETS = ("tflite", "coreml", "tfjs", "ort-web")
EXPECTED = {
    "tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8",
    "coreml-fp32", "coreml-fp16", "coreml-int8",
    "tfjs-fp32", "tfjs-fp16", "tfjs-uint8",
    "ort-web-fp32", "ort-web-int8",
}  # fmt: skip


def build_all(model: Path, samples: Path, out: Path) -> dict:
    args = [a for t in TARGETS for a in ("-t", t)]
    result = run_cli("build", model, *args, "--samples", samples, "--out", out, "--no-latency")
    assert result.code == 0, result.err
    record = json.loads(next(out.glob("*/1/build.json")).read_text())
    record["_dir"] = next(out.glob("*/1"))
    return record


@pytest.fixture(scope="module")
def keras_build(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, digits_nhwc: Path) -> dict:
    return build_all(models.make_keras_cnn(model_dir), digits_nhwc, tmp_path_factory.mktemp("keras") / "dist")


@pytest.fixture(scope="module")
def torch_build(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, digits_images: Path) -> dict:
    return build_all(models.make_torch_pt2(model_dir), digits_images, tmp_path_factory.mktemp("torch") / "dist")


@pytest.mark.parametrize("source", ["keras_build", "torch_build"])
def test_every_variant_is_built_and_run_where_it_runs(source: str, request: pytest.FixtureRequest) -> None:
    record = request.getfixturevalue(source)
    variants = {v["id"]: v for v in record["variants"]}
    assert set(variants) == EXPECTED
    for vid, variant in variants.items():
        fid = variant["fidelity"]
        if vid.startswith("coreml"):
            assert fid["status"] == "unverified" and "Core ML runs only on macOS/iOS" in fid["reason"]
            assert "max_abs_err" not in fid  # never a number that was not measured
            assert fid["evidence"]["of"].startswith("the graph this package was converted from")
            assert fid["evidence"]["max_abs_err"] < 1e-4
            continue
        assert fid["status"] == "verified", (vid, fid)
        assert fid["top1_agreement"] >= 0.98
    assert variants["tflite-fp32"]["fidelity"]["runtime"].startswith("ai-edge-litert")
    assert "in Chromium" in variants["tfjs-fp32"]["fidelity"]["runtime"]
    assert variants["ort-web-fp32"]["fidelity"]["runtime"].startswith("onnxruntime-web")
    for vid in ("tflite-fp32", "tfjs-fp32", "ort-web-fp32"):
        assert variants[vid]["fidelity"]["max_abs_err"] < 1e-4, vid


def test_pages_load_their_runtime_with_script_tags(keras_build: dict) -> None:
    folder = Path(keras_build["_dir"])
    tfjs = (folder / "tfjs" / "tfjs-fp32" / "index.html").read_text()
    assert '<script src="tf.min.js"></script>' in tfjs and 'loadGraphModel("model/model.json")' in tfjs
    ort = folder / "ort-web" / "ort-web-int8"
    assert '<script src="ort.wasm.min.js"></script>' in (ort / "index.html").read_text()
    assert {"ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs", "model.onnx", "sample.json"} <= {
        p.name for p in ort.iterdir()
    }
    assert not (ort / "ort-wasm-simd-threaded.jsep.wasm").exists()  # the 28 MB WebGPU build stays out
    shards = json.loads((folder / "tfjs" / "tfjs-uint8" / "model" / "model.json").read_text())["weightsManifest"]
    assert all(w.get("quantization", {}).get("dtype") == "uint8" for g in shards for w in g["weights"]
               if w["dtype"] == "float32")  # fmt: skip


def test_torch_source_keeps_its_layout_record(torch_build: dict) -> None:
    layout = json.loads((Path(torch_build["_dir"]) / "tflite" / "tflite-fp32" / "layout.json").read_text())
    assert layout["inputs"][0]["perm"] == [0, 2, 3, 1]  # onnx2tf made the input channels-last
    assert "onnx2tf" in layout["path"]


def test_coreml_packages_are_zipped_and_spec_checked(torch_build: dict) -> None:
    folder = Path(torch_build["_dir"]) / "coreml" / "coreml-int8"
    check = json.loads((folder / "spec_check.json").read_text())
    assert check["problems"] == [] and check["specification_version"] >= 7
    assert check["inputs"] == {"input": [1, 1, 8, 8]}
    assert (folder / "model.mlpackage" / "Manifest.json").is_file() and (folder / "model.mlpackage.zip").is_file()


@pytest.mark.parametrize("target", ["tflite", "tfjs", "coreml"])
def test_sklearn_is_refused_by_tf_based_targets(target: str, model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_sklearn_forest(model_dir), "-t", target, "--out", tmp_path / "dist")
    assert result.code == 4
    line = result.error_lines[0]
    assert f"target '{target}' cannot take scikit-learn models" in line and "TreeEnsembleClassifier" in line
    assert "onnx, ort-web" in line
    assert not (tmp_path / "dist").exists()


def test_tfjs_refuses_grouped_convolutions_by_name_and_tflite_takes_them(model_dir: Path, tmp_path: Path) -> None:
    model = models.make_onnx_grouped(model_dir)
    result = run_cli("build", model, "-t", "tfjs", "-t", "tflite", "-p", "fp32", "--out", tmp_path / "dist",
                     "--no-latency")  # fmt: skip
    assert result.code == 15, result.err
    record = json.loads((tmp_path / "dist" / "grouped" / "1" / "build.json").read_text())
    (failed,) = record["failed"]
    assert (failed["target"], failed["code"]) == ("tfjs", "4")
    assert "tf.js cannot run grouped convolutions" in failed["reason"] and "filter depth 2" in failed["reason"]
    assert [v["fidelity"]["status"] for v in record["variants"] if v["id"] == "tflite-fp32"] == ["verified"]


def test_tflite_refuses_tensorflow_ops_without_a_litert_builtin_by_name(model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_onnx_erf(model_dir), "-t", "tflite", "-p", "fp32", "--out",
                     tmp_path / "dist", "--no-latency")  # fmt: skip
    assert result.code == 4, result.err
    (line,) = result.error_lines
    assert "LiteRT has no builtin kernel for TensorFlow op(s) Erf (fp32)" in line and "ort-web" in line
    assert not (tmp_path / "dist" / "erf").exists()


def test_int8_below_the_top1_floor_is_failed_not_deployable(model_dir: Path, tmp_path: Path) -> None:
    # Generated (random) inputs and a floor of 1.0: int8 flips some top-1 classes on this model.
    (tmp_path / "packager.toml").write_text("[tolerance.int8]\nmin_top1_agreement = 1.0\n")
    result = run_cli("build", models.make_keras_cnn(model_dir), "-t", "tflite", "--out", "dist", "--no-latency",
                     cwd=tmp_path)  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "cnn" / "1" / "build.json").read_text())
    status = {v["id"]: v["fidelity"] for v in record["variants"]}
    failed = [vid for vid, f in status.items() if f["status"] == "failed"]
    assert failed and all(vid.startswith("tflite-int8") for vid in failed)
    assert all("top-1 agreement" in status[vid]["reason"] for vid in failed)
    assert status["tflite-fp32"]["status"] == "verified"
    assert "never published" in result.err


def test_verify_reruns_every_device_variant(keras_build: dict) -> None:
    result = run_cli("verify", keras_build["_dir"])
    assert result.code == 0, result.out + result.err
    assert result.out.count("✓") == len(EXPECTED) and "Traceback" not in result.err
    assert "coreml-fp32: unverified" in result.out
