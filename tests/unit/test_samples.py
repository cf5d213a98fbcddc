from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from packager import samples
from packager.errors import SamplesError
from packager.spec import Signature, TensorSpec

SIG = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 1, 8, 8)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", 10)),),
)


def test_generate_is_deterministic_and_follows_signature() -> None:
    a = samples.generate(SIG, 16, seed=3)
    b = samples.generate(SIG, 16, seed=3)
    assert a["x"].shape == (16, 1, 8, 8) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], samples.generate(SIG, 16, seed=4)["x"])


def test_load_accepts_any_key_for_a_single_input(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", whatever=np.zeros((4, 1, 8, 8), np.float64))
    loaded = samples.load(tmp_path / "s.npz", SIG)
    assert loaded["x"].dtype == np.float32 and loaded["x"].shape == (4, 1, 8, 8)


def test_load_wrong_shape_names_both_shapes(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 8, 8), np.float32))
    with pytest.raises(SamplesError, match=r"shape \(4, 8, 8\).*takes \[batch, 1, 8, 8\]"):
        samples.load(tmp_path / "s.npz", SIG)


def test_load_missing_file_is_a_samples_error(tmp_path: Path) -> None:
    with pytest.raises(SamplesError, match="does not exist"):
        samples.load(tmp_path / "nope.npz", SIG)


def test_load_not_an_npz_is_a_samples_error(tmp_path: Path) -> None:
    (tmp_path / "s.npz").write_bytes(b"not a zip at all")
    with pytest.raises(SamplesError, match=r"not a readable \.npz"):
        samples.load(tmp_path / "s.npz", SIG)


def test_load_wrong_dtype_kind_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=np.full((2, 1, 8, 8), "a"))
    with pytest.raises(SamplesError, match="the input takes float32"):
        samples.load(tmp_path / "s.npz", SIG)


def test_save_npz_is_byte_reproducible_and_loadable(tmp_path: Path) -> None:
    arrays = {"b": np.arange(6).reshape(2, 3), "a": np.ones(3, np.float32)}
    samples.save_npz(tmp_path / "1.npz", arrays)
    samples.save_npz(tmp_path / "2.npz", dict(reversed(arrays.items())))
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    loaded = samples.load_npz(tmp_path / "1.npz")
    np.testing.assert_array_equal(loaded["b"], arrays["b"])
    with zipfile.ZipFile(tmp_path / "1.npz") as archive:
        assert archive.namelist() == ["a.npy", "b.npy"]
