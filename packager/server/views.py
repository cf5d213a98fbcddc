"""What the server reads from a store, cached in memory and kept stateless over it.

Version documents are immutable: cached until evicted. The channel pointer is the one of record
(the signed one on a signed registry, through ``packager.registry.channels``) and is read again
once it is older than ``pointer_seconds`` or after this server wrote to the channel; the TUF
state behind it is re-read only when the timestamp's etag changes. Derived documents (the
manifest, its ETag) are keyed by the pointer's bytes, so a new generation invalidates them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from packager.errors import ServiceError
from packager.registry import channels, signing
from packager.registry.catalog import Channel, Lru
from packager.registry.docs import canonical_json
from packager.registry.names import version_key
from packager.registry.store import Store


class RegistryView:
    """Cached reads of one store; safe to share between threads."""

    def __init__(self, store: Store, *, pointer_seconds: float, versions: int, derived: int, channels: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.store = store
        self.pointer_seconds = pointer_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._versions = Lru(versions)
        self._derived = Lru(derived)
        # (model, channel) -> (read at, the channel or None); bounded: a client can ask for any name
        self._channels = Lru(channels)
        self._state: tuple[str | None, signing.RepoState | None] = ("", None)
        self._models: tuple[float, frozenset[str]] = (-1.0, frozenset())

    def signed(self) -> bool:
        return self._repo_state() is not None

    def _repo_state(self) -> signing.RepoState | None:
        timestamp = self.store.get(signing.TIMESTAMP_KEY)
        etag = timestamp.etag if timestamp else None
        if etag is not None and etag == self._state[0]:
            return self._state[1]
        state = signing.read_state(self.store)
        if etag is not None:  # keys init before its first commit: read again next time
            self._state = (etag, state)
        return state

    def version(self, model: str, version: str) -> Mapping[str, Any] | None:
        key = (model, version)
        with self._lock:
            if key in self._versions:
                return dict.__getitem__(self._versions, key)  # type: ignore[no-any-return]
        blob = self.store.get(version_key(model, version))
        if blob is None:
            return None
        with self._lock:
            return self._versions.put(key, json.loads(blob.data))  # type: ignore[no-any-return]

    def fresh(self, model: str, channel: str) -> tuple[bool, Channel | None]:
        """(True, the cached channel) while the cache is fresh, else (False, None): no store read."""
        cached = self._channels.get((model, channel))
        if cached is not None and self.clock() - cached[0] < self.pointer_seconds:
            return True, cached[1]
        return False, None

    def channel(self, model: str, channel: str) -> Channel | None:
        """The channel of record, or None when nothing was published to it."""
        now = self.clock()
        cached = self._channels.get((model, channel))
        if cached is not None and now - cached[0] < self.pointer_seconds:
            return cached[1]
        state = self._repo_state()
        pointer = channels.current(self.store, model, channel, state)[0]
        found = None
        if pointer.stable is not None:
            names = [v for v in (pointer.stable, pointer.candidate) if v is not None]
            docs = {name: self.version(model, name) for name in names}
            missing = [name for name, doc in docs.items() if doc is None]
            if missing:
                raise ServiceError(503, "registry_inconsistent",
                                   f"{model}/{channel} points at version {missing[0]}, which is missing")  # fmt: skip
            found = Channel(pointer=pointer, versions={k: v for k, v in docs.items() if v is not None},
                            key=canonical_json(pointer.to_json()).decode(), signed=state is not None)  # fmt: skip
        with self._lock:
            self._channels.put((model, channel), (now, found))
        return found

    def models(self, seconds: float) -> frozenset[str]:
        """The names of the models the store holds, listed again after ``seconds``."""
        at, names = self._models
        if self.clock() - at >= seconds or at < 0:
            names = frozenset(key.split("/")[1] for key in self.store.list("models/") if key.count("/") >= 2)
            self._models = (self.clock(), names)
        return names

    def forget(self, model: str) -> None:
        """Drop the cached pointers of ``model`` (after this server changed one of them)."""
        with self._lock:
            for key in [k for k in self._channels if k[0] == model]:
                self._channels.pop(key, None)
        self._models = (-1.0, self._models[1])

    def derived(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value computed once per ``key`` (e.g. a manifest per pointer generation)."""
        with self._lock:
            if key in self._derived:
                return dict.__getitem__(self._derived, key)
        value = make()
        with self._lock:
            return self._derived.put(key, value)
