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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packager.errors import OutputError
from packager.output import file_sha256

SKIP_IN_TREE = ("build.json", "report.html")  # written after the tree digest (they hold it)


@dataclass(frozen=True)
class Inputs:
    """``request``: the digest of what the user asked for (the model's bytes, the samples, the
    settings); ``fingerprint``: that and the tools (packager's code, every distribution, the C
    compiler, the Python), None for a model that is code (a factory)."""

    request: str
    fingerprint: str | None


def inputs(*, source_kind: str, source_path: str, source_sha256: str, samples: Path | None,
           settings: Mapping[str, Any]) -> Inputs:  # fmt: skip
    asked = {
        "source": source_sha256,
        "external_data": _external_data(Path(source_path)) if source_kind == "onnx" else {},
        "samples": file_sha256(samples) if samples is not None else None,
        "settings": settings,
    }
    request = _digest(asked)
    if source_kind == "factory":
        return Inputs(request=request, fingerprint=None)
    tools = {
        "code": _code_digest(),
        "distributions": _distributions(),
        "compiler": _compiler(),
        "python": [sys.version, platform.machine()],
    }
    return Inputs(request=request, fingerprint=_digest({"request": request, **tools}))


def fingerprint(*, source_kind: str, source_path: str, source_sha256: str, samples: Path | None,
                settings: Mapping[str, Any]) -> str | None:  # fmt: skip
    """The digest of everything that decides a build, or None when it cannot be known (a factory)."""
    return inputs(source_kind=source_kind, source_path=source_path, source_sha256=source_sha256, samples=samples,
                  settings=settings).fingerprint  # fmt: skip


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_destination(out: Path, name: str, version: str, request: str, *, force: bool) -> str:
    """Refuse, before anything is built, a build that cannot be put in place or that would replace
    another build of this version. A version folder from the same request (only packager or the
    tools changed, or the earlier build was partial or damaged) is rebuilt, and the returned note
    says so; one from another model, samples or settings is replaced only with ``force``."""
    for path in (out, out / name, out / name / version):
        if path.exists() and not path.is_dir():
            raise OutputError(f"'{path}' is a file, where the build's folder {name}/{version} would go",
                              hint="move it away, or pass another --out")  # fmt: skip
    vdir = out / name / version
    if not vdir.is_dir():
        return ""
    try:
        record = json.loads((vdir / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    earlier = record.get("inputs", {}).get("request") if isinstance(record, dict) else None
    if earlier == request:
        return f"rebuilding {name} {version}: the same model, samples and settings; packager or its tools changed"
    if force:
        return f"replacing the earlier build of {name} {version} (--force)"
    if not isinstance(record, dict):
        what = "files that are not a packager build"
    else:
        variants = record.get("variants", [])
        targets = sorted({str(v.get("target")) for v in variants if isinstance(v, dict)})
        built = f"{len(variants)} variants: {', '.join(targets)}"
        if earlier is None:  # written before build.json recorded its request
            what = f"a build by an earlier packager, whose model, samples and settings are not recorded ({built})"
        else:
            what = f"a build from another model, samples or settings ({built})"
    raise OutputError(f"{vdir} already holds {what}; this build would replace it",
                      hint="pass --force to replace it, or --version to build another version")  # fmt: skip


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
    """packager's own code and templates (targets/, handlers/ and templates/ are inside it, linked
    in a checkout): an edit in a development install changes the build."""
    import os

    import packager

    root = Path(packager.__file__).resolve().parent
    digest = hashlib.sha256()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in sorted(names):
            path = Path(folder) / name
            if path.suffix != ".pyc":
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
