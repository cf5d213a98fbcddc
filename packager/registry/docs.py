"""The registry's JSON documents: version documents (immutable) and channel pointers (mutable).

Version document (``models/<m>/versions/<v>.json``, schema 1)::

    {"schema": 1, "kind": "packager.version", "model": {...build.json model section, no paths...},
     "published": "2025-01-01T00:00:00Z", "cloud": {"url", "protocol": "open-inference-v2"} | null,
     "variants": [{"id", "target", "precision", "runtime": {"name", "min_version"},
                   "platforms": [...], "arch": [...] | null, "device": bool,
                   "main": {"path", "sha256", "bytes"}, "files": [{"path", "sha256", "bytes"}],
                   "bytes", "device_bytes" (what a device downloads), "fidelity", "latency_ms" | null,
                   "peak_memory_mb" | null}],
     "withheld": [{"id", "reason"}]}

Channel pointer (``models/<m>/channels/<c>.json``, schema 1)::

    {"schema": 1, "kind": "packager.channel", "model", "channel", "stable", "candidate",
     "percent", "generation", "updated", "history": [{"generation", "action", "stable",
     "candidate", "percent", "at", "from"?}]}
"""

from __future__ import annotations

import fnmatch
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from packager.errors import PublishError, RegistryError
from packager.registry.names import check_name
from packager.resources import read_toml

SCHEMA = 1
PROTOCOL = "open-inference-v2"
_MODEL_KEYS_DROPPED = ("canonical", "original")  # files of the build folder, not published


@cache
def facts() -> dict[str, Any]:
    """packager/resources/registry.toml."""
    return read_toml("registry.toml")


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Stable bytes for a document: sorted keys, no spaces, UTF-8, newline at the end."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_arch(arch: str) -> str:
    arch = arch.strip().lower()
    return str(facts()["arch_aliases"].get(arch, arch))


def placement(variant: Mapping[str, Any]) -> tuple[list[str], list[str] | None]:
    """Where a variant runs: its platforms and, for arch-bound runtimes, its arch."""
    runtime = variant["runtime"]["name"]
    table = facts()["platforms"].get(runtime)
    if table is None:
        raise PublishError(f"variant {variant['id']}: runtime {runtime!r} has no platform entry in registry.toml")
    if not table.get("arch_bound"):
        return list(table["platforms"]), None
    arch = variant.get("arch") or (variant.get("latency_ms") or {}).get("host") or platform.machine()
    return list(table["platforms"]), [normalize_arch(str(arch))]


def variant_entry(variant: Mapping[str, Any]) -> dict[str, Any]:
    """One build.json variant as the version document lists it."""
    platforms, arch = placement(variant)
    files = [{"path": f["path"], "sha256": f["sha256"], "bytes": f["bytes"]} for f in variant["files"]]
    main_path = variant.get("main_file") or files[0]["path"]
    main = next((f for f in files if f["path"] == main_path), None)
    if main is None:
        raise PublishError(f"variant {variant['id']}: main_file {main_path!r} is not in its files")
    device = device_files(variant["runtime"]["name"], main, files)
    if main not in device:  # a browser variant's main file is its demo page: devices load the model
        main = device[0]
    return {
        "id": variant["id"], "target": variant["target"], "precision": variant["precision"],
        "runtime": {"name": variant["runtime"]["name"], "min_version": str(variant["runtime"]["min_version"])},
        "platforms": platforms, "arch": arch, "device": platforms != ["cloud"],
        "main": main, "files": files, "bytes": sum(f["bytes"] for f in files),
        "device_bytes": sum(f["bytes"] for f in device),
        "fidelity": variant["fidelity"], "latency_ms": variant.get("latency_ms"),
        "peak_memory_mb": variant.get("peak_memory_mb"),
    } | ({"state": variant["state"]} if variant.get("state") else {})  # fmt: skip


def device_files(runtime: str, main: Mapping[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The files of a variant a device downloads (registry.toml's device_files, in pattern order,
    so the first is what it loads; the main file when no pattern matches)."""
    patterns = facts()["device_files"].get(runtime)
    if patterns is None:
        return files
    name = {id(f): f["path"].rsplit("/", 1)[-1] for f in files}
    chosen = [f for p in patterns for f in files if fnmatch.fnmatch(name[id(f)], p)]  # in pattern order
    return list({f["path"]: f for f in chosen}.values()) or [dict(main)]


def version_document(build: Mapping[str, Any], *, cloud_url: str | None, published: datetime) -> dict[str, Any]:
    """The immutable document of one published build; failed variants are withheld."""
    model = {k: v for k, v in build["model"].items() if k not in _MODEL_KEYS_DROPPED}
    kept = [v for v in build["variants"] if v["fidelity"]["status"] != "failed"]
    withheld = [{"id": v["id"], "reason": v["fidelity"].get("reason", "failed validation")}
                for v in build["variants"] if v["fidelity"]["status"] == "failed"]  # fmt: skip
    return {
        "schema": SCHEMA, "kind": "packager.version", "model": model, "published": iso(published),
        "cloud": {"url": cloud_url, "protocol": PROTOCOL} if cloud_url else None,
        "variants": [variant_entry(v) for v in kept], "withheld": withheld,
    }  # fmt: skip


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two version documents of the same build, whenever each was published."""
    return {**a, "published": None} == {**b, "published": None}


@dataclass(frozen=True, kw_only=True)
class Pointer:
    """A channel pointer: which version each cohort gets. ``generation`` only ever grows."""

    model: str
    channel: str
    stable: str | None = None
    candidate: str | None = None
    percent: int = 0
    generation: int = 0
    updated: str = ""
    history: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    # a gated rollout's plan (packager.fleet.gates.Plan.to_json), None without one: then the
    # document has no "plan" key, so pointers written before plans existed keep their bytes
    plan: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"schema": SCHEMA, "kind": "packager.channel", "model": self.model, "channel": self.channel,
               "stable": self.stable, "candidate": self.candidate, "percent": self.percent,
               "generation": self.generation, "updated": self.updated,
               "history": [dict(h) for h in self.history]}  # fmt: skip
        if self.plan is not None:
            doc["plan"] = dict(self.plan)
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pointer:
        try:
            pointer = cls(model=check_name("model", data["model"]), channel=check_name("channel", data["channel"]),
                          stable=data["stable"], candidate=data["candidate"], percent=int(data["percent"]),
                          generation=int(data["generation"]), updated=str(data.get("updated", "")),
                          history=tuple(data.get("history", ())), plan=data.get("plan"))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"channel pointer is malformed: {exc}") from exc
        if not 0 <= pointer.percent <= 100:
            raise RegistryError(f"channel pointer has percent {pointer.percent}, outside 0..100")
        return pointer

    def next(self, action: str, now: datetime, **changes: Any) -> Pointer:
        """The pointer after ``action``: generation + 1, the old state appended to history."""
        entry: dict[str, Any] = {"generation": self.generation, "action": action, "stable": self.stable,
                                 "candidate": self.candidate, "percent": self.percent, "at": iso(now)}  # fmt: skip
        entry.update(changes.pop("record", {}))
        keep = int(facts()["writes"]["history"])
        history = (*self.history, entry)[-keep:] if self.generation else self.history
        return replace(self, generation=self.generation + 1, updated=iso(now), history=history, **changes)
