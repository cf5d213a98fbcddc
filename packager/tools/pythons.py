"""Finding a Python interpreter of a given version (for running bundles as their runtime would)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def find_python(version: str, extra_roots: tuple[Path, ...] = ()) -> Path | None:
    """An interpreter whose ``major.minor`` is ``version``: on PATH, else in pyenv's versions."""
    candidates: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    roots = [*extra_roots, Path.home() / ".pyenv" / "versions"]
    for root in roots:
        candidates.extend(sorted(root.glob(f"{version}*/bin/python{version}"), reverse=True))
    for candidate in candidates:
        if _reports(candidate, version):
            return candidate
    return None


def _reports(python: Path, version: str) -> bool:
    """pyenv shims exist for every installed version but fail unless that version is active."""
    try:
        done = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def full_version(python: Path) -> str:
    done = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout.strip()
