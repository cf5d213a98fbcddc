"""Telemetry events on the wire (packager/server/telemetry.py): the fleet's fields are optional,
typed and bounded; an older client's events stay valid."""

from __future__ import annotations

from typing import Any

import pytest

from packager.errors import ServiceError
from packager.server.telemetry import check_event

BASE = {"event": "load", "model": "mlp", "version": "1", "variant": "onnx-fp32"}


@pytest.mark.parametrize("event", [
    BASE,  # an older client's load: no "ok"
    {**BASE, "ok": False, "detail": "the library did not load"},
    {**BASE, "event": "shadow", "agree": True, "diff": 0.0012, "ms": 3.1},
    {**BASE, "event": "feedback", "reward": -0.5},
    {**BASE, "event": "inputs", "bins": {"pixels": [0, 3, 9, 1], "age": [5] * 64}},
])  # fmt: skip
def test_telemetry_event_takes_the_fleet_fields(event: dict[str, Any]) -> None:
    assert check_event(event, 0) == event


@pytest.mark.parametrize(("field", "value"), [
    ("ok", "yes"), ("ok", 1), ("agree", None), ("reward", True), ("reward", float("nan")), ("reward", 1e16),
    ("diff", -1), ("bins", []), ("bins", {}), ("bins", {"x": []}), ("bins", {"x": [1.5]}), ("bins", {"x": [-1]}),
    ("bins", {"x": [True]}), ("bins", {"x": [0] * 65}), ("bins", {"": [1]}), ("bins", {"é": [1]}),
    ("bins", {f"f{i}": [1] for i in range(257)}),
])  # fmt: skip
def test_telemetry_event_refuses_a_wrong_fleet_field(field: str, value: Any) -> None:
    with pytest.raises(ServiceError) as caught:
        check_event({**BASE, field: value}, 3)
    assert caught.value.status == 422 and f"events[3].{field}" in caught.value.message
