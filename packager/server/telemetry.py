"""Device telemetry: validated, bounded events, stored as they come (aggregation comes later).

Request body: ``{"events": [event, ...]}`` with at most ``telemetry_events`` events. An event::

    {"event": "resolve"|"download"|"verify"|"install"|"load"|"predict"|"fallback"|"error",
     "model", "version"?, "variant"?, "device_id"?, "at"?, "ms"?, "bytes"?, "detail"?}

Stored as JSON Lines: appended to a local file when one is configured, else one object per
request under ``telemetry/<yyyy-mm-dd>/<uuid>.jsonl`` in the store (S3 cannot append).
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packager.errors import ServiceError
from packager.registry.docs import iso
from packager.registry.names import check_name
from packager.registry.store import Store

EVENTS = ("resolve", "download", "verify", "install", "load", "predict", "fallback", "error")
_TEXT = re.compile(r"[\x20-\x7e]{0,256}")
_STRINGS = {"device_id": 128, "at": 40, "detail": 256}
_NAMES = {"model": "model", "version": "version", "variant": "version"}
_NUMBERS = ("ms", "bytes")
FIELDS = ("event", *_NAMES, *_STRINGS, *_NUMBERS)


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
    return dict(event)


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


class TelemetrySink:
    """Where accepted events go: a local JSON Lines file, or the store's telemetry/ prefix."""

    def __init__(self, store: Store, path: Path | None) -> None:
        self.store = store
        self.path = path
        self._lock = threading.Lock()

    def write(self, events: list[dict[str, Any]], received: datetime | None = None) -> None:
        now = received or datetime.now(UTC)
        lines = "".join(json.dumps({**e, "received": iso(now)}, sort_keys=True) + "\n" for e in events).encode()
        if self.path is None:
            self.store.put_immutable(f"telemetry/{now:%Y-%m-%d}/{uuid.uuid4().hex}.jsonl", lines)
            return
        with self._lock, self.path.open("ab") as handle:
            handle.write(lines)
