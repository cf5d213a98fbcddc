"""report.html as a person sees it: the digits demo's 24 variants in Chromium at 1280 px. The
variant table fits the page, and no two labels of the chart (variant names, ticks, axis titles)
cover each other."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from packager.report import render
from packager.tools import browser

ROOT = Path(__file__).resolve().parents[2]

# (id, precision, bytes, max abs err, status, p50 ms): what the demo's --target all build recorded.
DEMO = [
    ("coreml-fp32", "fp32", 308601, None, "unverified", None),
    ("coreml-fp16", "fp16", 161924, None, "unverified", None),
    ("coreml-int8", "int8", 93379, None, "unverified", None),
    ("lambda-container-fp32", "fp32", 172583, 9.537e-06, "verified", 11.13),
    ("lambda-container-int8", "int8", 69709, 0.2541, "verified", 7.464),
    ("lambda-zip-fp32", "fp32", 23557978, 9.537e-06, "verified", 11.76),
    ("lambda-zip-int8", "int8", 23456345, 0.2541, "verified", 11.43),
    ("onnx-fp32", "fp32", 157098, 9.537e-06, "verified", 0.1015),
    ("onnx-ort-fp32", "fp32", 166448, 7.629e-06, "verified", 0.1343),
    ("onnx-fp16", "fp16", 82112, 0.00571, "verified", 0.1094),
    ("onnx-int8-dynamic", "int8", 49662, 0.1691, "verified", 0.1846),
    ("onnx-int8-static", "int8", 54224, 0.2541, "verified", 0.1373),
    ("ort-web-fp32", "fp32", 14474416, 5.722e-06, "verified", 7.75),
    ("ort-web-int8", "int8", 14371542, 0.2541, "verified", 9.202),
    ("static-lib-fp32", "fp32", 950351, 9.537e-06, "verified", 0.07679),
    ("tfjs-fp32", "fp32", 1636043, 9.537e-06, "verified", 22.46),
    ("tfjs-fp16", "fp16", 1560015, 0.004913, "verified", 23.6),
    ("tfjs-uint8", "int8", 1522202, 0.1729, "verified", 22.97),
    ("tflite-fp32", "fp32", 157099, 9.537e-06, "verified", 0.0484),
    ("tflite-fp16", "fp16", 81463, 0.004914, "verified", 0.07088),
    ("tflite-int8-dynamic", "int8", 46055, 0.07107, "verified", 0.07842),
    ("tflite-int8", "int8", 45919, 0.3078, "verified", 0.1246),
    ("triton-fp32", "fp32", 303941, 9.537e-06, "verified", 0.1089),
    ("triton-fp16", "fp16", 158227, 0.00571, "verified", 0.1143),
]  # fmt: skip


def _record() -> dict:
    variants = []
    for vid, precision, size, err, status, p50 in DEMO:
        fidelity: dict = {"status": status, "runtime": "a runtime", "samples": 256}
        if err is None:
            fidelity["reason"] = "Core ML runs only on macOS/iOS; on this Linux host the package's spec was checked"
        else:
            fidelity |= {"max_abs_err": err, "top1_agreement": 1.0}
        variant = {"id": vid, "target": vid.rsplit("-", 1)[0], "precision": precision,
                   "runtime": {"name": "onnxruntime-web", "min_version": "1.22"}, "files": [], "bytes": size,
                   "fidelity": fidelity, "peak_memory_mb": 0.184}  # fmt: skip
        if p50 is not None:
            variant["latency_ms"] = {"p50": p50, "p90": p50 * 1.4, "runs": 200, "host": "x86_64"}
        variants.append(variant)
    return {
        "schema": 1, "packager": "0.1.0",
        "model": {"name": "digits", "version": "1", "source": {"format": "keras", "sha256": "ab" * 32,
                                                                "file": "digits.keras"},
                  "signature": {"inputs": [{"name": "pixels", "dtype": "float32", "shape": ["batch", 8, 8, 1]}],
                                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]}},
        "validation": {"count": 256, "generated": False, "reference_runtime": "tensorflow 2.19.0"},
        "variants": variants,
        "checks": [{"name": "lambda-container-fp32.image_bytes_estimate", "value": 723933387, "limit": 10737418240,
                    "ok": True}],
    }  # fmt: skip


def _overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    def cover(a: dict, b: dict) -> bool:
        return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]

    return [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if cover(a, b)]


def test_report_fits_the_page_and_its_chart_labels_do_not_collide(tmp_path: Path) -> None:
    chromium, node = browser.find_chromium(), shutil.which("node")
    if chromium is None or node is None or browser.node_modules() is None:
        pytest.skip("needs Chromium and Node.js with playwright-core (make setup installs them)")
    page = tmp_path / "report.html"
    page.write_text(render(_record()), encoding="utf-8")
    done = subprocess.run([node, str(ROOT / "tests" / "data" / "report_layout.mjs"), str(page), chromium, "1280"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    layout = json.loads(done.stdout)
    assert layout["scrollWidth"] <= layout["clientWidth"], "the page scrolls sideways"
    content_right = layout["body"]["right"] - 16  # the body's padding
    assert all(t["right"] <= content_right + 0.5 for t in layout["tables"]), (layout["tables"], content_right)
    assert len(layout["labels"]) > 24  # every variant with a measured error, the ticks, the axis titles
    assert _overlaps(layout["labels"]) == []
    text = page.read_text()
    assert "image ≈ 723.9 MB" in text  # the container's row shows what it deploys as, beside its context
