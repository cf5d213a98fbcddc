"""Device telemetry, best-effort: a bounded queue of events posted to ``/v1/telemetry``.

Nothing here raises to the caller: a post that fails (server down, refused, slow) is logged at
debug level and its events dropped. Predictions are sampled: per flush, at most ``SAMPLED`` calls
drawn uniformly from those made since the last one go out as ``predict`` events with their own
latency (the first also says how many calls there were), so a tight predict loop neither grows
the queue nor floods the server, and the fleet's latency percentiles are those of real calls.
Shadow runs are sampled the same way (``SAMPLED`` per flush), so their agreement is a uniform
sample of the runs too.
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
        self._random = random.Random()
        self._predicts = _Reservoir(self._random)  # a uniform sample of the calls since the last fold
        self._slowest = 0.0
        self._predict_fields: dict[str, Any] = {}
        self._shadows = _Reservoir(self._random)  # and of the shadow runs
        self._bins: dict[tuple[str, str], dict[str, list[int]]] = {}  # (version, variant) -> summed counts

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
            self._slowest = max(self._slowest, ms)
            self._predict_fields = fields
            self._predicts.add(ms)

    def shadowed(self, ms: float, **fields: Any) -> None:
        """A shadow run: the candidate's ``ms``, stable's ``base_ms``, ``agree`` and ``diff``."""
        with self._lock:
            self._shadows.add({**fields, "ms": ms})

    def counted(self, bins: dict[str, list[int]], *, version: str, variant: str | None) -> None:
        """A sampled call's counts over the reference bins (``packager.fleet.drift.counts``)."""
        from packager.fleet.drift import add

        with self._lock:
            add(self._bins.setdefault((version, variant or ""), {}), bins)

    def _fold(self) -> None:
        """Turn the sampled predictions and shadow runs into events (call with the lock held)."""
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        calls, times = self._predicts.take()
        if calls:
            ordered = sorted(times)
            detail = f"n={calls} sampled={len(times)} p50={ordered[len(times) // 2]:.4g}ms max={self._slowest:.4g}ms"
            for index, ms in enumerate(times):
                entry = {**self.base, **self._predict_fields, "event": "predict", "ms": ms, "at": at,
                         "detail": detail if index == 0 else None}  # fmt: skip
                self.events.append({k: v for k, v in entry.items() if v is not None})
            self._slowest = 0.0
        for (version, variant), bins in self._bins.items():
            kept = {k: v for k, v in list(bins.items())[:256] if len(k) <= 64 and len(v) <= 64}
            if kept:
                entry = {**self.base, "event": "inputs", "version": version, "variant": variant or None,
                         "bins": kept, "at": at}  # fmt: skip
                self.events.append({k: v for k, v in entry.items() if v is not None})
        self._bins = {}
        runs, shadows = self._shadows.take()
        for index, fields in enumerate(shadows):
            entry = {**self.base, **fields, "event": "shadow", "at": at,
                     "detail": f"n={runs} sampled={len(shadows)}" if index == 0 else None}  # fmt: skip
            self.events.append({k: v for k, v in entry.items() if v is not None})

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


class _Reservoir:
    """A uniform sample of at most ``SAMPLED`` of the items added since the last ``take``."""

    def __init__(self, rng: random.Random) -> None:
        self.items: list[Any] = []
        self.seen = 0
        self.random = rng

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < SAMPLED:
            self.items.append(item)
            return
        slot = self.random.randrange(self.seen)
        if slot < SAMPLED:
            self.items[slot] = item

    def take(self) -> tuple[int, list[Any]]:
        seen, items = self.seen, self.items
        self.items, self.seen = [], 0
        return seen, items
