"""Device telemetry: validated, bounded events, stored as they come (aggregation comes later).

Request body: ``{"events": [event, ...]}`` with at most ``telemetry_events`` events. An event::

    {"event": "resolve"|"download"|"verify"|"install"|"load"|"predict"|"fallback"|"error"
              |"shadow"|"feedback"|"inputs",
     "model", "version"?, "variant"?, "device_id"?, "at"?, "ms"?, "bytes"?, "detail"?,
     "ok"?, "reward"?, "agree"?, "diff"?, "base_ms"?, "bins"?}

``ok`` (true/false) says whether a download, install or load worked; ``reward`` is an app's
feedback for experiments; ``agree`` and ``diff`` are a shadow run's top-1 agreement and largest
absolute difference, its ``ms`` the candidate's time and ``base_ms`` stable's on the same
call; ``bins`` holds counts over the build's reference bins (``{"feature": [n,
...]}``), never raw inputs. Every one is optional: an older client's events stay valid. The
fleet aggregation (``packager.fleet.aggregate``) reads them back.

Stored as JSON Lines: appended to a local file when one is configured, else in gzip'd segments
under ``telemetry/model=<model>/date=<yyyy-mm-dd>/<hhmmss>-<id>.jsonl.gz`` in the store, the
partitioned layout DuckDB, Athena and Spark read as they are. ``packager serve`` gathers events in
memory and writes a model's segment when it holds ``segment_bytes`` or every ``segment_seconds``
(and at shutdown): 5,000 events are a few kilobytes in the store, not 5,000 objects. The Lambda
handler, which has no later, writes one segment per request.

Bounds (``packager serve``, server.toml ``[telemetry]``): events name a model the registry has; a
token bucket per device id (events) and per client address (requests) answers 429 with
``Retry-After`` when empty; a model takes at most ``model_events_per_day`` events a UTC day.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packager.errors import ServiceError
from packager.registry.docs import iso
from packager.registry.names import check_name
from packager.registry.store import Store

EVENTS = ("resolve", "download", "verify", "install", "load", "predict", "fallback", "error", "shadow", "feedback",
          "inputs")  # fmt: skip
_TEXT = re.compile(r"[\x20-\x7e]{0,256}")
_STRINGS = {"device_id": 128, "at": 40, "detail": 256}
_NAMES = {"model": "model", "version": "version", "variant": "version"}
_NUMBERS = ("ms", "bytes", "diff", "base_ms")
_FLAGS = ("ok", "agree")
_BINS = (256, 64)  # features per event, bins per feature, at most
FIELDS = ("event", *_NAMES, *_STRINGS, *_NUMBERS, *_FLAGS, "reward", "bins")


def _bad(message: str) -> ServiceError:
    return ServiceError(422, "invalid_event", message)


def check_event(event: Any, index: int) -> dict[str, Any]:
    """One event, validated; a 422 ServiceError names the field that is wrong."""
    if not isinstance(event, dict):
        raise _bad(f"events[{index}] must be an object")
    unknown = [k for k in event if k not in FIELDS]
    if unknown:
        raise _bad(f"events[{index}] has an unknown field {str(unknown[0])[:40]!r} (known: {', '.join(FIELDS)})")
    if event.get("event") not in EVENTS:
        raise _bad(f"events[{index}].event must be one of {', '.join(EVENTS)}")
    for key, kind in _NAMES.items():
        value = event.get(key)
        if (value is None and key != "model") or (isinstance(value, str) and _name_ok(kind, value)):
            continue
        raise _bad(f"events[{index}].{key} must be a {kind} name")
    for key, most in _STRINGS.items():
        value = event.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > most or not _TEXT.fullmatch(value)):
            raise _bad(f"events[{index}].{key} must be printable ASCII of at most {most} characters")
    for key in _NUMBERS:
        value = event.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or not 0 <= value <= 1e15):  # fmt: skip
            raise _bad(f"events[{index}].{key} must be a number from 0 to 1e15")
    for key in _FLAGS:
        if key in event and not isinstance(event[key], bool):
            raise _bad(f"events[{index}].{key} must be true or false")
    reward = event.get("reward")
    if reward is not None and (not _number(reward) or not -1e15 <= reward <= 1e15):
        raise _bad(f"events[{index}].reward must be a number from -1e15 to 1e15")
    if "bins" in event:
        _check_bins(event["bins"], index)
    return dict(event)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_bins(bins: Any, index: int) -> None:
    """``{"feature": [count, ...]}``: names of printable ASCII, counts of 0 to 1e9."""
    features, most = _BINS
    if not isinstance(bins, dict) or not 1 <= len(bins) <= features:
        raise _bad(f"events[{index}].bins must be an object of 1 to {features} features")
    for name, counts in bins.items():
        if not _TEXT.fullmatch(name) or not name or len(name) > 64:
            raise _bad(f"events[{index}].bins has a feature name that is not 1 to 64 printable characters")
        if (not isinstance(counts, list) or not 1 <= len(counts) <= most
                or not all(type(n) is int and 0 <= n <= 10**9 for n in counts)):  # fmt: skip
            raise _bad(f"events[{index}].bins[{name[:40]!r}] must be 1 to {most} counts from 0 to 1e9")


def _name_ok(kind: str, value: str) -> bool:
    try:
        check_name(kind, value)
    except Exception:
        return False
    return True


def check_batch(doc: Any, most: int) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or set(doc) != {"events"} or not isinstance(doc["events"], list):
        raise _bad('the body must be {"events": [...]}')
    if not 1 <= len(doc["events"]) <= most:
        raise _bad(f"send 1 to {most} events per request")
    return [check_event(event, i) for i, event in enumerate(doc["events"])]


def segment_key(model: str, at: datetime) -> str:
    return f"telemetry/model={model}/date={at:%Y-%m-%d}/{at:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl.gz"


class TelemetrySink:
    """Where accepted events go: a local JSON Lines file, or gzip'd segments in the store's
    telemetry/ prefix (``buffered``: gathered until ``flush``, or ``segment_bytes`` per model)."""

    def __init__(self, store: Store, path: Path | None, *, buffered: bool = False,
                 segment_bytes: int = 1 << 20, clock: Callable[[], datetime] | None = None) -> None:  # fmt: skip
        self.store = store
        # what stamps events as received and dates segments (a simulation's clock in bench/fleet.py)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.path = path
        self.buffered = buffered
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._held: dict[str, list[bytes]] = {}  # model -> JSON lines not yet written
        self._held_bytes: dict[str, int] = {}

    def write(self, events: list[dict[str, Any]], received: datetime | None = None) -> None:
        now = received or self.clock()
        lines = [json.dumps({**e, "received": iso(now)}, sort_keys=True).encode() + b"\n" for e in events]
        if self.path is not None:
            with self._lock, self.path.open("ab") as handle:
                handle.write(b"".join(lines))
            return
        full = []
        with self._lock:
            for event, line in zip(events, lines, strict=True):
                model = event["model"]
                self._held.setdefault(model, []).append(line)
                self._held_bytes[model] = self._held_bytes.get(model, 0) + len(line)
                if not self.buffered or self._held_bytes[model] >= self.segment_bytes:
                    full.append(model)
            taken = {model: self._take(model) for model in dict.fromkeys(full)}
        self._put(taken, now)

    def flush(self, now: datetime | None = None) -> None:
        """Write every model's gathered events as a segment."""
        with self._lock:
            taken = {model: self._take(model) for model in list(self._held)}
        self._put(taken, now or self.clock())

    def _take(self, model: str) -> list[bytes]:
        self._held_bytes.pop(model, None)
        return self._held.pop(model, [])

    def _put(self, taken: dict[str, list[bytes]], now: datetime) -> None:
        for model, lines in taken.items():
            if lines:
                self.store.put_immutable(segment_key(model, now), gzip.compress(b"".join(lines), mtime=0))


class Buckets:
    """Token buckets by key (a device id, an address): ``rate`` tokens a second up to ``burst``;
    at most ``most`` keys remembered (the least recently used is forgotten, as if full)."""

    def __init__(self, rate: float, burst: float, most: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.most, self.clock = rate, burst, most, clock
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, wanted: dict[str, int]) -> float:
        """Take ``wanted[key]`` tokens of each key's bucket, all or none: 0.0 when taken, else
        the seconds until they would be."""
        now = self.clock()
        with self._lock:
            levels = {}
            for key in wanted:
                tokens, at = self._levels.get(key, (self.burst, now))
                levels[key] = min(self.burst, tokens + (now - at) * self.rate)
            short = max((count - levels[key] for key, count in wanted.items()), default=0.0)
            if short > 0:
                return short / self.rate if self.rate > 0 else math.inf
            for key, count in wanted.items():
                self._levels[key] = (levels[key] - count, now)
                self._levels.move_to_end(key)
            while len(self._levels) > self.most:
                self._levels.popitem(last=False)
        return 0.0


class DailyCap:
    """At most ``most`` events per model per UTC day."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._day = ""
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, models: Iterable[str], now: datetime) -> float:
        """Count the events (one model name per event); 0.0, or the seconds to the next UTC day."""
        wanted: dict[str, int] = {}
        for model in models:
            wanted[model] = wanted.get(model, 0) + 1
        day = f"{now:%Y-%m-%d}"
        with self._lock:
            if day != self._day:
                self._day, self._counts = day, {}
            if any(self._counts.get(m, 0) + n > self.most for m, n in wanted.items()):
                midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
                return (midnight - now).total_seconds()
            for model, count in wanted.items():
                self._counts[model] = self._counts.get(model, 0) + count
        return 0.0


def too_many(wait: float, why: str) -> ServiceError:
    seconds = max(1, math.ceil(min(wait, 86400.0)))
    return ServiceError(429, "too_many_requests", f"{why}; try again in {seconds} s",
                        headers={"Retry-After": str(seconds)})  # fmt: skip


class Guard:
    """``packager serve``'s telemetry bounds: the client address's bucket (a token a request), each
    device id's bucket (a token an event), the models' daily cap, and known model names."""

    def __init__(self, conf: dict[str, Any], known: Callable[[], frozenset[str]]) -> None:
        most = int(conf["buckets"])
        self.addresses = Buckets(float(conf["address_requests_per_second"]), float(conf["address_burst"]), most)
        self.devices = Buckets(float(conf["device_events_per_second"]), float(conf["device_burst"]), most)
        self.daily = DailyCap(int(conf["model_events_per_day"]))
        self.known = known

    def admit_address(self, address: str | None) -> None:
        wait = self.addresses.take({address: 1}) if address else 0.0
        if wait:
            raise too_many(wait, "this address sends telemetry too often")

    def admit(self, events: list[dict[str, Any]], now: datetime) -> None:
        known = self.known()
        for index, event in enumerate(events):
            if event["model"] not in known:
                raise _bad(f"events[{index}].model: no model {event['model']!r} is published here")
        wanted: dict[str, int] = {}
        for event in events:
            if event.get("device_id"):
                wanted[event["device_id"]] = wanted.get(event["device_id"], 0) + 1
        wait = self.devices.take(wanted)
        if wait:
            raise too_many(wait, "a device in this batch sends telemetry too often")
        wait = self.daily.take((e["model"] for e in events), now)
        if wait:
            raise too_many(wait, "a model in this batch has had its events for today")
