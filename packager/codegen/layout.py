"""Channels-last ("turned") tensors between 1x1 convs, depthwise convs and Adds.

Where a CNN's images get smaller and its channels more (a mobile CNN after its stem), the NCHW
kernels run short loops per channel. A 1x1 conv can run as the product turned around (positions
as rows, ``pk_conv1x1_rows``), which on NCHW tensors transposes its input and its output. A tensor
passed between such convs, depthwise convs and Adds can instead stay turned, [N, H, W, C] (per
item: one row of C channels per position): the 1x1 convs then skip both transposes, and a
depthwise conv on a turned tensor sums its taps 16 channels at a time (``pk_depthwise_turned``).
Which 1x1 convs may run turned around is a size rule (``ops._rows_1x1``, ``TURNED_*``).

``turn`` picks the largest set of tensors that can be held turned: a tensor is turned when the
node writing it can write it so and every node reading it can read it so, and it is not a model
output. A 1x1 conv on the turned-around path reads and writes either layout; a depthwise conv
reads and writes the same layout; an Add of two tensors of its own shape likewise. Every other
reader needs NCHW, so the region ends there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from packager.codegen.graph import Graph
from packager.codegen.ops import _readers, _rows_1x1, _spatial


def turn(graph: Graph) -> set[str]:
    """The tensors (as written, after fusions) held channels-last."""
    writer = {graph.written(node.output[0]): node for node in graph.nodes if _kind(graph, node)}
    readers = _readers(graph)
    turned = set(writer)
    changed = True
    while changed:  # drop what cannot stay turned until nothing more drops
        changed = False
        for name in sorted(turned):
            if not _stays(graph, name, writer[name], readers.get(name, []), turned):
                turned.discard(name)
                changed = True
    return turned


def _kind(graph: Graph, node: Any) -> str:
    """How a node can hold its output turned: "rows" (a 1x1 conv on the turned-around path),
    "depthwise", "add", or "" (it reads and writes NCHW only)."""
    if node.op_type not in ("Conv", "Add") or graph.dtype(node.output[0]) != np.float32:
        return ""
    if len(graph.shapes.get(node.input[0], ())) != 4 or len(graph.shapes.get(node.output[0], ())) != 4:
        return ""
    if node.op_type == "Add":
        shape = graph.shapes[node.output[0]]
        same = all(graph.shapes.get(name) == shape and name not in graph.consts for name in node.input)
        return "add" if same and len(node.input) == 2 else ""
    if node.input[1] not in graph.consts:
        return ""
    g = _spatial(graph, node)
    if _rows_1x1(graph, node, g, candidate=True):
        return "rows"
    channels = g["x"][1]
    depthwise = int(g["a"].get("group", 1)) == channels == g["y"][1] and graph.shapes[node.input[1]][1] == 1
    return "depthwise" if depthwise else ""


def _stays(graph: Graph, name: str, node: Any, readers: list[Any], turned: set[str]) -> bool:
    if name in graph.outputs:
        return False
    kind = _kind(graph, node)
    if kind == "depthwise" and node.input[0] not in turned:
        return False
    if kind == "add" and not all(i in turned for i in node.input):
        return False
    for reader in readers:
        how = _kind(graph, reader)
        if how == "rows" and reader.input[0] == name:
            continue
        if how in ("depthwise", "add") and graph.written(reader.output[0]) in turned:
            continue
        return False
    return True
