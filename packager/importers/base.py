"""What every importer returns."""

from __future__ import annotations

from collections.abc import Callable
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
