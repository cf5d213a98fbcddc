"""Resolve, the route every device calls at every start: its answer as bytes, computed once per
device class and cohort in each channel generation.

A resolution is a pure function of the channel (pointer and version documents), the device's
profile and its cohort; the device id matters only through the cohort, a sticky hash computed
for every request. So the profile's JSON without ``device_id`` (keys sorted) names a device
class. A class is validated once: its DeviceProfile is kept, and a class that fails is never
kept, so a later request of it fails the same way. The answer of (pointer, class, cohort) is kept
as its bytes up to ``expires``, the one field that moves with the clock (rendered once a second).
The pointer's canonical bytes change with every generation (publish, rollout, rollback), so an
answer of an older generation is never read again and ages out of the LRU.

The read API's resolve route (``packager.server.api``) answers through a Resolver, in this order:
the model name and channel (``route``), the body's profile (``profile``), the channel (a store
read, maybe), then the answer (``render``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from packager.errors import PackagerError, ProfileError, ServiceError
from packager.registry.catalog import Channel, Lru
from packager.registry.docs import facts, iso
from packager.registry.names import check_name
from packager.registry.profile import DeviceProfile, device_id_field
from packager.registry.resolve import cohort_of, resolve
from packager.server.http import check_depth, json_body, parse_json

try:
    import orjson

    _loads, _UNREAD = orjson.loads, orjson.JSONDecodeError

    def _class_key(data: dict[str, Any]) -> bytes:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)

except ImportError:  # the Lambda function ships without it: the standard parser gives the same answers
    _loads, _UNREAD = json.loads, ValueError  # type: ignore[assignment]

    def _class_key(data: dict[str, Any]) -> bytes:
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


NO_STORE = "private, no-store"
_NAMES = 1024
_ABSENT = object()


class Resolver:
    """Resolutions as bytes, memoised per device class and cohort. Its caches are touched only from
    the thread that answers resolves (the event loop's, in ``packager serve``), so they take no lock."""

    def __init__(self, artifact_url: Callable[[str], str], *, limit: int, classes: int, answers: int) -> None:
        self.artifact_url = artifact_url
        self.limit = limit
        self._classes = Lru(classes)  # class key -> DeviceProfile without device_id
        self._answers = Lru(answers)  # (pointer key, signed, cohort, class key) -> bytes before expires
        self._ttl = timedelta(seconds=int(facts()["resolve"]["ttl_seconds"]))
        self._names: set[str] = set()  # model and channel names already checked
        self._second = -1
        self._expires = b""
        # (pointer key, its cohort_of): made for the first pointer seen, again when it changes
        self._cohort: tuple[str | None, Callable[[str | None], str]] = (None, lambda device_id: "stable")

    def route(self, model: str, query: str) -> tuple[str, str]:
        """The model and channel of a request, checked (400 otherwise): before its body is read."""
        channel = "stable"
        if query:
            for key, value in parse_qsl(query, keep_blank_values=True):
                if key == "channel":
                    channel = value
        if model in self._names and channel in self._names:
            return model, channel
        return self._name("model", model), self._name("channel", channel)

    def answer(self, found: Channel, body: bytes) -> bytes:
        """The Resolution's JSON bytes for the profile in ``body`` (``profile`` then ``render``)."""
        return self.render(found, *self.profile(body))

    def render(self, found: Channel, key: bytes | None, profile: DeviceProfile, device_id: str | None) -> bytes:
        if self._cohort[0] != found.key:
            self._cohort = (found.key, cohort_of(found.pointer))
        group = self._cohort[1](device_id)
        entry = (found.key, found.signed, group, key)
        head = self._answers.get(entry) if key is not None else None
        if head is None:
            if profile.device_id != device_id:
                profile = replace(profile, device_id=device_id)
            head = self._render(found, profile)
            if key is not None:
                self._answers.put(entry, head)
        return head + self._expiry()

    def profile(self, body: bytes) -> tuple[bytes | None, DeviceProfile, str | None]:
        """The body's class key, a profile of its class and its device id; or its 400 (not JSON) or
        422 (ProfileError). The key is None for what only the standard parser reads (NaN, a byte
        order mark, UTF-16): such a body gets no class."""
        check_depth(body)
        try:
            data = _loads(body)
        except _UNREAD:
            profile = DeviceProfile.from_json(parse_json(body))
            return None, profile, profile.device_id
        if not isinstance(data, dict):
            DeviceProfile.from_json(data)  # raises: not an object
        device_id = data.pop("device_id", _ABSENT)
        key = _class_key(data)
        known = self._classes.get(key)
        if known is not None:  # the class passed every check: only the device id is left
            return key, known, None if device_id is _ABSENT else device_id_field(device_id)
        if device_id is not _ABSENT:
            data["device_id"] = device_id  # last now: from_json checks fields in its own order
        try:
            profile = DeviceProfile.from_json(data)  # every check, in from_json's order
        except ProfileError:
            with contextlib.suppress(ValueError):  # orjson reads integers past 64 bits as floats:
                DeviceProfile.from_json(json.loads(body))  # the message shows them as json reads them
            raise
        self._classes.put(key, replace(profile, device_id=None))
        return key, profile, profile.device_id

    def _name(self, kind: str, value: str) -> str:
        """``value`` when it is a valid name (models and channels follow one rule), else a 400."""
        if value in self._names:
            return value
        try:
            check_name(kind, value)
        except PackagerError as exc:
            raise ServiceError(400, "invalid_name", exc.message) from exc
        if len(self._names) >= _NAMES:
            self._names.clear()
        self._names.add(value)
        return value

    def _render(self, found: Channel, profile: DeviceProfile) -> bytes:
        """The resolution's JSON up to the value of ``expires`` (its last field)."""
        doc = resolve(found.pointer, found.versions, profile, now=datetime.now(UTC),
                      artifact_url=self.artifact_url).to_json()  # fmt: skip
        del doc["expires"]
        return json_body(doc)[:-1] + b',"expires":'

    def _expiry(self) -> bytes:
        """``"<now + ttl>"}``: the end of every answer of this second."""
        second = int(time.time())
        if second != self._second:
            moment = datetime.fromtimestamp(second, UTC)
            self._expires, self._second = json.dumps(iso(moment + self._ttl)).encode() + b"}", second
        return self._expires
