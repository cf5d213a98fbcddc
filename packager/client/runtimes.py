"""Loading an installed variant in its runtime, through ``packager.runtimes``: the runners the
build validated it with (onnxruntime, LiteRT, the C library through ctypes), so a device runs a
variant exactly as it was checked. Each runtime is imported only when a variant of it is loaded.

Installed files are content-addressed (named by their sha256), so loaders get each file's
original name beside its path: onnxruntime is told the ORT format explicitly, and the C
library's symbol prefix comes from its name (``libmlp.so`` -> ``mlp_run``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packager.errors import LoadError
from packager.runtimes import InputSpec, Runner, RuntimeUnavailable
from packager.runtimes.c import CRunner, prefix_of
from packager.runtimes.ort import OrtRunner
from packager.runtimes.tflite import LiteRunner

__all__ = ["Files", "InputSpec", "Runner", "c_prefix", "load"]


@dataclass(frozen=True, kw_only=True)
class Files:
    """An installed variant: its main file and the sidecars its runtime reads, by original name."""

    main: str  # the main file's path in the build (e.g. onnx/onnx-fp32/model.onnx)
    paths: Mapping[str, Path]  # original path -> installed path

    def main_path(self) -> Path:
        return self.paths[self.main]

    def sidecar(self, name: str) -> Path:
        for original, path in self.paths.items():
            if PurePosixPath(original).name == name:
                return path
        raise LoadError(f"the variant has no {name} beside {self.main}")


def c_prefix(main: str) -> str:
    """The C library's symbol prefix from its file name: ``libmlp.so`` -> ``mlp``."""
    try:
        return prefix_of(main)
    except ValueError as exc:
        raise LoadError(str(exc)) from exc


def _ort(files: Files) -> Runner:
    return OrtRunner(files.main_path(), threads=None, ort_format=files.main.endswith(".ort"))


def _tflite(files: Files) -> Runner:
    return LiteRunner(files.main_path(), json.loads(files.sidecar("layout.json").read_text()))


def _c(files: Files) -> Runner:
    prefix = c_prefix(files.main)
    return CRunner(files.main_path(), files.sidecar(f"{prefix}.h").read_text(), prefix)


LOADERS: dict[str, Callable[[Files], Runner]] = {"onnxruntime": _ort, "tflite": _tflite, "c": _c}


def load(runtime: str, files: Files) -> Runner:
    """The variant in ``runtime``; LoadError (with the runtime's own message) when it cannot be."""
    if runtime not in LOADERS:
        raise LoadError(f"this client cannot run {runtime!r} variants (it runs {', '.join(LOADERS)})")
    try:
        return LOADERS[runtime](files)
    except LoadError:
        raise
    except (ImportError, RuntimeUnavailable) as exc:
        raise LoadError(f"the {runtime} runtime is not available here: {exc}") from exc
    except Exception as exc:  # runtimes raise their own types (Fail, RuntimeError, OSError...)
        raise LoadError(f"{runtime} could not load {files.main}: {type(exc).__name__}: {exc}"[:600]) from exc
