from __future__ import annotations

from pathlib import Path

import pytest

from packager import config
from packager.errors import ConfigError
from packager.targets.onnx import OnnxOptions


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_config_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, environ={})
    assert cfg.get("out") == "dist"
    assert cfg.get("precisions") == ["fp32", "fp16", "int8"]
    assert cfg.origin == "defaults"


def test_config_reads_tool_packager_from_pyproject(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname="x"\n[tool.packager]\nout = "build-out"\nnum_samples = 7\n')
    cfg = config.load(tmp_path, environ={})
    assert (cfg.get("out"), cfg.get("num_samples")) == ("build-out", 7)


def test_config_unknown_key_names_key_and_closest(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.packager]\nprecisons = ["fp32"]\n')
    with pytest.raises(ConfigError, match=r"`tool\.packager\.precisons`.*did you mean 'precisions'"):
        config.load(tmp_path, environ={})


def test_config_unknown_key_in_packager_toml_has_no_tool_prefix(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", "[preprocessing]\nscael = 2.0\n")
    with pytest.raises(ConfigError, match=r"packager.toml: unknown key `preprocessing\.scael`.*'scale'"):
        config.load(tmp_path, environ={})


def test_config_unknown_target_option_suggests_closest(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", '[target.onnx]\noptimisation = "basic"\n')
    cfg = config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"`optimisation`.*did you mean 'optimization'"):
        cfg.for_target("onnx", OnnxOptions, {})


def test_config_wrong_type_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", 'num_samples = "many"\n')
    with pytest.raises(ConfigError, match="`num_samples` must be an integer"):
        config.load(tmp_path, environ={})


def test_config_invalid_precision_suggests_closest(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", 'precisions = ["fp61"]\n')
    with pytest.raises(ConfigError, match="invalid precision 'fp61'; did you mean 'fp16'"):
        config.load(tmp_path, environ={})


def test_config_precedence_cli_env_target_global_default(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", 'precisions = ["fp32", "fp16"]\nlatency = false\n'
                                     '[target.onnx]\nprecisions = ["fp16"]\n')  # fmt: skip
    cfg = config.load(tmp_path, environ={})
    assert cfg.for_target("onnx", OnnxOptions, {}).precisions == ("fp16",)  # per-target > global
    assert cfg.for_target("other", type(None), {}).precisions == ("fp32", "fp16")  # global > default
    assert cfg.for_target("onnx", OnnxOptions, {}).latency is False
    env_cfg = config.load(tmp_path, environ={"PACKAGER_PRECISIONS": "int8", "PACKAGER_LATENCY": "1"})
    assert env_cfg.for_target("onnx", OnnxOptions, {}).precisions == ("int8",)  # env > per-target
    assert env_cfg.for_target("onnx", OnnxOptions, {}).latency is True
    cli = {"precisions": ("fp32",), "latency": False}
    assert env_cfg.for_target("onnx", OnnxOptions, cli).precisions == ("fp32",)  # CLI > env
    assert env_cfg.for_target("onnx", OnnxOptions, cli).latency is False


def test_config_tolerance_override_per_target(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", "[tolerance.int8]\nmin_top1_agreement = 0.9\n"
                                     "[target.onnx.tolerance.int8]\natol = 0.5\n")  # fmt: skip
    settings = config.load(tmp_path, environ={}).for_target("onnx", OnnxOptions, {})
    assert settings.tolerance["int8"].min_top1_agreement == 0.9
    assert settings.tolerance["int8"].atol == 0.5
    assert settings.tolerance["fp32"].atol == pytest.approx(1e-4)


def test_config_target_option_value_is_checked(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", '[target.onnx]\noptimization = "turbo"\n')
    with pytest.raises(ConfigError, match="optimization must be one of"):
        config.load(tmp_path, environ={}).for_target("onnx", OnnxOptions, {})


def test_config_bad_env_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PACKAGER_NUM_SAMPLES"):
        config.load(tmp_path, environ={"PACKAGER_NUM_SAMPLES": "lots"})


def test_config_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", "out = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(tmp_path, environ={})


def test_config_target_option_precedence_set_env_table(tmp_path: Path) -> None:
    write(tmp_path, "packager.toml", '[target.onnx]\noptimization = "disable"\nort_format = false\n')
    environ = {"PACKAGER_TARGET_ONNX_OPTIMIZATION": "extended", "PACKAGER_TARGET_ONNX_PER_CHANNEL": "0"}
    cfg = config.load(tmp_path, environ=environ)
    options = cfg.for_target("onnx", OnnxOptions, {}).options
    assert (options.optimization, options.ort_format, options.per_channel) == ("extended", False, False)  # env > table
    cli = {"options": {"onnx": {"optimization": "basic", "ort_format": "true"}}}
    options = cfg.for_target("onnx", OnnxOptions, cli).options
    assert (options.optimization, options.ort_format, options.per_channel) == ("basic", True, False)  # --set > env


def test_config_target_option_from_env_names_the_variable(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, environ={"PACKAGER_TARGET_ONNX_ORT_FORMAT": "maybe"})
    with pytest.raises(ConfigError, match="PACKAGER_TARGET_ONNX_ORT_FORMAT='maybe': expected true or false"):
        cfg.for_target("onnx", OnnxOptions, {})


def test_config_target_option_from_set_unknown_key_suggests_closest(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"--set onnx\.optimisation: unknown key `optimisation`.*'optimization'"):
        cfg.for_target("onnx", OnnxOptions, {"options": {"onnx": {"optimisation": "basic"}}})
