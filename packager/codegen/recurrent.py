"""The recurrent layers: LSTM (peepholes, input_forget, clip), GRU (linear_before_reset) and RNN,
forward, reverse or bidirectional, layout 0 or 1, float32. Each is one loop nest over directions,
steps and the batch: the gates' products with W and R as plain sums (the sizes of a streaming
model's state are small), the state in the node's scratch. Activations: Sigmoid, Tanh, Relu.
sequence_lens as ONNX has it: past its length a sequence's outputs are zeros and its state stays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from packager.codegen.graph import Graph, attrs
from packager.errors import UnsupportedOpError

Ref = Callable[[str], str]
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
ACT_CODES = {"Sigmoid": 0, "Tanh": 1, "Relu": 2}  # pk_activate's codes


def _geometry(graph: Graph, node: Any) -> dict[str, Any]:
    a = attrs(node)
    x = list(graph.shapes[node.input[0]])
    layout = int(a.get("layout", 0))
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(a.get("hidden_size", graph.shapes[node.input[2]][-1]))
    return {"layout": layout, "seq": seq, "batch": batch, "inputs": x[2], "dirs": dirs, "hidden": hidden,
            "reverse": direction == "reverse"}  # fmt: skip


def scratch_floats(graph: Graph, node: Any) -> int:
    """h and c for every direction and batch item, and one step's gates."""
    g = _geometry(graph, node)
    return 2 * g["dirs"] * g["batch"] * g["hidden"] + GATES[node.op_type] * g["hidden"] + g["hidden"]


def _activations(node: Any, dirs: int) -> list[str]:
    a = attrs(node)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in a.get("activations", [])]
    names = names or DEFAULTS[node.op_type] * dirs
    if a.get("activation_alpha") or a.get("activation_beta"):
        raise UnsupportedOpError(f"static-lib: {node.op_type} with activation_alpha/beta is not supported")
    for name in names:
        if name not in ACT_CODES:
            raise UnsupportedOpError(f"static-lib: {node.op_type} with the activation {name} is not supported")
    return names


def _optional(node: Any, index: int) -> str:
    return node.input[index] if len(node.input) > index and node.input[index] else ""


def recurrent(graph: Graph, node: Any, ref: Ref) -> str:
    op = node.op_type
    for name in node.input[:4]:
        if name and graph.dtype(name) != np.float32:
            raise UnsupportedOpError(f"static-lib: {op} on {graph.dtype(name).name} tensors is not supported")
    g = _geometry(graph, node)
    seq, batch, size, dirs, hid = g["seq"], g["batch"], g["inputs"], g["dirs"], g["hidden"]
    gates = GATES[op]
    a = attrs(node)
    lens = _optional(node, 4)
    acts = _activations(node, dirs)
    per_dir = len(acts) // dirs
    clip = float(a["clip"]) if "clip" in a else None
    names = {"x": node.input[0], "w": node.input[1], "r": node.input[2], "b": _optional(node, 3),
             "h0": _optional(node, 5), "c0": _optional(node, 6) if op == "LSTM" else "",
             "p": _optional(node, 7) if op == "LSTM" else ""}  # fmt: skip
    outs = [*node.output, "", "", ""]
    y, yh, yc = outs[0], outs[1], outs[2] if op == "LSTM" else ""
    ptr = {k: (ref(v) if v else "0") for k, v in names.items()}
    out_ptr = {k: (ref(v) if v else "0") for k, v in (("y", y), ("yh", yh), ("yc", yc))}
    layout = g["layout"]
    x_at = (
        f"(size_t)b * {seq * size} + (size_t)t * {size}"
        if layout
        else f"(size_t)t * {batch * size} + (size_t)b * {size}"
    )
    y_at = (f"((size_t)b * {seq * dirs} + (size_t)t * {dirs} + d) * {hid}" if layout
            else f"(((size_t)t * {dirs} + d) * {batch} + b) * {hid}")  # fmt: skip
    state_at = f"((size_t)b * {dirs} + d) * {hid}" if layout else f"((size_t)d * {batch} + b) * {hid}"
    clipped = (lambda v: f"fminf(fmaxf({v}, {-clip!r}f), {clip!r}f)") if clip is not None else (lambda v: v)

    # one step of direction d for batch item b: gates G[r] = Wx + Rh + biases (Rh apart for GRU's h gate)
    products = (f"for (int r = 0; r < {gates * hid}; ++r) {{ float s = B ? B[(size_t)d * {2 * gates * hid} + r] "
                f": 0.0f; "
                f"const float *w = W + ((size_t)d * {gates * hid} + r) * {size}; "
                f"for (int i = 0; i < {size}; ++i) s += w[i] * xt[i]; G[r] = s; }}")  # fmt: skip
    recur = (f"for (int r = 0; r < {gates * hid}; ++r) {{ float s = B ? B[(size_t)d * {2 * gates * hid} + "
             f"{gates * hid} + r] : 0.0f; "
             f"const float *w = R + ((size_t)d * {gates * hid} + r) * {hid}; "
             f"for (int i = 0; i < {hid}; ++i) s += w[i] * h[i]; RH[r] = s; }}")  # fmt: skip
    f0, f1, f2 = "k0", "k1", "k2"
    if op == "LSTM":
        coupled = int(a.get("input_forget", 0))
        body = (f"{recur} for (int j = 0; j < {hid}; ++j) {{ const float *pp = P ? P + (size_t)d * {3 * hid} : 0; "
                f"float cp = c[j]; "
                f"float gi = G[j] + RH[j] + (pp ? pp[j] * cp : 0.0f); "
                f"float gf = G[{2 * hid} + j] + RH[{2 * hid} + j] + (pp ? pp[{2 * hid} + j] * cp : 0.0f); "
                f"float gc = G[{3 * hid} + j] + RH[{3 * hid} + j]; "
                f"const float it = {act_of(f0, clipped('gi'))}; "
                f"const float ft = {'1.0f - it' if coupled else act_of(f0, clipped('gf'))}; "
                f"const float ct = {act_of(f1, clipped('gc'))}; const float cn = ft * cp + it * ct; "
                f"float go = G[{hid} + j] + RH[{hid} + j] + (pp ? pp[{hid} + j] * cn : 0.0f); "
                f"const float ot = {act_of(f0, clipped('go'))}; NC[j] = cn; NH[j] = ot * {act_of(f2, 'cn')}; "
                f"}}")  # fmt: skip
    elif op == "GRU":
        before = int(a.get("linear_before_reset", 0))
        if before:
            candidate = f"G[{2 * hid} + j] + rt * RH[{2 * hid} + j]"
            extra = ""
        else:  # (r . h) R_h + Rb_h: the reset gate applied to h before its product
            candidate = f"G[{2 * hid} + j] + RR[j]"
            extra = (f"for (int j = 0; j < {hid}; ++j) {{ const float rt = "
                     f"{act_of(f0, clipped(f'G[{hid} + j] + RH[{hid} + j]'))}; "
                     f"NH[j] = rt * h[j]; }} for (int r = 0; r < {hid}; ++r) {{ "
                     f"float s = B ? B[(size_t)d * {6 * hid} + {5 * hid} + r] : 0.0f; "
                     f"const float *w = R + ((size_t)d * {3 * hid} + {2 * hid} + r) * {hid}; "
                     f"for (int i = 0; i < {hid}; ++i) s += w[i] * NH[i]; RR[r] = s; }} ")  # fmt: skip
        body = (f"{recur} {extra}for (int j = 0; j < {hid}; ++j) {{ "
                f"const float zt = {act_of(f0, clipped('G[j] + RH[j]'))}; "
                f"const float rt = {act_of(f0, clipped(f'G[{hid} + j] + RH[{hid} + j]'))}; (void)rt; "
                f"const float ht = {act_of(f1, clipped(candidate))}; NC[j] = (1.0f - zt) * ht + zt * h[j]; }} "
                f"for (int j = 0; j < {hid}; ++j) NH[j] = NC[j];")  # fmt: skip
    else:
        body = (f"{recur} for (int j = 0; j < {hid}; ++j) NH[j] = {act_of(f0, clipped('G[j] + RH[j]'))};")  # fmt: skip
    act_names = [acts[d * per_dir : (d + 1) * per_dir] for d in range(dirs)]
    selectors = " ".join(
        f"const int k{i} = d ? {ACT_CODES[act_names[-1][i]]} : {ACT_CODES[act_names[0][i]]};" for i in range(per_dir)
    )
    h_size = dirs * batch * hid
    return (f"{{ const float *X = {ptr['x']}, *W = {ptr['w']}, *R = {ptr['r']}, *B = {ptr['b']}, *H0 = {ptr['h0']}, "
            f"*C0 = {ptr['c0']}, *P = {ptr['p']}; const {graph.ctype(lens) if lens else 'pk_int32'} *L = "
            f"{ref(lens) if lens else '0'}; float *Y = {out_ptr['y']}, *YH = {out_ptr['yh']}, "
            f"*YC = {out_ptr['yc']}; float *S = {graph.scratch}; float *HS = S, *CS = S + {h_size}, "
            f"*G = S + {2 * h_size}, *RH = G + {gates * hid}, *NH = RH + {gates * hid}, *NC = NH + {hid}, "
            f"*RR = NC + {hid}; (void)P; (void)C0; (void)YC; (void)RR; (void)NC; "
            f"for (int d = 0; d < {dirs}; ++d) {{ {selectors} for (int b = 0; b < {batch}; ++b) {{ "
            f"float *h = HS + {state_at}, *c = CS + {state_at}; for (int j = 0; j < {hid}; ++j) {{ "
            f"h[j] = H0 ? H0[{state_at} + j] : 0.0f; c[j] = C0 ? C0[{state_at} + j] : 0.0f; }} "
            f"const int len = L ? (int)L[b] : {seq}; for (int step = 0; step < {seq}; ++step) {{ int t = step; "
            f"if (step >= len) {{ if (Y) memset(Y + {y_at}, 0, {hid} * sizeof(float)); continue; }} "
            f"t = (d == 1 || {int(g['reverse'])}) ? len - 1 - step : step; "
            f"const float *xt = X + {x_at}; {products} {body} "
            f"for (int j = 0; j < {hid}; ++j) {{ h[j] = NH[j]; {'c[j] = NC[j]; ' if op == 'LSTM' else ''}}} "
            f"if (Y) memcpy(Y + {y_at}, h, {hid} * sizeof(float)); }} "
            f"if (YH) memcpy(YH + {state_at}, h, {hid} * sizeof(float)); "
            f"if (YC) memcpy(YC + {state_at}, c, {hid} * sizeof(float)); }} }} }}")  # fmt: skip


def act_of(selector: str, value: str) -> str:
    """The activation chosen at run time by its code (a direction's own list), applied to value."""
    return f"pk_activate({selector}, {value})"


EMITTERS: dict[str, Callable[[Graph, Any, Ref], str]] = {"LSTM": recurrent, "GRU": recurrent, "RNN": recurrent}
