"""What a client with a pinned TUF root checks before it uses anything the server says.

The metadata (root chain, timestamp, snapshot, targets) is verified with
``packager.registry.verify`` against the root the device pinned and the timestamp it trusted
last (kept in the cache), so replayed or frozen metadata is refused. Then the resolution is
checked against signed documents: the channel pointer must name its version as stable or
candidate, the version document must list the chosen variant with the same files, and each
artifact's sha256 and length must be the ones the targets metadata signs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from packager.client.cache import Cache
from packager.errors import ClientError
from packager.registry.names import pointer_key, version_key
from packager.registry.verify import VerificationError, Verified, verify_metadata


class Trust:
    """Verification from a pinned root; one ``refresh`` per resolution."""

    def __init__(self, root: bytes, cache: Cache) -> None:
        self.root = root
        self.cache = cache
        self.verified: Verified | None = None

    def refresh(self, http: httpx.Client) -> Verified:
        """Verify the registry's current metadata; remember its timestamp as the newest trusted."""
        trusted = self.cache.trusted_timestamp(self.root)
        verified = verify_metadata(_fetcher(http), self.root, trusted_timestamp=trusted)
        self.cache.trust_timestamp(self.root, verified.timestamp)
        self.verified = verified
        return verified

    def check_resolution(self, http: httpx.Client, resolution: Mapping[str, Any], channel: str) -> None:
        """Raise VerificationError unless the resolution's version and variants are the signed ones."""
        verified = self.refresh(http)
        model, version = resolution["model"], resolution["version"]
        pointer = json.loads(_signed_get(http, verified, f"/v1/models/{model}/channels/{channel}",
                                         pointer_key(model, channel)))  # fmt: skip
        arms = [str(a).split(":", 1)[0] for a in (pointer.get("experiment") or {}).get("arms", ())]
        if version not in (pointer.get("stable"), pointer.get("candidate"), *arms):
            raise VerificationError(f"the server resolved {model} to version {version}, which the signed "
                                    f"{channel} pointer does not offer")  # fmt: skip
        doc = json.loads(_signed_get(http, verified, f"/v1/models/{model}/versions/{version}",
                                     version_key(model, version)))  # fmt: skip
        signed = {v["id"]: v for v in doc["variants"]}
        for variant in [resolution.get("variant"), *resolution.get("fallbacks", [])]:
            if variant is not None:
                _same_variant(variant, signed.get(variant["id"]))
        cloud = resolution.get("cloud")
        if cloud is not None and cloud != doc.get("cloud"):
            raise VerificationError("the resolution's cloud endpoint is not the one the signed version names")
        shadow = resolution.get("shadow")
        if shadow is not None:
            self._check_shadow(http, verified, model, shadow, pointer.get("shadow"))

    def _check_shadow(self, http: httpx.Client, verified: Verified, model: str, shadow: Mapping[str, Any],
                      signed: Mapping[str, Any] | None) -> None:  # fmt: skip
        """The resolution's shadow run must be the one the signed pointer sets, its variant in the
        shadow version's signed document."""
        if signed is None or any(shadow.get(k) != signed.get(k) for k in ("version", "sample", "cpu_budget")):
            raise VerificationError(f"the server asks to shadow {model} {shadow.get('version')}, which the signed "
                                    "pointer does not set")  # fmt: skip
        version = str(signed["version"])
        doc = json.loads(_signed_get(http, verified, f"/v1/models/{model}/versions/{version}",
                                     version_key(model, version)))  # fmt: skip
        _same_variant(shadow["variant"], {v["id"]: v for v in doc["variants"]}.get(shadow["variant"]["id"]))

    def check_artifact(self, sha256: str, size: int) -> None:
        """Raise VerificationError unless the targets metadata signs this artifact's hash and length."""
        if self.verified is None:
            raise ClientError("verify the metadata before artifacts", hint="this is a bug; please report it")
        target = f"artifacts/sha256/{sha256}"
        if self.verified.sha256(target) != sha256 or self.verified.targets[target].length != size:
            raise VerificationError(f"{target}: hash or length differs from the signed target")


def _fetcher(http: httpx.Client) -> Any:
    def fetch(key: str) -> bytes | None:
        name = key.removeprefix("tuf/")
        response = _get(http, f"/v1/tuf/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise VerificationError(f"GET /v1/tuf/{name} answered {response.status_code}")
        return response.content

    return fetch


def _get(http: httpx.Client, path: str) -> httpx.Response:
    # Signed documents must be read fresh: never a cached copy that could be older than the metadata.
    return http.get(path, headers={"Cache-Control": "no-cache"})


def _signed_get(http: httpx.Client, verified: Verified, path: str, target: str) -> bytes:
    response = _get(http, path)
    if response.status_code != 200:
        raise VerificationError(f"GET {path} answered {response.status_code}; it is needed to verify the resolution")
    verified.check(target, response.content)
    return response.content


def _same_variant(served: Mapping[str, Any], signed: Mapping[str, Any] | None) -> None:
    if signed is None:
        raise VerificationError(f"variant {served['id']} is not in the signed version document")
    if served["runtime"]["name"] != signed["runtime"]["name"]:
        raise VerificationError(f"variant {served['id']}: its runtime differs from the signed version document")
    files = {f["path"]: (f["sha256"], f["bytes"]) for f in signed["files"]}
    main = signed["main"]
    if (served["sha256"], served["bytes"], served.get("path", main["path"])) != (main["sha256"], main["bytes"],
                                                                                 main["path"]):  # fmt: skip
        raise VerificationError(f"variant {served['id']}: its main file differs from the signed version document")
    for entry in served.get("files", []):
        if files.get(entry["path"]) != (entry["sha256"], entry["bytes"]):
            raise VerificationError(f"variant {served['id']}: {entry['path']} differs from the signed version document")
