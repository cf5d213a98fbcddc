"""The output folder: staged, then moved into place whole, or not at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from packager.errors import OutputError


class Staging:
    """A scratch folder inside ``out`` that becomes ``out/<name>/<version>`` on commit.

    Nothing under ``out`` changes until commit; on abort the scratch folder is removed, and so
    is ``out`` itself when this build created it.
    """

    def __init__(self, out: Path, *, dry_run: bool = False) -> None:
        self.out = out
        self.created_out = False
        self.dry_run = dry_run
        if dry_run:
            self.root = Path(tempfile.mkdtemp(prefix="packager-dry-run-"))
            return
        try:
            if not out.exists():
                out.mkdir(parents=True)
                self.created_out = True
            elif not out.is_dir():
                raise OutputError(f"--out '{out}' exists and is not a folder")
            self.root = Path(tempfile.mkdtemp(prefix=".packager-staging-", dir=out))
        except PermissionError as exc:
            raise OutputError(f"cannot write to --out '{out}': permission denied") from exc
        except OSError as exc:
            if isinstance(exc, OutputError):
                raise
            raise OutputError(f"cannot write to --out '{out}': {exc.strerror or exc}") from exc

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / "build" / name / version

    @property
    def scratch(self) -> Path:
        path = self.root / "scratch"
        path.mkdir(exist_ok=True)
        return path

    def commit(self, name: str, version: str) -> Path:
        """Move the staged version folder into place, replacing an older build of it."""
        final = self.out / name / version
        final.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if final.exists():
            old = self.root / "replaced"
            os.replace(final, old)
        os.replace(self.version_dir(name, version), final)
        shutil.rmtree(self.root, ignore_errors=True)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self.created_out and not self.dry_run:
            shutil.rmtree(self.out, ignore_errors=True)


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": path.relative_to(base).as_posix(), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def file_entries(folder: Path, base: Path) -> list[dict[str, Any]]:
    """Every file under ``folder``, sorted, with its size and hash, relative to ``base``."""
    return [file_entry(p, base) for p in sorted(folder.rglob("*")) if p.is_file()]
