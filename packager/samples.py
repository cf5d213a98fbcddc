"""Sample inputs for validation and calibration: read from ``--samples`` or generated."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from packager.errors import SamplesError, did_you_mean, first_line
from packager.spec import Signature, TensorSpec

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def check_shapes(wanted: Mapping[str, tuple[int, ...]], signature: Signature) -> dict[str, tuple[int, ...]]:
    """``--input-shape`` values checked against the signature: a known input, its rank, its
    fixed dims. Returned as one sample's shape (the batch axis 1)."""
    by_name = {t.name: t for t in signature.inputs}
    fixed: dict[str, tuple[int, ...]] = {}
    for name, dims in wanted.items():
        if name not in by_name:
            raise SamplesError(f"--input-shape {name}=…: the model has no input '{name}'{did_you_mean(name, by_name)}",
                               hint=f"its inputs: {', '.join(by_name)}")  # fmt: skip
        spec = by_name[name]
        ok = len(dims) == len(spec.shape) and all(
            d > 0 and (isinstance(s, str) or s == d) for d, s in zip(dims, spec.shape, strict=True)
        )
        if not ok:
            raise SamplesError(
                f"--input-shape {name}={','.join(map(str, dims))} does not fit the input's {_shape_text(spec.shape)}",
                hint="give every dim, the model's fixed ones as they are",
            )
        axis = spec.batch_axis
        fixed[name] = tuple(1 if i == axis else d for i, d in enumerate(dims))
    return fixed


def generate(signature: Signature, count: int, seed: int,
             shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Deterministic inputs from the signature (dims from ``shapes`` where given): standard normal
    floats, small integers."""
    rng = np.random.default_rng(seed)
    samples: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = spec.concrete(count)
        if shapes and spec.name in shapes:
            axis = spec.batch_axis
            shape = tuple(count if i == axis else d for i, d in enumerate(shapes[spec.name]))
        dtype = np.dtype(spec.dtype) if spec.dtype != "string" else None
        if dtype is None:
            raise SamplesError(f"input '{spec.name}' is a string tensor; pass --samples FILE.npz")
        if np.issubdtype(dtype, np.floating):
            samples[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif np.issubdtype(dtype, np.bool_):
            samples[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            samples[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return samples


def check_exists(path: Path) -> None:
    if not path.is_file():
        raise SamplesError(
            f"samples file '{path}' does not exist",
            hint="pass --samples a .npz made with numpy.savez(path, <input name>=array), or omit it",
        )


def load(path: Path, signature: Signature,
         shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Read an .npz and check it against the signature; every mismatch is one clear line."""
    check_exists(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SamplesError(
            f"samples file '{path.name}' is not a readable .npz: {exc}",
            hint="write it with numpy.savez(path, <input name>=array)",
        ) from exc
    names = [t.name for t in signature.inputs]
    if len(names) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise SamplesError(
            f"samples file '{path.name}' has no array for input(s) {', '.join(missing)} "
            f"(it has: {', '.join(arrays) or 'nothing'})",
            hint="name each array after the model input it feeds",
        )
    samples = {t.name: _conform(arrays[t.name], t, path.name) for t in signature.inputs}
    batched = [t for t in signature.inputs if t.batch_axis is not None]
    counts = {samples[t.name].shape[t.batch_axis] for t in batched if t.batch_axis is not None}
    if len(counts) > 1 or 0 in counts:
        where = ", ".join(
            f"'{t.name}' axis {t.batch_axis}: {samples[t.name].shape[t.batch_axis or 0]}" for t in batched
        )
        raise SamplesError(
            f"samples in '{path.name}' must all have the same, non-zero batch ({where})",
            hint="an input without a batch dim (a scalar, say) is stored once, for every sample",
        )
    for name, dims in (shapes or {}).items():
        spec = next(t for t in signature.inputs if t.name == name)
        got = tuple(1 if i == spec.batch_axis else d for i, d in enumerate(samples[name].shape))
        if got != dims:
            raise SamplesError(
                f"samples '{name}' in '{path.name}' have shape {samples[name].shape}; "
                f"--input-shape asks for {list(dims)}",
                hint="pass samples of that shape, or drop --input-shape",
            )
    return samples


def _conform(array: np.ndarray, spec: TensorSpec, source: str) -> np.ndarray:
    want = _shape_text(spec.shape)
    ok = array.ndim == len(spec.shape) and all(
        isinstance(d, str) or d == s for d, s in zip(spec.shape, array.shape, strict=True)
    )
    if not ok:
        raise SamplesError(
            f"samples '{spec.name}' in '{source}' have shape {tuple(array.shape)}; "
            f"the model's input '{spec.name}' takes {want}",
            hint="reshape the samples to the input's shape (the batch where the input has it; "
            "an input without a batch dim is stored once)",
        )
    target = np.dtype(spec.dtype)
    if array.dtype != target and not np.can_cast(array.dtype, target, casting="same_kind"):
        raise SamplesError(f"samples '{spec.name}' in '{source}' are {array.dtype}; the input takes {target}")
    return np.require(array.astype(target, copy=False), requirements="C")  # keeps a 0-d array 0-d


def _shape_text(shape: tuple[int | str, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz with fixed entry times and order, so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.require(arrays[name], requirements="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a .npz packager wrote; a file that is not one is a SamplesError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile, zlib and numpy each have their own
        raise SamplesError(f"{path.name} is not a readable .npz: {type(exc).__name__}: {first_line(exc)}") from exc
