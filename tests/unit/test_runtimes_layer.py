"""One runtime layer: every runner a target validates with, and every runner the device client
loads, is a class of ``packager/runtimes/``; none is defined anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _runner_classes(folder: Path) -> list[str]:
    """Classes under ``folder`` that run a model: a ``predict`` method, and a ``runtime_label``
    they set (a class attribute, or ``self.runtime_label = ...``)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            labels = any(isinstance(t, ast.Attribute | ast.Name) and getattr(t, "attr", getattr(t, "id", "")) ==
                         "runtime_label" for n in ast.walk(node) if isinstance(n, ast.Assign | ast.AnnAssign)
                         for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))  # fmt: skip
            if "predict" in methods and labels:
                found.append(f"{path.relative_to(ROOT)}:{node.name}")
    return found


def test_runtimes_layer_holds_every_runner() -> None:
    assert _runner_classes(ROOT / "targets") == []
    outside = [e for e in _runner_classes(ROOT / "packager") if not e.startswith("packager/runtimes/")]
    assert outside == []
    inside = _runner_classes(ROOT / "packager" / "runtimes")
    assert {entry.rsplit(":", 1)[1] for entry in inside} >= {"OrtRunner", "LiteRunner", "CRunner", "EmulatedRunner",
                                                              "BrowserRunner", "LambdaRunner"}  # fmt: skip


def test_runtimes_layer_is_what_targets_and_the_client_import() -> None:
    """Targets and the client name their runners by importing them from packager.runtimes."""
    for folder in (ROOT / "targets", ROOT / "packager" / "client"):
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and any(a.name.endswith("Runner") for a in node.names):
                    assert (node.module or "").startswith("packager.runtimes"), f"{path.name}: from {node.module}"
