"""bench/build_overhead.py runs end to end on a small model (the demo's run is the bench's own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_build_overhead_bench_times_cold_bare_and_warm(mlp_onnx: Path, mlp_samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "build_overhead.py"), str(mlp_onnx), "--samples", str(mlp_samples),
         "--target", "onnx", "--cwd", str(tmp_path), "--out", str(out), "--rounds", "1"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["variants"] == 5 and set(result["seconds"]) == {"cold", "bare", "warm"}
    assert all(v > 0 for v in result["seconds"].values())
    # every bare call is a step packager ran too, timed on its progress line
    steps = result["steps"]
    assert "onnx/onnx-fp32" in steps and all(s["packager"] is not None for k, s in steps.items() if k != "import")
