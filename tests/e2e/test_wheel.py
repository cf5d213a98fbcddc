"""The wheel, as `pip install .` makes it: one top-level package, packager. The repository's
targets/, handlers/ and templates/ are inside it (packager.targets, packager.handlers, its data),
and the installed copy works without the checkout: nothing else on its path, no site hooks."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"onnx", "lambda-zip", "lambda-container", "triton", "ort-web", "tflite", "tfjs", "coreml", "static-lib"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a folder it is installed into with --target)."""
    work = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"),
                           str(ROOT)], capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = (work / "dist").glob("packager-*.whl")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(work / "site")]
    command.append(str(wheel))
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return wheel, work / "site"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python without site hooks (so the checkout's editable install is out of reach): the
    installed wheel first, then this environment's dependencies."""
    env = {"PATH": os.environ.get("PATH", ""), "COLUMNS": "200", "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}  # fmt: skip
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)  # fmt: skip


def test_wheel_holds_one_top_level_package_with_its_targets_handlers_and_templates(
    installed: tuple[Path, Path],
) -> None:
    names = zipfile.ZipFile(installed[0]).namelist()
    assert {n.split("/")[0] for n in names} == {"packager", installed[0].name.split("-py")[0] + ".dist-info"}
    for path in ("packager/targets/onnx.py", "packager/handlers/inference.py", "packager/templates/service.yaml",
                 "packager/resources/server.toml"):  # fmt: skip
        assert path in names
    assert not any("__pycache__" in n for n in names)


def test_wheel_installed_has_no_top_level_targets_and_lists_all_nine(installed: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:  # fmt: skip
    site = installed[1]
    for name in ("targets", "handlers", "templates"):
        missing = _run(site, tmp_path, "-c", f"import {name}")
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, name
    where = _run(site, tmp_path, "-c", "import packager.targets.onnx as m, packager.resources as r; "
                 "print(m.__file__); print(r.template_path('service.yaml').is_file())")  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(site / "packager" / "targets" / "onnx.py"), "True"]
    listed = _run(site, tmp_path, "-m", "packager", "targets")
    assert listed.returncode == 0 and "cannot load" not in listed.stdout, listed.stdout + listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines() if line.strip()} >= TARGETS, listed.stdout
