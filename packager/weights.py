"""Where a model keeps its weights, counted: for ``inspect`` and the memory estimates.

Not only initializers: exporters such as paddle2onnx put weights in ``Constant`` nodes, and the
``ai.onnx.ml`` operators that scikit-learn models become (tree ensembles, linear models, SVMs,
scalers) hold theirs in node attributes (``nodes_values``, ``coefficients``, ``support_vectors``).
Subgraphs (``If``, ``Loop``, ``Scan`` bodies) count too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

ML_DOMAIN = "ai.onnx.ml"


@dataclass(frozen=True)
class Weights:
    count: int  # numbers held (a tree's thresholds, a matrix's entries)
    bytes: int  # what they take in memory as stored


def of_model(model: Any) -> Weights:
    """The weights of an ``onnx.ModelProto``."""
    count = size = 0
    for n, b in _graph(model.graph):
        count += n
        size += b
    return Weights(count=count, bytes=size)


def _graph(graph: Any) -> Iterator[tuple[int, int]]:
    for tensor in graph.initializer:
        yield _tensor(tensor)
    for sparse in graph.sparse_initializer:
        yield _tensor(sparse.values)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graph(attr.g)
            for sub in attr.graphs:
                yield from _graph(sub)
            if node.op_type == "Constant" and not node.domain:
                yield from _constant(attr)
            elif node.domain == ML_DOMAIN:
                yield from _ml_attribute(attr)


def _constant(attr: Any) -> Iterator[tuple[int, int]]:
    """A Constant's value: a tensor, or a list of numbers (a scalar or shape vector counts as what it holds)."""
    if attr.HasField("t"):
        yield _tensor(attr.t)
    elif attr.name in ("value_floats", "value_ints"):
        yield len(attr.floats) + len(attr.ints), 4 * len(attr.floats) + 8 * len(attr.ints)
    elif attr.name in ("value_float", "value_int"):
        yield 1, 4 if attr.name == "value_float" else 8


def _ml_attribute(attr: Any) -> Iterator[tuple[int, int]]:
    """Numbers in an ai.onnx.ml node's attributes (float32 and int64 as onnxruntime keeps them);
    strings (class labels) are names, not weights."""
    if attr.floats or attr.ints:
        yield len(attr.floats) + len(attr.ints), 4 * len(attr.floats) + 8 * len(attr.ints)
    if attr.HasField("t"):
        yield _tensor(attr.t)
    for tensor in attr.tensors:
        yield _tensor(tensor)


def _tensor(tensor: Any) -> tuple[int, int]:
    from onnx import helper

    count = 1
    for d in tensor.dims:
        count *= int(d)
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):  # strings and types numpy has no width for
        itemsize = 0
    return count, count * itemsize
