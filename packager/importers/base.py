"""What every importer returns."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ReferenceFn = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(kw_only=True)
class Imported:
    """An imported model: ONNX proto, the original kept beside it, a way to run the original."""

    model: Any  # onnx.ModelProto
    original: Path | None
    reference: ReferenceFn | None
    reference_runtime: str
    labels: tuple[str, ...] | None = None
    task: str | None = None


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what frameworks print while they load and convert, down to the C++ level
    (TensorFlow's absl logging writes straight to descriptor 2). Shown again if it fails."""
    sink = io.StringIO()
    try:
        fd = sys.stderr.fileno()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), fd)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        except BaseException:
            os.dup2(saved, fd)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace")[-4000:] + sink.getvalue()[-4000:])
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
