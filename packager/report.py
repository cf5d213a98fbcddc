"""report.html: one self-contained page (no scripts, no outside files) for a person to read."""

from __future__ import annotations

import html
import math
from string import Template
from typing import Any

from packager.resources import read_text

COLORS = {"verified": "#1a7f37", "unverified": "#9a6700", "failed": "#cf222e"}


def render(record: dict[str, Any]) -> str:
    model = record["model"]
    page = Template(read_text("report.html.tmpl"))
    return page.substitute(
        title=html.escape(f"{model['name']} {model['version']}"),
        summary=_summary(record),
        signature=_signature(model["signature"]),
        chart=_chart(record["variants"]),
        rows="\n".join(_row(v, record.get("checks", [])) for v in record["variants"]),
        skipped=_failed(record.get("failed", [])) + _skipped(record.get("skipped", [])),
        checks=_checks(record.get("checks", [])),
        packager=html.escape(str(record.get("packager", ""))),
    )


def _summary(record: dict[str, Any]) -> str:
    model, val = record["model"], record["validation"]
    counts: dict[str, int] = {}
    for v in record["variants"]:
        counts[v["fidelity"]["status"]] = counts.get(v["fidelity"]["status"], 0) + 1
    status = ", ".join(f'<b style="color:{COLORS.get(k, "#000")}">{n} {k}</b>' for k, n in sorted(counts.items()))
    origin = "generated from the signature" if val["generated"] else "given with --samples"
    return (
        f"<p>Source: <code>{html.escape(model['source']['file'])}</code> ({html.escape(model['source']['format'])}), "
        f"sha256 <code>{model['source']['sha256'][:16]}…</code>. "
        f"{len(record['variants'])} variants: {status or 'none'}.</p>"
        f"<p>Each variant ran in its own runtime on {val['count']} samples ({origin}) and was compared with "
        f"the source model run in {html.escape(val['reference_runtime'])}.</p>"
    )


def _signature(sig: dict[str, Any]) -> str:
    rows = []
    for kind in ("inputs", "outputs"):
        for t in sig[kind]:
            shape = ", ".join(str(d) for d in t["shape"])
            rows.append(f"<tr><td>{kind[:-1]}</td><td><code>{html.escape(t['name'])}</code></td>"
                        f"<td>{t['dtype']}</td><td>[{html.escape(shape)}]</td></tr>")  # fmt: skip
    return "\n".join(rows)


def _row(v: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    fid = v["fidelity"]
    lat = v.get("latency_ms", {})
    top1 = f"{fid['top1_agreement']:.4f}" if "top1_agreement" in fid else "—"
    err = f"{fid['max_abs_err']:.3g}" if "max_abs_err" in fid else "—"
    notes = [html.escape(fid["reason"])] if fid.get("reason") else []
    if fid.get("evidence"):
        ev = fid["evidence"]
        notes.append(f"evidence, {html.escape(ev.get('of', ''))}: max abs err {ev.get('max_abs_err')} "
                     f"in {html.escape(str(ev.get('runtime', '')))}")  # fmt: skip
    reason = f'<details class="reason"><summary>why</summary>{"<br>".join(notes)}</details>' if notes else ""
    return (
        f"<tr><td><code>{html.escape(v['id'])}</code></td><td>{v['precision']}</td>"
        f"<td class=nowrap>{html.escape(v['runtime']['name'])} ≥ {html.escape(v['runtime']['min_version'])}</td>"
        f"<td class=num>{_size(v['bytes'])}{_estimates(v['id'], checks)}</td>"
        f'<td style="color:{COLORS.get(fid["status"], "#000")}">'
        f"{fid['status']}{reason}</td><td class=num>{err}</td><td class=num>{top1}</td>"
        f"<td class=num>{_ms(lat.get('p50'))}</td><td class=num>{_ms(lat.get('p90'))}</td>"
        f"<td class=num>{v.get('peak_memory_mb', '—')}</td></tr>"
    )


# a compiled library's sizes, as the checks name them, and how the report labels them
SIZES = {"text_bytes": ".text", "rodata_bytes": ".rodata", "workspace_bytes": "workspace"}


def _estimates(variant: str, checks: list[dict[str, Any]]) -> str:
    """What the variant becomes where it deploys, when a check estimated it (a container image:
    the bundle is a build context of a few kB, the image hundreds of MB), and a compiled
    library's code, constants and workspace."""
    found = []
    for check in checks:
        name = str(check.get("name", ""))
        if not name.startswith(f"{variant}.") or check.get("value") is None:
            continue
        key = name[len(variant) + 1 :]
        if key.endswith("_bytes_estimate"):
            what = key[: -len("_bytes_estimate")].replace("_", " ")
            found.append(f'<br><span class="est">{html.escape(what)} ≈ {_size(int(check["value"]))}</span>')
        elif key in SIZES:
            found.append(f'<br><span class="est">{SIZES[key]} {_size(int(check["value"]))}</span>')
    return "".join(found)


def _skipped(items: list[dict[str, str]]) -> str:
    if not items:
        return ""
    lis = "".join(
        f"<li><code>{html.escape(s.get('variant') or s['target'])}</code>: {html.escape(s['reason'])}</li>"
        for s in items
    )
    return f"<h2>Not built</h2><ul>{lis}</ul>"


def _failed(items: list[dict[str, str]]) -> str:
    """Targets that did not build: the step, the one-line reason and where its log is."""
    if not items:
        return ""
    lis = "".join(
        f"<li><code>{html.escape(f['target'])}</code>"
        + (f" (step <code>{html.escape(f['step'])}</code>)" if f.get("step") else "")
        + f": {html.escape(f['reason'])}"
        + (f" — log <code>{html.escape(f['log'])}</code>" if f.get("log") else "")
        + "</li>"
        for f in items
    )
    return f'<h2 style="color:#cf222e">Failed targets</h2><ul>{lis}</ul>'


def _checks(items: list[dict[str, Any]]) -> str:
    """Budget and validity checks: each with its value, its limit and whether it held."""
    if not items:
        return ""
    rows = []
    for c in items:
        if c.get("ok") is None:
            verdict, value, limit = f"not checked: {html.escape(c.get('reason', ''))}", "—", "—"
        else:
            verdict = '<span style="color:#1a7f37">ok</span>' if c["ok"] else '<span style="color:#cf222e">over</span>'
            value, limit = f"{c['value']:,}", f"{c['limit']:,}"
        rows.append(f"<tr><td><code>{html.escape(c['name'])}</code></td><td class=num>{value}</td>"
                    f"<td class=num>{limit}</td><td>{verdict}</td></tr>")  # fmt: skip
    head = "<tr><th>check</th><th>value</th><th>limit</th><th></th></tr>"
    return f"<h2>Checks</h2><table>{head}{''.join(rows)}</table>"


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g} ms"


def _chart(variants: list[dict[str, Any]]) -> str:
    """Size (x, log) against max abs error (y, log); dot area grows with p50 latency."""
    points = [v for v in variants if "max_abs_err" in v["fidelity"]]
    if not points:
        return "<p>No measured variants to chart.</p>"
    width, height, pad = 960, 480, 60
    xs = [math.log10(max(v["bytes"], 1)) for v in points]
    ys = [math.log10(max(v["fidelity"]["max_abs_err"], 1e-9)) for v in points]
    x0, x1 = _span(xs)
    y0, y1 = _span(ys)
    lat = [v.get("latency_ms", {}).get("p50") for v in points]
    lat_max = max((x for x in lat if x), default=None)

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px" role="img" '
             f'aria-label="size against max abs error">',
             f'<rect x="{pad}" y="{pad / 2}" width="{width - 2 * pad}" height="{height - 1.5 * pad}" '
             f'fill="#f6f8fa" stroke="#d0d7de"/>']  # fmt: skip
    for value in _ticks(x0, x1):
        x = px(math.log10(value))
        base = height - pad
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="#8c959f"/>'
                     f'<text x="{x:.1f}" y="{base + 18}" text-anchor="middle">{_size(int(value))}</text>')  # fmt: skip
    for tick in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= tick <= y1:
            parts.append(f'<text x="{pad - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">1e{tick}</text>')
    # Labels go where they overlap no other label, tick label or axis title: right of the dot,
    # else left of it, else a line further down or up; their boxes are estimated generously.
    taken = [
        _box(px(math.log10(t)) - _width(_size(int(t))) / 2, height - pad + 18, _size(int(t))) for t in _ticks(x0, x1)
    ]
    taken.append(_box(width / 2 - 30, height - 12, "size (log)"))
    taken += [_box(pad - 6 - _width(f"1e{t}"), py(t) + 4, f"1e{t}") for t in range(math.floor(y0), math.ceil(y1) + 1)
              if y0 <= t <= y1]  # fmt: skip
    area = (pad, pad / 2, width - 2, height - pad - 2)
    for v, x, y, ms in sorted(zip(points, xs, ys, lat, strict=True), key=lambda item: (item[1], item[2])):
        r = 5 + (8 * ms / lat_max if ms and lat_max else 0)
        color = COLORS.get(v["fidelity"]["status"], "#000")
        label_x, label_y = _place(v["id"], px(x), py(y), r, taken, area)
        taken.append(_box(label_x, label_y, v["id"]))
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r:.1f}" fill="{color}" fill-opacity="0.6">'
                     f'<title>{html.escape(v["id"])}</title></circle>'
                     f'<text x="{label_x:.1f}" y="{label_y:.1f}">{html.escape(v["id"])}</text>')  # fmt: skip
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">size (log)</text>')
    parts.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
                 f'text-anchor="middle">max abs error vs source (log)</text></svg>')  # fmt: skip
    return "".join(parts)


CHAR_PX = 7.4  # a 12px system-ui character, at its widest on common fonts (labels are ids and sizes)
Box = tuple[float, float, float, float]


def _width(text: str) -> float:
    return CHAR_PX * len(text)


def _box(x: float, baseline: float, text: str) -> Box:
    """The box a label drawn at (x, baseline) covers: 12px text, its descenders, a margin."""
    return (x - 1, baseline - 13, x + _width(text) + 1, baseline + 4)


def _place(text: str, cx: float, cy: float, r: float, taken: list[Box], area: Box) -> tuple[float, float]:
    """Where a dot's label goes: the first free spot right of the dot, left of it, or lines away."""
    right, left = cx + r + 3, cx - r - 3 - _width(text)
    tries = [(right, cy + 4), (left, cy + 4)]
    for step in range(1, 12):
        for sign in (1, -1):
            tries += [(right, cy + 4 + sign * 15 * step), (left, cy + 4 + sign * 15 * step)]
    for x, y in tries:
        box = _box(x, y, text)
        inside = area[0] <= box[0] and box[2] <= area[2] and area[1] <= box[1] and box[3] <= area[3]
        if inside and not any(_overlap(box, other) for other in taken):
            return x, y
    return tries[0]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 steps between two log10 bounds (a narrow range still gets a few labels)."""
    ticks = []
    mantissas = (1, 2, 5) if hi - lo < 2 else (1,)  # wide ranges: powers of ten only
    for exponent in range(math.floor(lo), math.ceil(hi) + 1):
        for mantissa in mantissas:
            value = mantissa * 10.0**exponent
            if lo <= math.log10(value) <= hi:
                ticks.append(value)
    return ticks


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 0.5:
        mid = (hi + lo) / 2
        return mid - 0.5, mid + 0.5
    margin = (hi - lo) * 0.12
    return lo - margin, hi + margin
