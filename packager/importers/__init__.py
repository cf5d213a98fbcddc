"""Importers: any supported model file -> canonical ONNX + ModelSpec.

Formats: ``.onnx``; PyTorch ``.pt2`` and ``package.module:factory``; Keras ``.keras`` and
SavedModel folders; scikit-learn ``.joblib``/``.pkl``. The original is kept beside the ONNX so
that a target may convert from it when that path is better.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.errors import ModelInputError, first_line
from packager.importers import onnx as onnx_importer
from packager.importers.base import Imported
from packager.output import file_sha256
from packager.spec import ModelSpec, Preprocessing

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SUFFIXES = {".onnx": "onnx", ".pt2": "torch", ".keras": "keras", ".joblib": "sklearn", ".pkl": "sklearn"}


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a model comes from: its format, its path (or factory reference) and its hash."""

    format: str
    kind: str
    location: str
    sha256: str


def detect(model: str) -> Source:
    """Decide the format from the path (or a ``module:factory`` reference)."""
    path = Path(model)
    if not path.exists():
        if FACTORY.match(model):
            digest = hashlib.sha256(model.encode()).hexdigest()
            return Source(format="torch", kind="factory", location=model, sha256=digest)
        raise ModelInputError(
            f"model '{model}' does not exist",
            hint="pass a .onnx, .pt2, .keras, .joblib/.pkl file, a SavedModel folder, or module:factory",
        )
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return Source(format="keras", kind="savedmodel", location=str(path), sha256=_tree_sha(path))
        raise ModelInputError(f"folder '{model}' is not a SavedModel (no saved_model.pb in it)")
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ModelInputError(
            f"cannot tell the format of '{path.name}' from its suffix '{path.suffix}'",
            hint=f"supported suffixes: {', '.join(SUFFIXES)}; or a SavedModel folder",
        )
    return Source(format=fmt, kind=path.suffix.lower().lstrip("."), location=str(path), sha256=file_sha256(path))


def run_importer(source: Source, workdir: Path) -> Imported:
    """Import to ONNX; heavy frameworks are imported only here, for the format asked."""
    path = Path(source.location)
    if source.kind == "onnx":
        return Imported(model=onnx_importer.load(path), original=None, reference=None, reference_runtime="")
    if source.kind == "factory":
        from packager.importers.torch import import_factory

        return import_factory(source.location, workdir)
    if source.kind == "pt2":
        from packager.importers.torch import import_pt2

        return import_pt2(path, workdir)
    if source.kind == "keras":
        from packager.importers.keras import import_keras

        return import_keras(path, workdir)
    if source.kind == "savedmodel":
        from packager.importers.keras import import_saved_model

        return import_saved_model(path, workdir)
    from packager.importers.sklearn import import_sklearn

    return import_sklearn(path, workdir)


@dataclass(frozen=True, kw_only=True)
class Kept:
    """What the worker sends back of an import: the ONNX model as bytes, the rest as it is. The
    imported model itself stays in the worker for ``reference_kept``."""

    model: bytes
    original: Path | None
    has_reference: bool
    reference_runtime: str
    labels: tuple[str, ...] | None
    task: str | None


_KEPT: dict[str, Imported] = {}  # in the worker: the last import, by the source's sha256


def import_kept(source: Source, workdir: Path) -> Kept:
    """``run_importer`` in the worker process (pipeline._import_model sends it there)."""
    imported = run_importer(source, workdir)
    _KEPT.clear()
    _KEPT[source.sha256] = imported
    return Kept(model=imported.model.SerializeToString(), original=imported.original,
                has_reference=imported.reference is not None, reference_runtime=imported.reference_runtime,
                labels=imported.labels, task=imported.task)  # fmt: skip


def reference_kept(key: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The kept import's source model run on ``inputs``, in the worker."""
    reference = _KEPT[key].reference
    assert reference is not None
    return [np.asarray(out) for out in reference(inputs)]


def canonicalize(imported: Imported, prep: Preprocessing, label: str):  # -> onnx.ModelProto
    """Name the batch dim, fold preprocessing, check the result."""
    model = imported.model
    onnx_importer.name_batch_dim(model)
    onnx_importer.fold_preprocessing(model, prep)
    onnx_importer.check(model, label)
    return model


def build_spec(*, source: Source, imported: Imported, model, onnx_path: Path, name: str,
               version: str, prep: Preprocessing, labels: tuple[str, ...] | None) -> ModelSpec:  # fmt: skip
    import onnx

    onnx.save(model, str(onnx_path))
    signature = onnx_importer.signature(model)
    return ModelSpec(
        name=name,
        version=version,
        source_format=source.format,
        source_path=Path(source.location),
        source_sha256=source.sha256,
        onnx_path=onnx_path,
        original_path=imported.original,
        signature=signature,
        labels=labels or imported.labels,
        task=imported.task,
        preprocessing=prep,
        reference_runtime=imported.reference_runtime,
        ops=onnx_importer.op_histogram(model),
    )


def reference_outputs(spec: ModelSpec, imported: Imported) -> tuple[dict[str, np.ndarray], str]:
    """The source model's outputs on the samples: in its own framework where there is one."""
    names = [t.name for t in spec.signature.outputs]
    raw = [spec.samples[t.name] for t in spec.signature.inputs]
    if imported.reference is not None:
        inputs = [spec.preprocessing.apply(x) if not spec.preprocessing.empty else x for x in raw]
        outs = imported.reference(inputs)
        if len(outs) != len(names):
            raise ModelInputError(f"the source model returns {len(outs)} outputs but its ONNX form has {len(names)}")
        return dict(zip(names, outs, strict=True)), imported.reference_runtime
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(spec.onnx_path), options, providers=["CPUExecutionProvider"])
        outs = session.run(names, dict(zip((t.name for t in spec.signature.inputs), raw, strict=True)))
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelInputError(
            f"cannot run the source model in onnxruntime to get reference outputs: {first_line(exc)}",
            hint="packager compares every variant with the source; the source must run here",
        ) from exc
    return dict(zip(names, outs, strict=True)), f"onnxruntime {ort.__version__} (unoptimized source graph)"


def default_name(source: Source) -> str:
    if source.kind == "factory":
        base = source.location.split(":")[1]
    else:
        base = Path(source.location).stem if Path(source.location).is_file() else Path(source.location).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower()
    return cleaned or "model"


def _tree_sha(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
