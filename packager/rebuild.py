"""An unchanged rebuild: when the build already in ``--out`` came from the same inputs, keep it.

A build is a function of its inputs: the model's bytes (with an ONNX model's external data), the
samples file, the settings (command line, config, ``PACKAGER_*``), packager's own code, every
installed distribution's version, the C compiler and the Python that runs it. Their digest is the
build's ``inputs.fingerprint`` in ``build.json``. A later build with the same fingerprint, whose
earlier output is complete (no failed target) and intact (``inputs.tree``, the digest of every file
it wrote, still matches), is up to date: nothing is imported, converted or run again, as ``make``
and Bazel skip an action whose inputs did not change. ``--force`` rebuilds anyway.

A ``module:factory`` model is always rebuilt: the code behind the reference can change while the
reference stays the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from packager.output import file_sha256

SKIP_IN_TREE = ("build.json", "report.html")  # written after the tree digest (they hold it)
CODE_PACKAGES = ("packager", "targets", "handlers")


def fingerprint(*, source_kind: str, source_path: str, source_sha256: str, samples: Path | None,
                settings: Mapping[str, Any]) -> str | None:  # fmt: skip
    """The digest of everything that decides a build, or None when it cannot be known (a factory)."""
    if source_kind == "factory":
        return None
    parts = {
        "source": source_sha256,
        "external_data": _external_data(Path(source_path)) if source_kind == "onnx" else {},
        "samples": file_sha256(samples) if samples is not None else None,
        "settings": settings,
        "code": _code_digest(),
        "distributions": _distributions(),
        "compiler": _compiler(),
        "python": [sys.version, platform.machine()],
    }
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def tree_digest(vdir: Path) -> str:
    """The digest of every file of a version folder but build.json and report.html."""
    digest = hashlib.sha256()
    for path in sorted(p for p in vdir.rglob("*") if p.is_file()):
        rel = path.relative_to(vdir).as_posix()
        if rel in SKIP_IN_TREE:
            continue
        digest.update(rel.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def up_to_date(vdir: Path, wanted: str | None) -> dict[str, Any] | None:
    """The record of the build in ``vdir`` when it came from ``wanted`` and is whole; else None."""
    if wanted is None:
        return None
    try:
        record = json.loads((vdir / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    inputs = record.get("inputs") if isinstance(record, dict) else None
    if not isinstance(inputs, dict) or inputs.get("fingerprint") != wanted or record.get("failed"):
        return None
    if not (vdir / "report.html").is_file() or inputs.get("tree") != tree_digest(vdir):
        return None  # something in it was changed or removed since: build it again
    return record


def _external_data(path: Path) -> dict[str, str]:
    """The sha256 of each file an ONNX model keeps its tensors in (relative to the model)."""
    try:
        if b"location" not in path.read_bytes():  # every external tensor names its file under this key
            return {}
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # an unreadable model: the importer says so; the digest just misses it
        return {}
    found: dict[str, str] = {}
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        file = path.parent / location
        if location and location not in found:
            found[location] = file_sha256(file) if file.is_file() else "missing"
    return found


def _tensors(graph: Any) -> Any:
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _code_digest() -> str:
    """packager's own code and templates: an edit in a development install changes the build."""
    import packager

    root = Path(packager.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    folders = [root / name for name in CODE_PACKAGES] + [root / "templates"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _distributions() -> list[str]:
    """Every installed distribution and its version: converters, runtimes, plugins."""
    return sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]})


def _compiler() -> list[str]:
    """Which C compilers static-lib would find, by path, size and modification time."""
    found = []
    for name in ("cc", "gcc", os.environ.get("CC", "")):
        path = shutil.which(name) if name else None
        if path:
            real = Path(path).resolve()
            stat = real.stat()
            found.append(f"{name}={real}:{stat.st_size}:{int(stat.st_mtime)}")
    return found
