"""Device telemetry, best-effort: a bounded queue of events posted to ``/v1/telemetry``.

Nothing here raises to the caller: a post that fails (server down, refused, slow) is logged at
debug level and its events dropped. Predictions are sampled: per flush, at most ``SAMPLED`` calls
drawn uniformly from those made since the last one go out as ``predict`` events with their own
latency (the first also says how many calls there were), so a tight predict loop neither grows
the queue nor floods the server, and the fleet's latency percentiles are those of real calls.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger("packager.client")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
SAMPLED = 16  # predict events per flush, at most


class Telemetry:
    def __init__(self, http: httpx.Client, *, model: str, device_id: str, queue: int, batch: int,
                 seconds: float) -> None:  # fmt: skip
        self.http = http
        self.base = {"model": model, "device_id": device_id[:128]}
        self.events: deque[dict[str, Any]] = deque(maxlen=queue)
        self.batch = batch
        self.seconds = seconds
        self._lock = threading.Lock()
        self._predicts: list[float] = []  # a uniform sample of the calls since the last fold
        self._calls = 0
        self._slowest = 0.0
        self._predict_fields: dict[str, Any] = {}
        self._random = random.Random()

    def record(self, event: str, **fields: Any) -> None:
        entry = {**self.base, "event": event, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        for key, value in fields.items():
            if value is None:
                continue
            entry[key] = _PRINTABLE.sub("?", value)[:256] if key == "detail" else value
        with self._lock:
            self.events.append(entry)

    def predicted(self, ms: float, **fields: Any) -> None:
        with self._lock:
            self._calls += 1
            self._slowest = max(self._slowest, ms)
            self._predict_fields = fields
            if len(self._predicts) < SAMPLED:  # reservoir sampling: every call equally likely kept
                self._predicts.append(ms)
            else:
                slot = self._random.randrange(self._calls)
                if slot < SAMPLED:
                    self._predicts[slot] = ms

    def _fold(self) -> None:
        """Turn the sampled predictions into events (call with the lock held)."""
        if not self._calls:
            return
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        times = sorted(self._predicts)
        detail = f"n={self._calls} sampled={len(times)} p50={times[len(times) // 2]:.4g}ms max={self._slowest:.4g}ms"
        for index, ms in enumerate(self._predicts):
            entry = {**self.base, **self._predict_fields, "event": "predict", "ms": ms, "at": at,
                     "detail": detail if index == 0 else None}  # fmt: skip
            self.events.append({k: v for k, v in entry.items() if v is not None})
        self._predicts, self._calls, self._slowest = [], 0, 0.0

    def flush(self) -> int:
        """Post what is queued; returns how many events the server accepted. Never raises."""
        with self._lock:
            self._fold()
            pending = list(self.events)
            self.events.clear()
        sent = 0
        for i in range(0, len(pending), self.batch):
            chunk = pending[i : i + self.batch]
            try:
                response = self.http.post("/v1/telemetry", json={"events": chunk}, timeout=self.seconds)
            except Exception as exc:  # best-effort: never the caller's problem
                log.debug("telemetry not sent (%d events dropped): %s", len(pending) - sent, exc)
                return sent
            if response.status_code >= 300:
                log.debug("telemetry refused (%s): %s", response.status_code, response.text[:200])
                continue
            sent += len(chunk)
        return sent
