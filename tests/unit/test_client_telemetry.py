"""The device client's telemetry queue (packager/client/telemetry.py): predictions go out as a
uniform sample of real calls, bounded per flush."""

from __future__ import annotations

import json
from typing import Any

import httpx

from packager.client.telemetry import SAMPLED, Telemetry


def telemetry() -> tuple[Telemetry, list[dict[str, Any]]]:
    posted: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posted.extend(json.loads(request.content)["events"])
        return httpx.Response(202, json={"accepted": 1})

    http = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://registry.test")
    return Telemetry(http, model="mlp", device_id="d1", queue=1000, batch=100, seconds=5), posted


def test_client_telemetry_sends_a_bounded_sample_of_the_calls() -> None:
    queue, posted = telemetry()
    for i in range(1000):
        queue.predicted(float(i), version="1", variant="onnx-fp32")
    assert queue.flush() == SAMPLED
    assert len(posted) == SAMPLED and all(e["event"] == "predict" and e["version"] == "1" for e in posted)
    times = [e["ms"] for e in posted]
    assert len(set(times)) == SAMPLED and all(t == int(t) and 0 <= t < 1000 for t in times)
    assert max(times) > 100  # drawn from all the calls, not the first SAMPLED
    assert posted[0]["detail"].startswith(f"n=1000 sampled={SAMPLED} ") and "max=999ms" in posted[0]["detail"]
    assert all("detail" not in e for e in posted[1:])


def test_client_telemetry_sends_nothing_more_after_a_flush() -> None:
    queue, posted = telemetry()
    queue.predicted(2.0)
    queue.record("load", ok=False, detail="bad\nline")
    assert queue.flush() == 2 and queue.flush() == 0
    assert [e["event"] for e in posted] == ["load", "predict"] and posted[0]["detail"] == "bad?line"
