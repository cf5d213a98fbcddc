"""pip, asked for wheels of another platform (a Lambda runtime) or another interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from packager.errors import MissingDependencyError, first_line


def manylinux_tags(glibc: str, arch: str) -> list[str]:
    """Every manylinux tag a system with this glibc accepts, newest first (PEP 600)."""
    major, minor = (int(x) for x in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def install_for_platform(requirements: Sequence[str], target: Path, *, python_version: str,
                         platforms: Sequence[str]) -> None:  # fmt: skip
    """``pip install --target`` binary wheels for another platform; nothing is compiled."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python_version, "--target", str(target)]  # fmt: skip
    for tag in platforms:
        command += ["--platform", tag]
    _run([*command, *requirements], what=", ".join(requirements))


def install_for_interpreter(python: Path, requirements: Sequence[str], target: Path) -> None:
    """``pip install --target`` with another interpreter, for programs run here by it."""
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(target), *requirements]  # fmt: skip
    _run(command, what=", ".join(requirements))


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        detail = errors[0] if errors else first_line(RuntimeError(done.stderr or done.stdout or "no output"))
        raise MissingDependencyError(
            f"pip could not install {what}: {detail}",
            hint="check that the package registry is reachable and the pins in resources/lambda.toml exist",
        )
