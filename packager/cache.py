"""Build products kept between builds (runtime wheels, SavedModels, tools), keyed by their inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = ".complete"


def key(*parts: Any) -> str:
    """A short stable digest of everything that decides a cached product."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def cached(folder: Path, make: Callable[[Path], None]) -> Path:
    """``folder``, made by ``make(staging)`` unless a complete copy exists.

    ``make`` fills a staging folder next to ``folder``; it is moved into place whole, so a crash
    or a concurrent build never leaves a half-made product where a later build would trust it.
    """
    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        make(staging)
        (staging / MARKER).write_text("")
        if not (folder / MARKER).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            staging.replace(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
