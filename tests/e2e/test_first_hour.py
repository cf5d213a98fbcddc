"""A new user's first hour (issue 14): every row of what let them down, tried again."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import models, run_cli


def _copy(build: Path, tmp_path: Path) -> Path:
    vdir = tmp_path / "dist" / "mlp" / "1"
    shutil.copytree(build, vdir)
    return vdir


def test_verify_names_a_changed_source_model(built_mlp: Path, tmp_path: Path) -> None:
    vdir = _copy(built_mlp, tmp_path)
    model = vdir / "source" / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 1
    model.write_bytes(bytes(raw))
    result = run_cli("verify", tmp_path / "dist")
    assert result.code == 9, result.out + result.err
    assert "source/model.onnx changed since the build" in result.out
    assert "1 file(s) or variant(s) no longer match" in result.err


def test_verify_a_corrupt_validation_file_is_exit_9_naming_it(built_mlp: Path, tmp_path: Path) -> None:
    vdir = _copy(built_mlp, tmp_path)
    samples = vdir / "validation" / "samples.npz"
    raw = bytearray(samples.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)
    samples.write_bytes(bytes(raw))
    result = run_cli("verify", vdir)
    assert result.code == 9 and "internal error" not in result.err
    assert "validation/samples.npz changed since the build" in result.out


def test_verify_an_unreadable_validation_file_of_an_older_build_is_exit_9(built_mlp: Path, tmp_path: Path) -> None:
    vdir = _copy(built_mlp, tmp_path)
    record = json.loads((vdir / "build.json").read_text())
    del record["validation"]["files"]  # as builds made before the validation files were recorded
    (vdir / "build.json").write_text(json.dumps(record))
    (vdir / "validation" / "reference.npz").write_bytes(b"PK\x03\x04 not a zip")
    result = run_cli("verify", vdir)
    assert result.code == 9, result.err
    assert "reference.npz is not a readable .npz" in result.err and "error: error" not in result.err


def test_config_an_unknown_target_table_is_an_error_with_the_closest_name(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.packager.target.onxn]\noptimization = "bogus"\n')
    result = run_cli("build", mlp_onnx, "--out", tmp_path / "dist", cwd=tmp_path)
    assert result.code == 2 and "`tool.packager.target.onxn` is not an installed target" in result.err
    assert "did you mean 'onnx'?" in result.err and not (tmp_path / "dist").exists()


def test_config_tool_packager_inside_packager_toml_is_read(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text('[tool.packager]\nname = "renamed"\nnum_samples = 8\n')
    result = run_cli("build", mlp_onnx, "--out", tmp_path / "dist", "-p", "fp32", "--no-latency", cwd=tmp_path)
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "dist" / "renamed" / "1" / "build.json").read_text())
    assert record["validation"]["count"] == 8


def test_config_errors_point_at_a_listing_of_every_key(tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text("num_sample = 8\n")
    result = run_cli("build", "x.onnx", cwd=tmp_path)
    assert result.code == 2 and "did you mean 'num_samples'?" in result.err
    assert "run `packager config`" in result.err
    listing = run_cli("config")
    assert listing.code == 0
    assert "num_samples" in listing.out and "128" in listing.out
    assert "target.onnx.optimization" in listing.out and '"basic"' in listing.out
    assert "target.lambda-zip.engine" in listing.out and "target.lambda-container.engine" not in listing.out


def test_out_that_is_a_file_is_exit_5(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "dist").write_text("not a folder")
    result = run_cli("build", mlp_onnx, "--out", tmp_path / "dist")
    assert result.code == 5 and len(result.error_lines) == 1, result.err
    assert "is a file" in result.err and "Usage:" not in result.err


def test_out_holding_a_file_named_like_the_model_is_refused_before_building(mlp_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "mlp").write_text("a file of the user's")
    result = run_cli("build", mlp_onnx, "--out", tmp_path / "dist")
    assert result.code == 5 and "is a file, where the build's folder mlp/1 would go" in result.err
    assert "import" not in result.err  # refused before anything ran
    assert (tmp_path / "dist" / "mlp").read_text() == "a file of the user's"


def test_rebuilding_a_version_with_other_settings_needs_force(mlp_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    first = run_cli("build", mlp_onnx, "-t", "onnx", "-t", "triton", "-p", "fp32", "--out", out, "--no-latency")
    assert first.code == 0, first.err
    fewer = run_cli("build", mlp_onnx, "-t", "onnx", "-p", "fp32", "--out", out, "--no-latency")
    assert fewer.code == 5 and "pass --force to replace it" in fewer.err
    assert "2 variants" in fewer.err or "variants: onnx, triton" in fewer.err
    kept = json.loads((out / "mlp" / "1" / "build.json").read_text())
    assert {v["target"] for v in kept["variants"]} == {"onnx", "triton"}
    forced = run_cli("build", mlp_onnx, "-t", "onnx", "-p", "fp32", "--out", out, "--no-latency", "--force")
    assert forced.code == 0 and "replacing the earlier build of mlp 1" in forced.err
    assert {v["target"] for v in json.loads((out / "mlp" / "1" / "build.json").read_text())["variants"]} == {"onnx"}


def test_help_says_packager() -> None:
    for args in (("--help",), ("build", "--help"), ("build",)):
        result = run_cli(*args)
        text = result.out + result.err
        assert "python -m packager" not in text and "Usage: packager" in text, text


def test_scikit_learn_models_have_parameters_and_a_memory_estimate(model_dir: Path, tmp_path: Path) -> None:
    """A forest keeps its weights in TreeEnsembleClassifier's attributes, a pipeline in Scaler's
    and LinearClassifier's: counted by `inspect` and in every variant's memory estimate."""
    for model in (models.make_sklearn_forest(model_dir), models.make_sklearn_pipeline(model_dir)):
        info = run_cli("inspect", model, "--json")
        assert info.code == 0, info.err
        assert json.loads(info.out)["parameters"] > 640  # more than one weight per pixel of the 8x8 digits
        built = run_cli("build", model, "-t", "onnx", "-p", "fp32", "--out", tmp_path / model.stem, "--no-latency")
        assert built.code == 0, built.err
        record = json.loads(next((tmp_path / model.stem).glob("*/1/build.json")).read_text())
        assert all(v["peak_memory_mb"] >= 0.004 for v in record["variants"]), record["variants"]  # >= 3 KB of weights


GRU_MODULE = """
import torch


class ConvGRU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 16, 3, padding=1)
        self.gru = torch.nn.GRU(16, 32, batch_first=True)
        self.head = torch.nn.Linear(32, 4)

    def forward(self, x):  # [batch, time, channels]
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        out, _ = self.gru(h)
        return self.head(out[:, -1])


def make():
    torch.manual_seed(0)
    return ConvGRU().eval(), torch.randn(2, 20, 8)


class LSTMClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 24, batch_first=True)
        self.head = torch.nn.Linear(24, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def make_lstm():
    torch.manual_seed(0)
    return LSTMClassifier().eval(), torch.randn(2, 20, 8)
"""
OURS = re.compile(r"^(  [✓!] |error: |built |up to date)")  # packager's own progress and error lines


def test_a_recurrent_torch_model_is_refused_by_name_where_onnx2tf_would_fail(tmp_path: Path) -> None:
    (tmp_path / "gru_model.py").write_text(GRU_MODULE)
    info = run_cli("inspect", "gru_model:make", "--json", cwd=tmp_path)
    assert info.code == 0, info.err
    verdicts = json.loads(info.out)["targets"]
    assert verdicts["tflite"].startswith("no: target 'tflite' cannot take GRU from a torch model")
    assert verdicts["tfjs"].startswith("no:") and verdicts["onnx"] == "yes"
    lstm = run_cli("inspect", "gru_model:make_lstm", "--json", cwd=tmp_path)
    assert lstm.code == 0, lstm.err
    assert json.loads(lstm.out)["targets"]["tflite"].startswith("no: target 'tflite' cannot take LSTM")
    single = run_cli("build", "gru_model:make", "-t", "tflite", "--out", tmp_path / "d", cwd=tmp_path)
    assert single.code == 4 and "cannot take GRU" in single.err
    takers = single.err.split("targets that take this model: ")[1]
    # packager's C generator has GRU and LSTM: static-lib takes what onnx2tf cannot
    assert "onnx" in takers and "static-lib" in takers and "tflite" not in takers and "tfjs" not in takers


def test_a_recurrent_model_built_for_every_target_prints_only_packagers_lines(tmp_path: Path) -> None:
    """No line from TensorFlow, CUDA, absl or torch at the default verbosity: theirs go to the logs."""
    (tmp_path / "gru_model.py").write_text(GRU_MODULE)
    result = run_cli("build", "gru_model:make", "--target", "all", "--out", tmp_path / "d", cwd=tmp_path)
    assert result.code in (0, 15), result.err
    foreign = [line for line in result.err.splitlines() if line.strip() and not OURS.match(line)]
    assert foreign == [], foreign
    notes = [line for line in result.err.splitlines() if line.startswith("  ! ")]
    assert len(notes) == len(set(notes))


def test_a_scikit_learn_refusal_names_the_targets_that_take_it(model_dir: Path, tmp_path: Path) -> None:
    model = models.make_sklearn_pipeline(model_dir)
    result = run_cli("build", model, "-t", "tflite", "--out", tmp_path / "d")
    assert result.code == 4 and "cannot take scikit-learn models" in result.err
    takers = result.err.split("targets that take this model: ")[1]
    assert "static-lib" in takers and "onnx" in takers and "tfjs" not in takers


def test_the_native_lambda_engine_is_as_close_to_the_source_as_static_lib(
    model_dir: Path, digits_nhwc: Path, tmp_path: Path
) -> None:
    """The same C generator behind both: the Lambda bundle through awslambdaric and JSON matches
    the library run through ctypes, on a Keras CNN."""
    model = models.make_keras_cnn(model_dir)
    result = run_cli("build", model, "--samples", digits_nhwc, "-t", "lambda-zip", "-t", "static-lib", "-p", "fp32",
                     "--set", "lambda-zip.engine=native", "--out", tmp_path / "d", "--no-latency")  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads(next((tmp_path / "d").glob("*/1/build.json")).read_text())
    errs = {v["id"]: v["fidelity"]["max_abs_err"] for v in record["variants"]}
    assert errs["lambda-native-fp32"] <= 2 * errs["static-lib-fp32"] + 1e-7, errs
