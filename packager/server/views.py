"""What the read API reads from a store, cached in memory and kept stateless over it.

Version documents, TUF files named by version and artifact sizes are immutable: cached until
evicted. The channel pointer is the one of record and is read again once it is older than
``pointer_seconds`` or after this server wrote to the channel. On a signed registry that is the
copy the TUF targets metadata names, found by walking timestamp -> snapshot -> targets as JSON
(what ``packager.registry.channels`` finds with python-tuf; no signature is checked here: devices
verify with their root), and the walk is redone only when the timestamp's etag changes. Derived
documents (the manifest, its ETag) are keyed by the pointer's bytes, so a new generation
invalidates them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from packager.errors import ServiceError
from packager.registry.catalog import Channel, Lru
from packager.registry.docs import Pointer, canonical_json
from packager.registry.names import artifact_key, pointer_copy_key, pointer_key, version_key
from packager.registry.store import Store

ROOT_KEY = "tuf/root.json"
TIMESTAMP_KEY = "tuf/timestamp.json"


class RegistryView:
    """Cached reads of one store; safe to share between threads."""

    def __init__(self, store: Store, *, pointer_seconds: float, versions: int, derived: int, channels: int = 4096,
                 artifacts: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.store = store
        self.pointer_seconds = pointer_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._versions = Lru(versions)
        self._derived = Lru(derived)
        # (model, channel) -> (read at, the channel or None); bounded: a client can ask for any name
        self._channels = Lru(channels)
        self._documents = Lru(versions)  # key -> bytes of an immutable document
        self._sizes = Lru(artifacts)  # sha256 -> bytes of an artifact the store holds
        # (timestamp etag, the targets it leads to): ("", None) before the first read
        self._targets: tuple[str, Mapping[str, Any] | None] = ("", None)
        self._models: tuple[float, frozenset[str]] = (-1.0, frozenset())

    def signed(self) -> bool:
        return self.store.size(ROOT_KEY) is not None

    def _signed_targets(self) -> tuple[bool, Mapping[str, Any] | None]:
        """(signed, the targets of the current TUF targets metadata: None before the first commit)."""
        timestamp = self.store.get(TIMESTAMP_KEY)
        if timestamp is None:  # unsigned, or keys init stopped before its first commit
            return self.signed(), None
        if timestamp.etag is not None and timestamp.etag == self._targets[0]:
            return True, self._targets[1]
        try:
            meta = json.loads(timestamp.data)["signed"]["meta"]["snapshot.json"]
            snapshot = json.loads(self._must(f"tuf/{int(meta['version'])}.snapshot.json"))["signed"]
            number = int(snapshot["meta"]["targets.json"]["version"])
            targets = json.loads(self._must(f"tuf/{number}.targets.json"))["signed"]["targets"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(503, "registry_inconsistent", f"the TUF metadata does not parse: {exc!r}") from exc
        if timestamp.etag is not None:
            self._targets = (timestamp.etag, targets)
        return True, targets

    def _must(self, key: str) -> bytes:
        data = self.document(key)
        if data is None:
            raise ServiceError(503, "registry_inconsistent", f"the registry is missing {key}")
        return data

    def _pointer(self, model: str, channel: str) -> tuple[Pointer | None, bool]:
        """The pointer of record (None when nothing was published to it), and whether it is signed."""
        signed, targets = self._signed_targets()
        if signed:
            target = (targets or {}).get(pointer_key(model, channel))
            if target is None:
                return None, True
            data = self._must(pointer_copy_key(model, channel, str(target["hashes"]["sha256"])))
            return Pointer.from_json(json.loads(data)), True
        plain = self.store.get(pointer_key(model, channel))
        return (None if plain is None else Pointer.from_json(json.loads(plain.data))), False

    def document(self, key: str) -> bytes | None:
        """The bytes of an immutable document (a version, a TUF file named by its version)."""
        with self._lock:
            if key in self._documents:
                return bytes(dict.__getitem__(self._documents, key))
        blob = self.store.get(key)
        if blob is None:
            return None
        with self._lock:
            return bytes(self._documents.put(key, blob.data))

    def tuf(self, name: str, mutable: bool) -> bytes | None:
        """A TUF file: root.json and timestamp.json read every time, the others cached."""
        if not mutable:
            return self.document(f"tuf/{name}")
        blob = self.store.get(f"tuf/{name}")
        return None if blob is None else blob.data

    def artifact_size(self, sha256: str) -> int | None:
        """The bytes of an artifact, None when the store does not hold it."""
        with self._lock:
            if sha256 in self._sizes:
                return int(dict.__getitem__(self._sizes, sha256))
        size = self.store.size(artifact_key(sha256))
        if size is None:
            return None
        with self._lock:
            return int(self._sizes.put(sha256, size))

    def version(self, model: str, version: str) -> Mapping[str, Any] | None:
        key = (model, version)
        with self._lock:
            if key in self._versions:
                return dict.__getitem__(self._versions, key)  # type: ignore[no-any-return]
        data = self.document(version_key(model, version))
        if data is None:
            return None
        with self._lock:
            return self._versions.put(key, json.loads(data))  # type: ignore[no-any-return]

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
        pointer, signed = self._pointer(model, channel)
        found = None
        if pointer is not None and pointer.stable is not None:
            names = pointer.versions()
            docs = {name: self.version(model, name) for name in names}
            missing = [name for name, doc in docs.items() if doc is None]
            if missing:
                raise ServiceError(503, "registry_inconsistent",
                                   f"{model}/{channel} points at version {missing[0]}, which is missing")  # fmt: skip
            found = Channel(pointer=pointer, versions={k: v for k, v in docs.items() if v is not None},
                            key=canonical_json(pointer.to_json()).decode(), signed=signed)  # fmt: skip
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
