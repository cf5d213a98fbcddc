"""The output folder: staged, then moved into place whole, or not at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from packager.errors import OutputError

LOGS = ".packager-logs"  # inside --out: the logs of a build's steps until it is in place


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

    def logs(self, name: str, version: str) -> Path:
        """Where the steps' logs go while the build runs: inside ``out``, beside the staging folder,
        so that a build that fails keeps the log of the step that failed (and nothing else)."""
        base = self.root if self.dry_run else self.out / LOGS
        path = base / name / version
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

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
        self._prune_logs()
        return final

    def abort(self, *, keep: Path | None = None) -> None:
        """Remove what this build staged. ``keep``, the log of the step that failed (the error
        names it), stays, and so does ``out`` when that log is all it holds."""
        shutil.rmtree(self.root, ignore_errors=True)
        if self.dry_run:
            return
        logs = self.out / LOGS
        kept = keep is not None and keep.is_file() and keep.stat().st_size > 0 and logs in keep.parents
        for path in logs.rglob("*.log") if logs.is_dir() else ():
            if not (kept and path == keep):
                path.unlink()
        self._prune_logs()
        if self.created_out and not kept:
            shutil.rmtree(self.out, ignore_errors=True)

    def _prune_logs(self) -> None:
        """Remove empty folders left in the logs area (and the area itself when empty)."""
        logs = self.out / LOGS
        if not logs.is_dir():
            return
        for path in sorted(logs.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(logs.iterdir()):
            logs.rmdir()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    return {"path": path.relative_to(base).as_posix(), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def file_entries(folder: Path, base: Path) -> list[dict[str, Any]]:
    """Every file under ``folder``, sorted, with its size and hash, relative to ``base``."""
    return [file_entry(p, base) for p in sorted(folder.rglob("*")) if p.is_file()]
