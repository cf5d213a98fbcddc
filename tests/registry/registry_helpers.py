"""Helpers for the registry tests: copies of a real build under another version."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
from conftest import run_cli


def copy_build(build: Path, into: Path, version: str, edit: Any = None) -> Path:
    """A copy of the build folder ``build`` as ``version`` (build.json's model.version changed).

    ``edit`` (optional) gets the parsed build.json and the new folder, and may change both.
    """
    folder = into / build.parent.name / version
    shutil.copytree(build, folder)
    record = json.loads((folder / "build.json").read_text())
    record["model"]["version"] = version
    if edit is not None:
        edit(record, folder)
    (folder / "build.json").write_text(json.dumps(record, indent=1))
    return folder


def negated(build: Path, into: Path) -> Path:
    """Version 2 of ``build`` whose ONNX variants answer with every output negated: a candidate
    that disagrees with stable on the top-1 class of nearly every sample."""

    def edit(record: dict[str, Any], folder: Path) -> None:
        for variant in record["variants"]:
            for entry in variant["files"]:
                if entry["path"].endswith(".onnx"):
                    data = _negate(folder / entry["path"])
                    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
            variant["bytes"] = sum(f["bytes"] for f in variant["files"])

    return copy_build(build, into, "2", edit)


def _negate(path: Path) -> bytes:
    """Rewrite the ONNX model at ``path`` to negate each of its outputs; its new bytes."""
    model = onnx.load(str(path))
    for out in model.graph.output:
        inner = out.name + "_before_neg"
        for node in model.graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Neg", [inner], [out.name]))
    onnx.save(model, str(path))
    return path.read_bytes()


@pytest.fixture(scope="session")
def build_with_failed_int8(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    """A real onnx build whose int8 variants fail validation (a tolerance nothing int8 meets)."""
    root = tmp_path_factory.mktemp("strict")
    config = root / "packager.toml"
    config.write_text("[tolerance.int8]\natol = 1e-9\nrtol = 0.0\n")
    out = root / "dist"
    result = run_cli(
        "build", mlp_onnx, "-t", "onnx", "--samples", mlp_samples, "--out", out, "--config", config, "--no-latency"
    )
    assert result.code == 0, result.err
    return out / "mlp" / "1"
