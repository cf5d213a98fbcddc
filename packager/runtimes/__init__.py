"""One runner per runtime of the shared vocabulary: what the build validates a variant with and
what the device client runs it with are the same classes (``ort``: onnxruntime, ``tflite``:
LiteRT, ``c``: the C library through ctypes, ``c_emulated``: a cross-built one under qemu,
``browser``: tfjs and onnxruntime-web pages in Chromium, ``aws_lambda``: a bundle under
awslambdaric, ``open_inference``: a cloud endpoint over the Open Inference Protocol).

A runner is made from the variant's files (paths, already found: the build reads them from the
variant folder, the client from its content-addressed cache), and has:

- ``runtime_label``: the runtime and its version, as ``build.json`` and telemetry record it;
- ``input_specs``: each input's name, and dtype and shape where the runtime says (None: anything);
- ``predict(inputs) -> outputs`` over whole batches, by the source model's names;
- ``close()``.

Each runtime is imported only when a variant of it is loaded, and raises ``RuntimeUnavailable``
when it is not installed. The browser, emulated and Lambda runners are used by the build's
checks only; a device runs those variants in a browser, on its own CPU or behind an endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class RuntimeUnavailable(Exception):
    """The runtime a variant needs is not here (not installed, another CPU).

    A build records the variant as ``unverified`` with this reason, never as verified; a device
    client cannot load it. ``evidence`` (optional) is what was measured instead, e.g. the graph
    it was converted from.
    """

    def __init__(self, reason: str, *, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.evidence = evidence


@dataclass(frozen=True)
class InputSpec:
    """What a loaded variant takes for one input: None where it takes anything (a symbolic dim,
    or a runtime that does not say)."""

    name: str
    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None


class Runner(Protocol):
    """A loaded variant, running in the runtime a device would use.

    A runner may also have ``details() -> dict``: measurements that go into the variant's
    record as they are (e.g. a Lambda bundle's init time).
    """

    runtime_label: str

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def dims(shape: Any) -> tuple[int | None, ...]:
    """A shape as the runtime reports it, with every dim that is not a positive int as None."""
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape)
