"""Device telemetry, best-effort: a bounded queue of events posted to ``/v1/telemetry``.

Nothing here raises to the caller: a post that fails (server down, refused, slow) is logged at
debug level and its events dropped. Predictions are summed (count and latency) and sent as one
``predict`` event per flush, so a tight predict loop neither grows the queue nor floods the server.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger("packager.client")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class Telemetry:
    def __init__(self, http: httpx.Client, *, model: str, device_id: str, queue: int, batch: int,
                 seconds: float) -> None:  # fmt: skip
        self.http = http
        self.base = {"model": model, "device_id": device_id[:128]}
        self.events: deque[dict[str, Any]] = deque(maxlen=queue)
        self.batch = batch
        self.seconds = seconds
        self._lock = threading.Lock()
        self._predicts: list[float] = []
        self._predict_fields: dict[str, Any] = {}

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
            self._predicts.append(ms)
            self._predict_fields = fields
            if len(self._predicts) >= 10_000:  # keep memory bounded between flushes
                self._fold()

    def _fold(self) -> None:
        """Turn the predictions summed so far into one event (call with the lock held)."""
        if not self._predicts:
            return
        times = sorted(self._predicts)
        detail = f"n={len(times)} p50={times[len(times) // 2]:.4g}ms max={times[-1]:.4g}ms"
        entry = {**self.base, **self._predict_fields, "event": "predict", "ms": sum(times) / len(times),
                 "detail": detail, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}  # fmt: skip
        self.events.append({k: v for k, v in entry.items() if v is not None})
        self._predicts = []

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
