"""The model spec every importer produces and the variant records every target fills in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Dim = int | str


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=data["name"], dtype=data["dtype"], shape=tuple(data["shape"]))

    @property
    def batched(self) -> bool:
        """True when the first dimension is symbolic (the batch)."""
        return bool(self.shape) and isinstance(self.shape[0], str)

    def concrete(self, batch: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dims replaced: the first by ``batch``, others by 1."""
        dims: list[int] = []
        for i, dim in enumerate(self.shape):
            dims.append(dim if isinstance(dim, int) else (batch if i == 0 else 1))
        return tuple(dims)


@dataclass(frozen=True, kw_only=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Input normalisation folded into the graph: ``(x - mean) / std * scale``."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    channel_axis: int | None = None

    @property
    def empty(self) -> bool:
        return self.mean is None and self.std is None and self.scale is None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The same arithmetic as the folded graph, in numpy (for the reference outputs)."""
        y = x.astype(np.float32)
        if self.mean is not None:
            y = y - self._broadcast(self.mean, y.ndim)
        if self.std is not None:
            y = y / self._broadcast(self.std, y.ndim)
        if self.scale is not None:
            y = y * np.float32(self.scale)
        return y.astype(np.float32)

    def constant(self, values: tuple[float, ...], rank: int) -> np.ndarray:
        return self._broadcast(values, rank)

    def _broadcast(self, values: tuple[float, ...], rank: int) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float32)
        if arr.size == 1:
            return arr.reshape(())
        axis = self.channel_axis if self.channel_axis is not None else (1 if rank >= 3 else -1)
        axis = axis % rank
        shape = [1] * rank
        shape[axis] = arr.size
        return arr.reshape(shape)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(kw_only=True)
class ModelSpec:
    """A model in canonical form: ONNX on disk plus what every target needs to know."""

    name: str
    version: str
    source_format: str
    source_path: Path
    source_sha256: str
    onnx_path: Path
    original_path: Path | None
    signature: Signature
    labels: tuple[str, ...] | None = None
    task: str | None = None  # "classification", "regression" or None when unknown
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    reference_runtime: str = ""
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        first = next(iter(self.samples.values()), None)
        return 0 if first is None else int(first.shape[0])
