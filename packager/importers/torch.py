"""PyTorch: ``.pt2`` exported programs and ``package.module:factory`` callables."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import ConversionError, ModelInputError, first_line, require
from packager.importers.base import Imported, quiet_native_output

OPSET = 18


def import_pt2(path: Path, workdir: Path) -> Imported:
    require("torch", "torch")
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for a bad archive
        raise ModelInputError(
            f"'{path.name}' is not a loadable torch.export program: {first_line(exc)}",
            hint="save it with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')",
        ) from exc
    example = program.example_inputs[0] if program.example_inputs else None
    if not example:
        raise ModelInputError(f"'{path.name}' carries no example inputs to export with")
    kept = workdir / "original.pt2"
    shutil.copyfile(path, kept)
    return _from_program(program, tuple(example), kept)


def import_factory(ref: str, workdir: Path) -> Imported:
    """``pkg.module:factory`` returning ``(model, example_input)``."""
    require("torch", "torch")
    import torch

    module_name, _, attr = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelInputError(
            f"cannot import '{ref}': {first_line(exc)}",
            hint="MODEL is a file path or 'package.module:factory' importable from this folder",
        ) from exc
    made = factory()
    if not (isinstance(made, tuple) and len(made) == 2):
        raise ModelInputError(f"'{ref}' must return (model, example_input), got {type(made).__name__}")
    model, example = made
    example = example if isinstance(example, tuple) else (example,)
    model.eval()
    program = _export(torch, model, example)
    kept = workdir / "original.pt2"
    torch.export.save(program, str(kept))
    return _from_program(program, example, kept)


def _export(torch: Any, model: Any, example: tuple) -> Any:
    """Export with a symbolic batch dim; fall back to static shapes when the model forbids it."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in example)
    try:
        return torch.export.export(model, example, dynamic_shapes=dynamic)
    except Exception:
        try:
            return torch.export.export(model, example)
        except Exception as exc:
            raise ConversionError(f"torch.export failed: {first_line(exc)}") from exc


def _from_program(program: Any, example: tuple, kept: Path) -> Imported:
    import torch

    try:
        with quiet_native_output():
            onnx_program = torch.onnx.export(program, example, dynamo=True, opset_version=OPSET, optimize=True)
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx.export failed: {first_line(exc)}",
            hint="the model has an op the ONNX exporter cannot translate; see its message",
        ) from exc
    if onnx_program is None or onnx_program.model_proto is None:
        raise ConversionError("torch.onnx.export returned no model")
    module = program.module()

    def reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]

    return Imported(
        model=onnx_program.model_proto,
        original=kept,
        reference=reference,
        reference_runtime=f"torch {torch.__version__.split('+')[0]}",
    )
