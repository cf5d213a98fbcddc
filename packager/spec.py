"""The model spec every importer produces and the variant records every target fills in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Dim = int | str
BATCH = "batch"  # the name every importer gives the batch dim


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
    def batch_axis(self) -> int | None:
        """The axis of the batch: the dim named ``batch`` (the symbol the importer found shared
        by the inputs, not always axis 0: ``state [2, batch, 128]``), else a symbolic first dim;
        None for a tensor without one (a scalar sample rate: one value for every sample)."""
        if BATCH in self.shape:
            return self.shape.index(BATCH)
        return 0 if self.shape and isinstance(self.shape[0], str) else None

    @property
    def batched(self) -> bool:
        """True when the tensor has a batch axis."""
        return self.batch_axis is not None

    def concrete(self, batch: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dims replaced: the batch axis by ``batch``, others by 1."""
        axis = self.batch_axis
        return tuple(dim if isinstance(dim, int) else (batch if i == axis else 1) for i, dim in enumerate(self.shape))


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

    def state_pairs(self) -> list[dict[str, str]]:
        """Inputs fed back from an output of the same dtype and shape whose name extends theirs
        (``state`` → ``stateN``, ``h`` → ``hn``, ``cache_in`` → ``cache_out``): a streaming model's state."""
        pairs = []
        for inp in self.inputs:
            for out in self.outputs:
                if inp.dtype == out.dtype and _same_dims(inp.shape, out.shape) and _state_names(inp.name, out.name):
                    pairs.append({"input": inp.name, "output": out.name})
                    break
        return pairs

    def state(self) -> list[dict[str, Any]]:
        """The state pairs with the input's shape and dtype: what a client needs to start one."""
        inputs = {t.name: t for t in self.inputs}
        pairs: list[dict[str, Any]] = []
        for pair in self.state_pairs():
            t = inputs[pair["input"]]
            pairs.append(pair | {"shape": list(t.shape), "dtype": t.dtype})
        return pairs


def _same_dims(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    """Same rank, and the same size wherever both are fixed (an exporter may name a dim on one side only)."""
    return len(a) == len(b) and all(
        x == y or isinstance(x, str) or isinstance(y, str) for x, y in zip(a, b, strict=True)
    )


def _state_names(inp: str, out: str) -> bool:
    if out.startswith(inp) and out[len(inp) :] in ("N", "n", "_n", "_out", "_new", "out", ".out"):
        return True
    return inp.endswith("_in") and out == inp[:-3] + "_out"


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
        from packager import batching

        return batching.count(self.samples, self.signature.inputs) if self.samples else 0
