"""What the manifest API serves about a channel, shared by `packager serve` and the Lambda
handler (which vendors this module): the channel as read, the catalog built from it, and the
small LRU both keep their documents in. Standard library only at module level."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from packager.registry.docs import Pointer
from packager.registry.names import pointer_key, version_key

MANIFEST_SCHEMA = 1


class Lru(OrderedDict[Any, Any]):
    """An insertion-ordered cache of at most ``size`` entries; ``put`` evicts the oldest."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


@dataclass(frozen=True, kw_only=True)
class Channel:
    """A channel as served: its pointer, the documents of its versions, and a stable key."""

    pointer: Pointer
    versions: Mapping[str, Mapping[str, Any]]
    key: str  # canonical bytes of the pointer: changes with every generation
    signed: bool  # the registry has TUF metadata


def served_variant(variant: Mapping[str, Any], artifact_url: Callable[[str], str]) -> dict[str, Any]:
    """A version document's variant with the URL of each of its files."""
    files = [{**f, "url": artifact_url(f["sha256"])} for f in variant["files"]]
    return {**variant, "main": {**variant["main"], "url": artifact_url(variant["main"]["sha256"])},
            "files": files}  # fmt: skip


def manifest_doc(found: Channel, artifact_url: Callable[[str], str]) -> dict[str, Any]:
    """The catalog of a channel: every servable variant of its stable and candidate versions."""
    pointer = found.pointer
    versions = {name: {"model": doc["model"], "published": doc["published"], "cloud": doc.get("cloud"),
                       "document": f"/v1/models/{pointer.model}/versions/{name}",
                       "variants": [served_variant(v, artifact_url) for v in doc["variants"]]}
                for name, doc in found.versions.items()}  # fmt: skip
    tuf = None
    if found.signed:
        tuf = {"root": "/v1/tuf/root.json", "timestamp": "/v1/tuf/timestamp.json", "metadata": "/v1/tuf/{name}",
               "pointer_target": pointer_key(pointer.model, pointer.channel),
               "version_targets": {name: version_key(pointer.model, name) for name in found.versions},
               "artifact_target": "artifacts/sha256/{sha256}"}  # fmt: skip
    return {"schema": MANIFEST_SCHEMA, "model": pointer.model, "channel": pointer.channel,
            "generation": pointer.generation, "stable": pointer.stable, "candidate": pointer.candidate,
            "percent": pointer.percent, "pointer": f"/v1/models/{pointer.model}/channels/{pointer.channel}",
            "versions": versions, "tuf": tuf}  # fmt: skip
