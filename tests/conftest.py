from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "data"))
sys.path.insert(0, str(Path(__file__).parent / "codegen"))
import models

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the code")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run the installed ``packager`` command the way a user does, in a fresh process."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "packager", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_onnx(model_dir: Path) -> Path:
    return models.make_onnx_mlp(model_dir)


@pytest.fixture(scope="session")
def mlp_samples(model_dir: Path) -> Path:
    x, _ = models.digits(200)
    path = model_dir / "digits_flat.npz"
    np.savez(path, x=x / 16.0)
    return path


def _digits_npz(path: Path, key: str, shape: tuple[int, ...]) -> Path:
    x, _ = models.digits(160)
    np.savez(path, **{key: (x / 16.0).reshape(-1, *shape)})
    return path


@pytest.fixture(scope="session")
def digits_images(model_dir: Path) -> Path:
    """Real digits as NCHW images (1x8x8), for the torch CNN."""
    return _digits_npz(model_dir / "digits_nchw.npz", "x", (1, 8, 8))


@pytest.fixture(scope="session")
def digits_nhwc(model_dir: Path) -> Path:
    """Real digits as NHWC images (8x8x1), for the Keras CNN."""
    return _digits_npz(model_dir / "digits_nhwc.npz", "pixels", (8, 8, 1))


@pytest.fixture(scope="session")
def built_mlp(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    """One full build of the onnx target, shared by the tests that only read its output."""
    out = tmp_path_factory.mktemp("built") / "dist"
    result = run_cli("build", mlp_onnx, "--target", "onnx", "--samples", mlp_samples, "--out", out)
    assert result.code == 0, result.err
    return out / "mlp" / "1"
