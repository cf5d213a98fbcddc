"""``packager inspect``: what a model is, and which targets can take it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from packager import importers, weights
from packager.errors import PackagerError
from packager.plugins import load_target, target_names
from packager.spec import Preprocessing


def inspect_model(model: str) -> dict[str, Any]:
    source = importers.detect(model)
    with tempfile.TemporaryDirectory(prefix="packager-inspect-") as tmp:
        work = Path(tmp)
        imported = importers.run_importer(source, work)
        proto = importers.canonicalize(imported, Preprocessing(), Path(source.location).name)
        spec = importers.build_spec(source=source, imported=imported, model=proto, onnx_path=work / "model.onnx",
                                    name=importers.default_name(source), version="1", prep=Preprocessing(),
                                    labels=None)  # fmt: skip
        params = parameter_count(proto)
        onnx_bytes = spec.onnx_path.stat().st_size
        opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
        targets = {name: _verdict(name, spec) for name in target_names()}
    return {
        "model": model, "format": source.format, "sha256": source.sha256, "name": spec.name,
        "signature": spec.signature.to_json(), "labels": list(spec.labels or []), "task": spec.task,
        "ops": spec.ops, "opsets": opsets, "parameters": params, "onnx_bytes": onnx_bytes,
        "targets": targets,
    }  # fmt: skip


def parameter_count(model: Any) -> int:
    """Weights wherever the model keeps them (packager.weights): initializers, Constant nodes,
    ai.onnx.ml attributes (a tree ensemble's thresholds and leaves), subgraphs included."""
    return weights.of_model(model).count


def _verdict(name: str, spec: Any) -> str:
    try:
        target = load_target(name)
        if spec.source_format not in target.accepts:
            return f"no: takes {', '.join(sorted(target.accepts))} models"
        target.check(spec)
    except PackagerError as exc:
        return f"no: {exc.one_line()}"
    return "yes"


def render(info: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]{escape(info['model'])}[/] ({info['format']}), sha256 {info['sha256'][:16]}…")
    console.print(f"parameters: {info['parameters']:,}   canonical ONNX: {info['onnx_bytes']:,} B   "
                  f"opsets: {', '.join(f'{k} {v}' for k, v in info['opsets'].items())}")  # fmt: skip
    if info["task"]:
        console.print(f"task: {info['task']}" + (f" ({len(info['labels'])} labels)" if info["labels"] else ""))
    sig = Table(title="signature", box=None, header_style="bold", title_justify="left")
    for col in ("", "name", "dtype", "shape"):
        sig.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in info["signature"][kind]:
            sig.add_row(kind[:-1], escape(t["name"]), t["dtype"], escape("[" + ", ".join(map(str, t["shape"])) + "]"))
    console.print(sig)
    console.print("ops: " + ", ".join(f"{op}×{n}" for op, n in info["ops"].items()))
    tgt = Table(title="targets", box=None, header_style="bold", title_justify="left")
    tgt.add_column("target")
    tgt.add_column("can take it")
    for name, verdict in info["targets"].items():
        tgt.add_row(name, escape(verdict))
    console.print(tgt)
