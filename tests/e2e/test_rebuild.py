"""An unchanged rebuild keeps the build in --out; any change to what decides it builds again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli

from packager import rebuild

UP_TO_DATE = "up to date"


def _build(model: Path, samples: Path, out: Path, *extra: str | Path) -> tuple[str, dict]:
    result = run_cli("build", model, "--target", "onnx", "--precision", "fp32", "--samples", samples,
                     "--out", out, "--no-latency", *extra)  # fmt: skip
    assert result.code == 0, result.err
    return result.err, json.loads((out / model.stem / "1" / "build.json").read_text())


@pytest.fixture
def first(tmp_path: Path, mlp_onnx: Path, mlp_samples: Path) -> tuple[Path, Path, Path, dict]:
    model, samples = tmp_path / "mlp.onnx", tmp_path / "samples.npz"
    shutil.copy(mlp_onnx, model)
    shutil.copy(mlp_samples, samples)
    err, record = _build(model, samples, tmp_path / "dist")
    assert UP_TO_DATE not in err
    assert len(record["inputs"]["fingerprint"]) == 64
    return model, samples, tmp_path / "dist", record


def test_rebuild_unchanged_keeps_the_build_and_runs_nothing(first: tuple[Path, Path, Path, dict]) -> None:
    model, samples, out, record = first
    vdir = out / "mlp" / "1"
    before = {p: p.stat().st_mtime_ns for p in vdir.rglob("*")}
    err, again = _build(model, samples, out)
    assert UP_TO_DATE in err and "--force rebuilds" in err
    assert again == record
    assert {p: p.stat().st_mtime_ns for p in vdir.rglob("*")} == before  # nothing rewritten
    assert sorted(p.name for p in out.iterdir()) == ["mlp"]


@pytest.mark.parametrize("change", ["samples", "model", "settings", "force", "tampered", "removed"])
def test_rebuild_any_change_builds_again(first: tuple[Path, Path, Path, dict], change: str) -> None:
    model, samples, out, record = first
    extra: list[str] = []
    if change == "samples":
        data = dict(np.load(samples))
        np.savez(samples, **{k: v[:50] for k, v in data.items()})
    elif change == "model":
        proto = onnx.load(str(model))
        proto.doc_string = "retrained"
        onnx.save(proto, str(model))
    elif change == "settings":
        extra = ["--set", "onnx.optimization=extended"]
    if change in ("samples", "model", "settings"):  # another build of this version: replaced on request
        refused = run_cli("build", model, "--target", "onnx", "--precision", "fp32", "--samples", samples,
                          "--out", out, "--no-latency", *extra)  # fmt: skip
        assert refused.code == 5 and "pass --force to replace it" in refused.err, refused.err
        assert json.loads((out / "mlp" / "1" / "build.json").read_text()) == record
        extra.append("--force")
    elif change == "force":
        extra = ["--force"]
    elif change == "tampered":
        main = out / "mlp" / "1" / record["variants"][0]["main_file"]
        main.write_bytes(main.read_bytes() + b"\0")
    elif change == "removed":
        (out / "mlp" / "1" / "validation" / "reference.npz").unlink()
    err, again = _build(model, samples, out, *extra)
    assert UP_TO_DATE not in err
    assert rebuild.tree_digest(out / "mlp" / "1") == again["inputs"]["tree"]
    if change in ("force", "tampered", "removed"):
        assert again["inputs"]["fingerprint"] == record["inputs"]["fingerprint"]
    else:
        assert again["inputs"]["fingerprint"] != record["inputs"]["fingerprint"]


def test_rebuild_external_data_is_part_of_the_inputs(tmp_path: Path, mlp_onnx: Path) -> None:
    model = tmp_path / "big.onnx"
    onnx.save(onnx.load(str(mlp_onnx)), str(model), save_as_external_data=True, location="big.data",
              size_threshold=0)  # fmt: skip
    settings = {"targets": ["onnx"]}
    one = rebuild.fingerprint(source_kind="onnx", source_path=str(model), source_sha256="s", samples=None,
                              settings=settings)  # fmt: skip
    data = tmp_path / "big.data"
    raw = data.read_bytes()
    data.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])
    two = rebuild.fingerprint(source_kind="onnx", source_path=str(model), source_sha256="s", samples=None,
                              settings=settings)  # fmt: skip
    assert one is not None and two is not None and one != two


def test_rebuild_a_factory_model_is_always_built() -> None:
    assert rebuild.fingerprint(source_kind="factory", source_path="pkg.mod:make", source_sha256="s",
                               samples=None, settings={}) is None  # fmt: skip


def test_rebuild_a_partial_build_is_not_kept(tmp_path: Path) -> None:
    vdir = tmp_path / "m" / "1"
    vdir.mkdir(parents=True)
    (vdir / "report.html").write_text("r")
    record = {"inputs": {"fingerprint": "f", "tree": rebuild.tree_digest(vdir)}, "variants": []}
    (vdir / "build.json").write_text(json.dumps(record))
    assert rebuild.up_to_date(vdir, "f") == record
    assert rebuild.up_to_date(vdir, "g") is None
    assert rebuild.up_to_date(vdir, None) is None
    (vdir / "build.json").write_text(json.dumps(record | {"failed": [{"target": "tflite"}]}))
    assert rebuild.up_to_date(vdir, "f") is None
