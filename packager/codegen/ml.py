"""ai.onnx.ml operators: tree ensembles as array tables, linear models, Scaler, Normalizer.

Scores are computed and post-transformed the way onnxruntime's CPU kernels do (float sums over
trees in order, the same logistic and softmax forms, the same binary-case expansion), so labels
are exact and probabilities agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.errors import UnsupportedOpError

MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5, "LEAF": 6}
POST = {"NONE": 0, "LOGISTIC": 1, "SOFTMAX": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}
AGGREGATE = {"SUM": 0, "AVERAGE": 1, "MIN": 2, "MAX": 3}
# Binary expansion of one score s into two columns, as onnxruntime writes it.
BINARY_NONE, BINARY_ONE_MINUS, BINARY_NEGATE = 0, 1, 2

Ref = Callable[[str], str]


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _floats(values: Any) -> str:
    """float32 values as C initializers: 9 significant digits round-trip exactly."""
    flat = np.asarray([float(v) for v in values] or [0.0], np.float32)
    special = {np.inf: "INFINITY", -np.inf: "-INFINITY"}
    return ",".join("NAN" if np.isnan(v) else special.get(float(v), f"{v:.9g}") for v in flat.tolist())


def _ints(values: Any) -> str:
    flat = [int(v) for v in values] or [0]
    return ",".join(str(v) for v in flat)


def _post(node: Any, attrs: dict[str, Any]) -> int:
    name = _text(attrs.get("post_transform"), "NONE")
    if name not in POST:
        raise UnsupportedOpError(f"static-lib: {node.op_type} post_transform {name} is not supported")
    return POST[name]


def _labels(node: Any, attrs: dict[str, Any]) -> list[int]:
    if attrs.get("classlabels_strings"):
        raise UnsupportedOpError(
            f"static-lib: {node.op_type} with string class labels is not supported (the C API returns numbers)",
            hint="train with integer class labels, or build the onnx target",
        )
    labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_ints")
    if not labels:
        raise UnsupportedOpError(f"static-lib: {node.op_type} without integer class labels is not supported")
    return [int(v) for v in labels]


def _rows(graph: Any, node: Any) -> tuple[int, int]:
    shape = graph.shapes[node.input[0]]
    if len(shape) != 2:
        raise UnsupportedOpError(f"static-lib: {node.op_type} takes a 2-D [N, features] input, not {len(shape)}-D")
    return int(shape[0]), int(shape[1])


def _class_outputs(node: Any, ref: Ref, classes: int) -> tuple[str, str]:
    """Per-row pointers to the label and score outputs ("0" when the graph drops one)."""
    label = f"{ref(node.output[0])} + n" if node.output[0] else "0"
    has_scores = len(node.output) > 1 and node.output[1]
    return label, (f"{ref(node.output[1])} + n * {classes}" if has_scores else "0")


def ml_output_shapes(node: Any, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output shapes of an ai.onnx.ml node from its input shape (onnx's inference skips some)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rows = shape[0] if shape else 1
    if node.op_type in ("Scaler", "Normalizer"):
        return [shape]
    if node.op_type in ("TreeEnsembleClassifier", "LinearClassifier"):
        labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_ints") or attrs.get("classlabels_strings")
        return [(rows,), (rows, max(len(labels or []), 2))]
    if node.op_type == "TreeEnsembleRegressor":
        return [(rows, int(attrs.get("n_targets", 1)))]
    if node.op_type == "LinearRegressor":
        return [(rows, int(attrs.get("targets", 1)))]
    return []


class Tables:
    """Static tables collected while emitting; written before the model function."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def add(self, kind: str, name: str, size: int, values: str) -> str:
        cname = f"{self.prefix}_{name}{len(self.lines)}"
        self.lines.append(f"static const {kind} {cname}[{max(size, 1)}] = {{{values}}};")
        return cname


def _forest(
    node: Any, attrs: dict[str, Any], tables: Tables, weight_key: str, width: int, *, dense_ok: bool
) -> tuple[str, int, bool]:
    """Emit node and leaf tables for scores of ``width`` columns; returns (call arguments up to
    the dense flag, tree count, all-LEQ)."""
    for key in ("nodes_values_as_tensor", "base_values_as_tensor", f"{weight_key}_weights_as_tensor"):
        if attrs.get(key) is not None:
            raise UnsupportedOpError(f"static-lib: {node.op_type} with double thresholds ({key}) is not supported")
    trees, ids = list(attrs["nodes_treeids"]), list(attrs["nodes_nodeids"])
    index = {(t, n): i for i, (t, n) in enumerate(zip(trees, ids, strict=True))}
    modes = [MODES[_text(m, "")] for m in attrs["nodes_modes"]]
    nan_true = list(attrs.get("nodes_missing_value_tracks_true") or [0] * len(ids))
    leaves: dict[int, list[tuple[int, float]]] = {}
    targets = zip(attrs[f"{weight_key}_treeids"], attrs[f"{weight_key}_nodeids"], attrs[f"{weight_key}_ids"],
                  attrs[f"{weight_key}_weights"], strict=True)  # fmt: skip
    for t, n, cls, w in targets:
        leaves.setdefault(index[(t, n)], []).append((int(cls), float(w)))
    # One 16-byte record per node (threshold, feature, true child, false child) so that a step
    # down a tree reads one cache line; a leaf points at itself, so extra steps stay on it.
    records: list[tuple[int, int, int]] = []
    flags: list[int] = []
    vstart: list[int] = []
    vcount: list[int] = []
    leaf_ids: list[int] = []
    leaf_weights: list[float] = []
    floats = _floats([attrs["nodes_values"][i] if m != MODES["LEAF"] else 0.0 for i, m in enumerate(modes)])
    # Summed votes are stored as one row of `width` weights per leaf (zeros where a leaf has no
    # vote: adding them changes no sum) when that takes at most 1.5x the room of (class, weight)
    # pairs, as for a random forest whose leaves all vote every class: the sum then vectorizes.
    nleaves = sum(m == MODES["LEAF"] for m in modes)
    dense = dense_ok and nleaves * width <= 1.5 * sum(len(v) for v in leaves.values()) and all(
        len({c for c, _ in v}) == len(v) and all(0 <= c < width for c, _ in v) for v in leaves.values())  # fmt: skip
    for i, (t, mode) in enumerate(zip(trees, modes, strict=True)):
        votes = leaves.get(i, []) if mode == MODES["LEAF"] else []
        vstart.append(len(leaf_weights))
        vcount.append(len(votes))
        leaf_ids += [c for c, _ in votes]
        if dense and mode == MODES["LEAF"]:
            row = [0.0] * width
            for c, w in votes:
                row[c] = w
            leaf_weights += row
        else:
            leaf_weights += [w for _, w in votes]
        if mode == MODES["LEAF"]:
            records.append((0, i, i))
        else:
            records.append((int(attrs["nodes_featureids"][i]), index[(t, attrs["nodes_truenodeids"][i])],
                            index[(t, attrs["nodes_falsenodeids"][i])]))  # fmt: skip
        flags.append(mode | (8 if nan_true[i] else 0))
    children = {(t, c) for t, a, b, m in zip(trees, attrs["nodes_truenodeids"], attrs["nodes_falsenodeids"], modes,
                                              strict=True) if m != MODES["LEAF"] for c in (a, b)}  # fmt: skip
    pairs = list(zip(trees, ids, strict=True))
    roots = [next(index[p] for p in pairs if p[0] == t and p not in children) for t in dict.fromkeys(trees)]
    count = len(ids)
    packed = ",".join(f"{{{thr},{f},{a},{b}}}" for thr, (f, a, b) in zip(floats.split(","), records, strict=True))
    depths = [_depth(root, records, modes) for root in roots]
    args = ", ".join([
        tables.add("pk_tnode", "node", count, packed), tables.add("unsigned char", "mode", count, _ints(flags)),
        tables.add("int", "root", len(roots), _ints(roots)), tables.add("int", "depth", len(roots), _ints(depths)),
        str(len(roots)), tables.add("int", "vstart", count, _ints(vstart)),
        tables.add("int", "vcount", count, _ints(vcount)), tables.add("int", "vote", len(leaf_ids), _ints(leaf_ids)),
        tables.add("float", "weight", len(leaf_weights), _floats(leaf_weights)),
    ])  # fmt: skip
    all_leq = all(m in (MODES["BRANCH_LEQ"], MODES["LEAF"]) for m in modes) and not any(nan_true)
    return f"{args}, {int(dense)}", len(roots), all_leq


def _depth(root: int, records: list[tuple[int, int, int]], modes: list[int]) -> int:
    """Steps from the root to the deepest leaf."""
    deepest, frontier = 0, [(root, 0)]
    while frontier:
        i, d = frontier.pop()
        if modes[i] == MODES["LEAF"]:
            deepest = max(deepest, d)
        else:
            frontier += [(records[i][1], d + 1), (records[i][2], d + 1)]
    return deepest


def tree_classifier(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    labels = _labels(node, attrs)
    post = _post(node, attrs)
    classes = {int(c) for c in attrs["class_ids"]}
    binary = len(labels) == 2 and len(classes) == 1
    columns = 1 if binary else len(labels)
    args, _, all_leq = _forest(node, attrs, tables, "class", columns, dense_ok=True)
    base = list(attrs.get("base_values") or [])
    if base and len(base) != columns and not (binary and len(base) == 2):
        raise UnsupportedOpError(f"static-lib: {node.op_type} with {len(base)} base values is not supported")
    if binary and post == POST["PROBIT"]:
        raise UnsupportedOpError("static-lib: a binary TreeEnsembleClassifier with PROBIT is not supported")
    if binary:
        base = [base[-1]] if base else []
        positive = all(float(w) >= 0 for w in attrs["class_weights"])
        expand = BINARY_ONE_MINUS if positive else BINARY_NEGATE
        threshold = 0.5 if positive else 0.0
    else:
        expand, threshold = BINARY_NONE, 0.0
    base_table = tables.add("float", "base", len(base), _floats(base)) if base else "0"
    labels_table = tables.add("int64_t", "label", len(labels), _ints(labels))
    rows, features = _rows(graph, node)
    label_out, probs = _class_outputs(node, ref, len(labels))
    return (f"for (int n = 0; n < {rows}; ++n) {{ float s[{max(columns, 2)}]; "
            f"pk_trees({args}, {ref(node.input[0])} + n * {features}, s, {columns}, 0, {int(all_leq)}); "
            f"pk_classify(s, {columns}, {base_table}, {post}, {expand}, {threshold}f, {labels_table}, "
            f"{label_out}, {probs}); }}")  # fmt: skip


def tree_regressor(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    post = _post(node, attrs)
    if post not in (POST["NONE"],):
        raise UnsupportedOpError(f"static-lib: TreeEnsembleRegressor post_transform {post} is not supported")
    targets = int(attrs.get("n_targets", 1))
    aggregate = _text(attrs.get("aggregate_function"), "SUM")
    if aggregate in ("MIN", "MAX") and targets > 256:
        raise UnsupportedOpError("static-lib: MIN/MAX tree aggregation over more than 256 targets is not supported")
    args, trees, all_leq = _forest(node, attrs, tables, "target", targets, dense_ok=aggregate in ("SUM", "AVERAGE"))
    base = list(attrs.get("base_values") or [])
    base_table = tables.add("float", "base", len(base), _floats(base)) if base else "0"
    rows, features = _rows(graph, node)
    y = f"{ref(node.output[0])} + n * {targets}"
    return (f"for (int n = 0; n < {rows}; ++n) {{ pk_trees({args}, {ref(node.input[0])} + n * {features}, {y}, "
            f"{targets}, {AGGREGATE[aggregate]}, {int(all_leq)}); "
            f"pk_finish_regression({y}, {targets}, {base_table}, {AGGREGATE[aggregate]}, {trees}); }}")  # fmt: skip


def linear_classifier(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    labels = _labels(node, attrs)
    post = _post(node, attrs)
    features = graph.shapes[node.input[0]][-1]
    coefficients = np.asarray(attrs["coefficients"], np.float32).reshape(-1, features)
    rows = coefficients.shape[0]
    intercepts = list(attrs.get("intercepts") or [0.0] * rows)
    binary = rows == 1 and len(labels) == 2
    if not binary and rows != len(labels):
        raise UnsupportedOpError(f"static-lib: LinearClassifier with {rows} rows for {len(labels)} labels")
    coef = tables.add("float", "coef", coefficients.size, _floats(coefficients.reshape(-1)))
    bias = tables.add("float", "bias", len(intercepts), _floats(intercepts))
    label_table = tables.add("int64_t", "label", len(labels), _ints(labels))
    items, _ = _rows(graph, node)
    label_out, probs = _class_outputs(node, ref, len(labels))
    expand = BINARY_NEGATE if binary else BINARY_NONE
    return (f"for (int n = 0; n < {items}; ++n) {{ float s[{max(rows, 2)}]; "
            f"pk_linear({ref(node.input[0])} + n * {features}, {coef}, {bias}, s, 1, {rows}, {features}); "
            f"pk_classify(s, {rows}, 0, {post}, {expand}, 0.0f, {label_table}, {label_out}, {probs}); }}")  # fmt: skip


def linear_regressor(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    if _post(node, attrs) != POST["NONE"]:
        raise UnsupportedOpError("static-lib: LinearRegressor with a post_transform is not supported")
    targets = int(attrs.get("targets", 1))
    features = graph.shapes[node.input[0]][-1]
    coefficients = np.asarray(attrs["coefficients"], np.float32).reshape(targets, features)
    intercepts = list(attrs.get("intercepts") or [0.0] * targets)
    coef = tables.add("float", "coef", coefficients.size, _floats(coefficients.reshape(-1)))
    bias = tables.add("float", "bias", len(intercepts), _floats(intercepts))
    rows, _ = _rows(graph, node)
    return f"pk_linear({ref(node.input[0])}, {coef}, {bias}, {ref(node.output[0])}, {rows}, {targets}, {features});"


def scaler(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    features = graph.shapes[node.input[0]][-1]
    offset = list(attrs.get("offset") or [0.0])
    scale = list(attrs.get("scale") or [1.0])
    if len(offset) not in (1, features) or len(scale) not in (1, features):
        raise UnsupportedOpError("static-lib: Scaler offset/scale must have one value or one per feature")
    offsets = tables.add("float", "offset", len(offset), _floats(offset))
    scales = tables.add("float", "scale", len(scale), _floats(scale))
    return (f"pk_scaler({ref(node.input[0])}, {ref(node.output[0])}, {graph.size(node.input[0])}, {features}, "
            f"{offsets}, {len(offset)}, {scales}, {len(scale)});")  # fmt: skip


def normalizer(graph: Any, node: Any, ref: Ref, attrs: dict[str, Any], tables: Tables) -> str:
    norm = _text(attrs.get("norm"), "MAX")
    kinds = {"MAX": 0, "L1": 1, "L2": 2}
    if norm not in kinds:
        raise UnsupportedOpError(f"static-lib: Normalizer norm {norm} is not supported")
    shape = graph.shapes[node.input[0]]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return f"pk_normalize({ref(node.input[0])}, {ref(node.output[0])}, {rows}, {shape[-1]}, {kinds[norm]});"


ML_EMITTERS = {
    "TreeEnsembleClassifier": tree_classifier, "TreeEnsembleRegressor": tree_regressor,
    "LinearClassifier": linear_classifier, "LinearRegressor": linear_regressor, "Scaler": scaler,
    "Normalizer": normalizer,
}  # fmt: skip
