"""Resize (and Upsample): nearest, linear and cubic, every coordinate transformation mode and
nearest rounding mode, exclude_outside, tf_crop_and_resize's box and extrapolation value; scales,
sizes, roi and axes constant once the shapes are fixed. Each resized dim gets a table of taps
(input index and weight per output index: 1 for nearest, 2 linear, 4 cubic), and ``pk_resample``
sums their products; a dim kept as it is has one tap of weight 1. Antialiasing and the
keep_aspect_ratio policies other than stretch are refused."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import Graph, attrs, c_float, text
from packager.errors import UnsupportedOpError


def _const(graph: Graph, node: Any, index: int) -> np.ndarray | None:
    if len(node.input) <= index or not node.input[index]:
        return None
    if node.input[index] not in graph.consts:
        raise UnsupportedOpError(f"static-lib: {node.op_type} with scales, sizes or roi computed at run time is "
                                 "not supported")  # fmt: skip
    found = np.asarray(graph.consts[node.input[index]])
    return found if found.size else None


def _settings(graph: Graph, node: Any) -> dict[str, Any]:
    a = attrs(node)
    x = list(graph.shapes[node.input[0]])
    rank = len(x)
    if int(a.get("antialias", 0)):
        raise UnsupportedOpError("static-lib: Resize with antialias is not supported")
    if text(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise UnsupportedOpError("static-lib: Resize keep_aspect_ratio_policy other than stretch is not supported")
    axes = [int(v) % rank for v in a.get("axes", range(rank))]
    if node.op_type == "Upsample":
        found = _const(graph, node, 1) if len(node.input) > 1 else np.asarray(a["scales"])
        scales_in, roi, sizes_in = found, None, None
    elif graph.opset < 11:
        scales_in, roi, sizes_in = _const(graph, node, 1), None, None
    else:
        roi, scales_in, sizes_in = _const(graph, node, 1), _const(graph, node, 2), _const(graph, node, 3)
    out = list(graph.shapes[node.output[0]])
    scales = [1.0] * rank
    if scales_in is not None:
        for axis, value in zip(axes, scales_in.reshape(-1).tolist(), strict=True):
            scales[axis] = float(value)
    else:
        for axis in range(rank):
            scales[axis] = out[axis] / x[axis]
    box = [(0.0, 1.0)] * rank
    if roi is not None:
        flat = roi.reshape(-1).tolist()
        for k, axis in enumerate(axes):
            box[axis] = (float(flat[k]), float(flat[k + len(axes)]))
    if sizes_in is None and scales_in is None:
        raise UnsupportedOpError("static-lib: Resize needs scales or sizes")
    return {"x": x, "out": out, "scales": scales, "box": box, "a": a,
            "mode": text(a.get("mode"), "nearest"),
            "coord": text(a.get("coordinate_transformation_mode"),
                           "asymmetric" if node.op_type == "Upsample" or graph.opset < 11 else "half_pixel"),
            # Upsample and Resize-10 take the floor (they have no nearest_mode)
            "nearest": text(a.get("nearest_mode"),
                             "floor" if node.op_type == "Upsample" or graph.opset < 11 else "round_prefer_floor"),
            "cubic": float(a.get("cubic_coeff_a", -0.75)), "exclude": bool(int(a.get("exclude_outside", 0))),
            "fill": float(a.get("extrapolation_value", 0.0))}  # fmt: skip


def _original(i: int, scale: float, n_in: int, n_out: int, coord: str, box: tuple[float, float]) -> float:
    """The input coordinate of output index ``i`` along one axis. The resized length in the
    formulas is ``scale * n_in`` unrounded, as ONNX's reference takes it (``n_out`` is the integer
    one, which only half_pixel_symmetric's adjustment uses)."""
    length = scale * n_in
    if coord == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if coord == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        centre = n_in / 2
        return centre * (1 - adjustment) + (i + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if length > 1 else 0.0
    if coord == "align_corners":
        return 0.0 if length == 1 else i * (n_in - 1) / (length - 1)
    if coord == "asymmetric":
        return i / scale
    if coord == "tf_crop_and_resize":
        start, end = box
        if length > 1:
            return start * (n_in - 1) + i * (end - start) * (n_in - 1) / (length - 1)
        return 0.5 * (start + end) * (n_in - 1)
    raise UnsupportedOpError(f"static-lib: Resize coordinate_transformation_mode {coord!r} is not supported")


def _nearest(x: float, mode: str) -> int:
    if mode == "floor":
        return math.floor(x)
    if mode == "ceil":
        return math.ceil(x)
    frac = x - math.floor(x)
    if frac == 0.5:
        return math.floor(x) if mode == "round_prefer_floor" else math.ceil(x)
    if mode not in ("round_prefer_floor", "round_prefer_ceil"):
        raise UnsupportedOpError(f"static-lib: Resize nearest_mode {mode!r} is not supported")
    return math.floor(x + 0.5)


def _cubic(r: float, a: float) -> list[float]:
    return [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
            ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a]  # fmt: skip


def _taps(s: dict[str, Any], axis: int) -> tuple[int, list[int], list[float]]:
    """(taps per output index, the input indices, their weights) of one axis."""
    n_in, n_out, scale = s["x"][axis], s["out"][axis], s["scales"][axis]
    box, coord = s["box"][axis], s["coord"]
    if n_in == n_out and scale == 1.0 and coord != "tf_crop_and_resize" and box == (0.0, 1.0):
        return 1, list(range(n_out)), [1.0] * n_out
    mode = s["mode"]
    count = {"nearest": 1, "linear": 2, "cubic": 4}.get(mode)
    if count is None:
        raise UnsupportedOpError(f"static-lib: Resize mode {mode!r} is not supported")
    indices: list[int] = []
    weights: list[float] = []
    for i in range(n_out):
        x = _original(i, scale, n_in, n_out, coord, box)
        if coord == "tf_crop_and_resize" and not 0 <= x <= n_in - 1:
            indices += [-1] * count
            weights += [1.0] + [0.0] * (count - 1)
            continue
        if mode == "nearest":
            indices.append(min(max(_nearest(x, s["nearest"]), 0), n_in - 1))
            weights.append(1.0)
            continue
        base = math.floor(x)
        r = x - base
        near = [base, base + 1] if mode == "linear" else [base - 1, base, base + 1, base + 2]
        coeffs = [1 - r, r] if mode == "linear" else _cubic(r, s["cubic"])
        if s["exclude"]:
            coeffs = [c if 0 <= j < n_in else 0.0 for c, j in zip(coeffs, near, strict=True)]
            total = sum(coeffs)
            coeffs = [c / total for c in coeffs] if total else coeffs
        indices += [min(max(j, 0), n_in - 1) for j in near]
        weights += coeffs
    return count, indices, weights


def _resize(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    s = _settings(graph, node)
    x, out = s["x"], s["out"]
    if int(np.prod(out)) != graph.size(node.output[0]) or len(out) != len(x):
        raise UnsupportedOpError("static-lib: Resize gives a shape its output does not have")
    taps: list[int] = []
    offsets: list[int] = []
    indices: list[int] = []
    weights: list[float] = []
    for axis in range(len(x)):
        count, found, w = _taps(s, axis)
        taps.append(count)
        offsets.append(len(indices))
        indices += found
        weights += w
    strides, step = [0] * len(x), 1
    for d in range(len(x) - 1, -1, -1):
        strides[d] = step
        step *= x[d]
    table = graph.weights.add(np.asarray(weights, np.float32), node.output[0] + "_w")
    ints = lambda v: ", ".join(str(int(i)) for i in v)  # noqa: E731
    return (f"pk_resample({ref(node.input[0])}, {ref(node.output[0])}, {len(x)}, (const int[]){{{ints(out)}}}, "
            f"(const int[]){{{ints(taps)}}}, (const int[]){{{ints(offsets)}}}, (const int[]){{{ints(indices)}}}, "
            f"{table}, (const long[]){{{ints(strides)}}}, {c_float(s['fill'])});")  # fmt: skip


EMITTERS: dict[str, Callable[[Graph, Any, Callable[[str], str]], str]] = {"Resize": _resize, "Upsample": _resize}


def _grid_sample(graph: Graph, node: Any, ref: Callable[[str], str]) -> str:
    """GridSample over 2-D or 3-D images: each output reads the image at its grid's coordinates
    (normalised to [-1, 1], x first), nearest (ties to even), linear or cubic (Keys, a = -0.75),
    the coordinates and then each tap padded by zeros, the border or reflection, as ONNX's
    reference does."""
    a = attrs(node)
    x, grid = list(graph.shapes[node.input[0]]), list(graph.shapes[node.input[1]])
    if graph.dtype(node.input[0]) != np.float32 or graph.dtype(node.input[1]) != np.float32:
        raise UnsupportedOpError("static-lib: GridSample takes float32 images and grids")
    rank = len(x) - 2
    mode = text(a.get("mode"), "linear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = text(a.get("padding_mode"), "zeros")
    if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border", "reflection"):
        raise UnsupportedOpError(f"static-lib: GridSample with mode {mode!r} and padding {padding!r} is not supported")
    align = int(a.get("align_corners", 0))
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    outs = int(np.prod(grid[1:-1]))
    dims = ",".join(map(str, x[2:]))
    steps = ",".join(str(int(np.prod(x[2 + d + 1 :]))) for d in range(rank))
    lo, hi = ("0.0", "(double)dims[i] - 1.0") if align else ("-0.5", "(double)dims[i] - 0.5")
    coordinate = "(v + 1.0) / 2.0 * (dims[i] - 1)" if align else "((v + 1.0) * dims[i] - 1.0) / 2.0"
    weights = {
        "nearest": "base[i] = (int)v; w[i][0] = 1.0f;",  # already rounded; truncated after a reflection
        "linear": "{ const double f = floor(v); const float t = (float)(v - f); base[i] = (int)f; "
                  "w[i][0] = 1.0f - t; w[i][1] = t; }",
        "cubic": "{ const double f = floor(v); const double t = v - f; const double A = -0.75; base[i] = (int)f - 1; "
                 "w[i][0] = (float)(((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A); "
                 "w[i][1] = (float)(((A + 2) * t - (A + 3)) * t * t + 1); "
                 "w[i][2] = (float)(((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1); "
                 "w[i][3] = (float)(((A * (2 - t) - 5 * A) * (2 - t) + 8 * A) * (2 - t) - 4 * A); }",
    }[mode]  # fmt: skip
    clamp = {"zeros": "", "border": "if (v < lo || v > hi) v = v < 0 ? 0 : (v > dims[i] - 1 ? dims[i] - 1 : v);",
             "reflection": "if (v < lo || v > hi) v = pk_reflect(v, lo, hi);"}[padding]  # fmt: skip
    fetch = {"zeros": "if (j < 0 || j >= dims[i]) inside = 0;",
             "border": "j = j < 0 ? 0 : (j >= dims[i] ? dims[i] - 1 : j);",
             "reflection": "j = (int)pk_reflect((double)j, lo, hi);"}[padding]  # fmt: skip
    channels, size = x[1], int(np.prod(x[2:]))

    def level(i: int, off: str) -> str:
        """Dim i's taps summed in float, the inner dims' sums first, as the reference nests them."""
        here = f"{off} + (long)j{i} * steps[{i}]"
        inner = f"img[{here}]" if i == rank - 1 else f"s{i + 1}"
        body = "" if i == rank - 1 else level(i + 1, here) + " "
        return (f"float s{i} = 0.0f; for (int t{i} = 0; t{i} < {taps}; ++t{i}) {{ int j{i} = base[{i}] + t{i}, "
                f"inside = 1; {{ const int i = {i}; int j = j{i}; const double lo = {lo}, hi = {hi}; (void)lo; "
                f"(void)hi; {fetch} j{i} = j; }} if (!inside) continue; {body}"
                f"s{i} += w[{i}][t{i}] * {inner}; }}")  # fmt: skip

    return (f"{{ static const int dims[] = {{{dims}}}; static const long steps[] = {{{steps}}}; "
            f"const float *X = {ref(node.input[0])}, *G = {ref(node.input[1])}; float *Y = {ref(node.output[0])}; "
            f"for (size_t n = 0; n < {x[0]}; ++n) for (size_t o = 0; o < {outs}; ++o) {{ "
            f"const float *g = G + (n * {outs} + o) * {rank}; int base[{rank}]; float w[{rank}][4]; "
            f"for (int i = 0; i < {rank}; ++i) {{ double v = g[{rank - 1} - i]; v = (float)({coordinate}); "
            f"const double lo = {lo}, hi = {hi}; (void)lo; (void)hi; "
            f"{'v = nearbyint(v); ' if mode == 'nearest' else ''}{clamp} {weights} }} "
            f"for (size_t c = 0; c < {channels}; ++c) {{ const float *img = X + (n * {channels} + c) * {size}; "
            f"{level(0, '0')} Y[(n * {channels} + c) * {outs} + o] = s0; }} }} }}")  # fmt: skip


EMITTERS["GridSample"] = _grid_sample
