"""Samples along each tensor's own batch axis.

A batch is not always axis 0 (``state [2, batch, 128]``), and some inputs have none (a scalar
sample rate, the same for every sample). Every place that splits samples into runs or joins
outputs back goes through these, so that such models run like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from packager.spec import TensorSpec


def _axes(specs: Iterable[TensorSpec]) -> dict[str, int | None]:
    return {t.name: t.batch_axis for t in specs}


def count(arrays: Mapping[str, np.ndarray], specs: Iterable[TensorSpec]) -> int:
    """How many samples ``arrays`` hold: the size of the first batched array's batch axis (1 when
    no array has a batch axis; then the arrays are one sample)."""
    axes = _axes(specs)
    for name, array in arrays.items():
        axis = axes.get(name, 0 if np.ndim(array) else None)
        if axis is not None and np.ndim(array) > axis:
            return int(np.shape(array)[axis])
    return 1


def axis_zero(specs: Iterable[TensorSpec]) -> bool:
    """Whether every tensor has its batch on axis 0 (what runtimes that batch by rows expect)."""
    return all(t.batch_axis == 0 for t in specs)


def take(arrays: Mapping[str, np.ndarray], specs: Iterable[TensorSpec], start: int, stop: int) -> dict[str, np.ndarray]:
    """Samples ``start:stop``: each batched array sliced on its own axis, the others whole."""
    axes = _axes(specs)
    taken: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        axis = axes.get(name, 0 if np.ndim(array) else None)
        if axis is None or np.ndim(array) <= axis:
            taken[name] = array
        else:
            index = [slice(None)] * np.ndim(array)
            index[axis] = slice(start, stop)
            taken[name] = array[tuple(index)]
    return taken


def join(parts: Sequence[Mapping[str, np.ndarray]], specs: Iterable[TensorSpec]) -> dict[str, np.ndarray]:
    """The outputs of several runs as one: concatenated on each output's batch axis; an output
    without one is the same in every run, and is kept once."""
    axes = _axes(specs)
    joined: dict[str, np.ndarray] = {}
    for name in parts[0]:
        values = [np.asarray(p[name]) for p in parts]
        axis = axes.get(name, 0 if values[0].ndim else None)
        if axis is None or values[0].ndim <= axis:
            joined[name] = values[0]
        else:
            joined[name] = np.concatenate(values, axis=axis)
    return joined
