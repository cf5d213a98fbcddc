"""Batch axes: found from the dims the inputs share, used to cut samples and join outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import models

from packager import batching, samples
from packager.errors import SamplesError
from packager.importers import onnx as onnx_importer
from packager.spec import Signature, TensorSpec

STATE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 4)),
            TensorSpec(name="state", dtype="float32", shape=(2, "batch", 3)),
            TensorSpec(name="sr", dtype="int64", shape=())),
    outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", 3)),
             TensorSpec(name="stateN", dtype="float32", shape=(2, "batch", 3))),
)  # fmt: skip


def test_batching_axes_of_a_streaming_signature() -> None:
    assert [t.batch_axis for t in STATE.inputs] == [0, 1, None]
    assert [t.concrete(5) for t in STATE.inputs] == [(5, 4), (2, 5, 3), ()]
    assert not batching.axis_zero(STATE.inputs)


def test_batching_take_cuts_each_input_on_its_axis() -> None:
    arrays = {"x": np.zeros((6, 4)), "state": np.arange(36.0).reshape(2, 6, 3), "sr": np.array(16000)}
    one = batching.take(arrays, STATE.inputs, 2, 3)
    assert one["x"].shape == (1, 4) and one["state"].shape == (2, 1, 3) and one["sr"].shape == ()
    assert np.array_equal(one["state"][:, 0], arrays["state"][:, 2])
    assert batching.count(arrays, STATE.inputs) == 6


def test_batching_join_is_the_inverse_of_take() -> None:
    outputs = {"y": np.arange(18.0).reshape(6, 3), "stateN": np.arange(36.0).reshape(2, 6, 3)}
    parts = [batching.take(outputs, STATE.outputs, i, i + 2) for i in range(0, 6, 2)]
    joined = batching.join(parts, STATE.outputs)
    assert all(np.array_equal(joined[k], outputs[k]) for k in outputs)


def test_batching_importer_finds_the_shared_symbol(model_dir: Path) -> None:
    model = onnx.load(str(models.make_onnx_streaming(model_dir)))
    for value in model.graph.input:  # as another exporter might name them
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == "batch":
                dim.dim_param = "N"
    onnx_importer.name_batch_dim(model)
    sig = onnx_importer.signature(model)
    assert [t.shape for t in sig.inputs] == [("batch", 4), (2, "batch", 3), ()]
    assert sig.state_pairs() == [{"input": "state", "output": "stateN"}]


def test_batching_samples_store_an_unbatched_input_once(model_dir: Path, tmp_path: Path) -> None:
    loaded = samples.load(models.streaming_samples(tmp_path / "s.npz"), STATE)
    assert loaded["sr"].shape == () and batching.count(loaded, STATE.inputs) == 24
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 4), np.float32), state=np.zeros((2, 4, 3), np.float32),
             sr=np.array(8000))  # fmt: skip
    with pytest.raises(SamplesError, match=r"same, non-zero batch \('x' axis 0: 5, 'state' axis 1: 4\)"):
        samples.load(tmp_path / "bad.npz", STATE)
