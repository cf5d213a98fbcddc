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
     "candidate", "percent", "at", "from"?}], "plan"?, "shadow"?, "experiment"?}

``plan`` is a gated rollout's (``packager.fleet.gates.Plan``), ``experiment`` an A/B test's or
bandit's (``packager.fleet.experiment``); ``shadow`` is ``{"version",
"percent", "sample", "cpu_budget"}``: devices of the stable cohort whose shadow bucket is under
``percent`` also run ``version`` beside stable on a ``sample`` of their calls, spending at most
``cpu_budget`` times stable's time on it, and report agreement (``packager shadow``).
"""

from __future__ import annotations

import fnmatch
import json
import platform
import re
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
    # a shadow run's settings (see the module docstring); None without one, and then no key
    shadow: Mapping[str, Any] | None = None
    # an A/B test or bandit (packager.fleet.experiment.Experiment.to_json); None without one
    experiment: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"schema": SCHEMA, "kind": "packager.channel", "model": self.model, "channel": self.channel,
               "stable": self.stable, "candidate": self.candidate, "percent": self.percent,
               "generation": self.generation, "updated": self.updated,
               "history": [dict(h) for h in self.history]}  # fmt: skip
        if self.plan is not None:
            doc["plan"] = dict(self.plan)
        if self.shadow is not None:
            doc["shadow"] = dict(self.shadow)
        if self.experiment is not None:
            doc["experiment"] = dict(self.experiment)
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pointer:
        try:
            pointer = cls(model=check_name("model", data["model"]), channel=check_name("channel", data["channel"]),
                          stable=data["stable"], candidate=data["candidate"], percent=int(data["percent"]),
                          generation=int(data["generation"]), updated=str(data.get("updated", "")),
                          history=tuple(data.get("history", ())), plan=data.get("plan"),
                          shadow=_shadow(data.get("shadow")),
                          experiment=_experiment(data.get("experiment")))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"channel pointer is malformed: {exc}") from exc
        if not 0 <= pointer.percent <= 100:
            raise RegistryError(f"channel pointer has percent {pointer.percent}, outside 0..100")
        return pointer

    def in_shadow(self, version: str | None) -> bool:
        return self.shadow is not None and self.shadow.get("version") == version

    def versions(self) -> list[str]:
        """Every version a device of this channel may be sent: stable, candidate, the shadow's and
        the experiment's arms (each once, in that order)."""
        names = [self.stable, self.candidate, (self.shadow or {}).get("version")]
        names += [str(arm).split(":", 1)[0] for arm in (self.experiment or {}).get("arms", ())]
        return list(dict.fromkeys(n for n in names if n is not None))

    def next(self, action: str, now: datetime, **changes: Any) -> Pointer:
        """The pointer after ``action``: generation + 1, the old state appended to history."""
        entry: dict[str, Any] = {"generation": self.generation, "action": action, "stable": self.stable,
                                 "candidate": self.candidate, "percent": self.percent, "at": iso(now)}  # fmt: skip
        entry.update(changes.pop("record", {}))
        keep = int(facts()["writes"]["history"])
        history = (*self.history, entry)[-keep:] if self.generation else self.history
        return replace(self, generation=self.generation + 1, updated=iso(now), history=history, **changes)


def shadow_settings(version: str, percent: float, sample: float, cpu_budget: float) -> dict[str, Any]:
    """A pointer's ``shadow`` entry, checked: a ValueError names the setting out of range. The
    numbers are floats, so the entry has the same bytes when it is read back and written again."""
    percent, sample, cpu_budget = float(percent), float(sample), float(cpu_budget)
    if not 0 < percent <= 100:
        raise ValueError(f"shadow percent {percent} is outside (0, 100]")
    if not 0 < sample <= 1:
        raise ValueError(f"shadow sample {sample} is outside (0, 1]")
    if not 0 < cpu_budget <= 10:
        raise ValueError(f"shadow cpu_budget {cpu_budget} is outside (0, 10]")
    return {"version": version, "percent": percent, "sample": sample, "cpu_budget": cpu_budget}


def _shadow(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError("shadow must be an object")
    return shadow_settings(check_name("version", data["version"]), float(data["percent"]), float(data["sample"]),
                           float(data["cpu_budget"]))  # fmt: skip


POLICIES = ("fixed", "thompson")
_REWARD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_ARMS = 8


def experiment_settings(*, arms: list[str], policy: str, allocation: list[float], reward: str, epoch: int,
                        started: str, epoch_started: str, epoch_minutes: float) -> dict[str, Any]:  # fmt: skip
    """A pointer's ``experiment`` entry, checked (a ValueError names what is wrong). ``arms``:
    ``VERSION`` or ``VERSION:VARIANT``; ``allocation``: each arm's share of devices in this epoch."""
    if not 2 <= len(arms) <= MAX_ARMS or len(set(arms)) != len(arms):
        raise ValueError(f"an experiment has 2 to {MAX_ARMS} different arms, given {len(arms)}")
    for arm in arms:
        version, _, variant = str(arm).partition(":")
        check_name("version", version)
        if variant:
            check_name("version", variant)
    whole = [a for a in arms if ":" not in a]
    if any(a.split(":", 1)[0] in whole for a in arms if ":" in a):
        raise ValueError("an arm VERSION takes every variant of it: it overlaps an arm VERSION:VARIANT")
    if policy not in POLICIES:
        raise ValueError(f"experiment policy {policy!r} is not one of {', '.join(POLICIES)}")
    shares = [float(a) for a in allocation]
    if len(shares) != len(arms) or any(not 0 <= a <= 1 for a in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError("experiment allocation must give each arm a share, the shares summing to 1")
    if not 0 < float(epoch_minutes) <= 7 * 24 * 60:
        raise ValueError(f"experiment epoch_minutes {epoch_minutes} is outside (0, 10080]")
    if not isinstance(reward, str) or not _REWARD.fullmatch(reward):
        raise ValueError(f"experiment reward name {str(reward)[:40]!r} is not a letter then up to 63 of [A-Za-z0-9_.-]")
    return {"arms": [str(a) for a in arms], "policy": policy, "allocation": shares, "reward": reward,
            "epoch": int(epoch), "started": str(started), "epoch_started": str(epoch_started),
            "epoch_minutes": float(epoch_minutes)}  # fmt: skip


def _experiment(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError("experiment must be an object")
    return experiment_settings(**{k: data[k] for k in ("arms", "policy", "allocation", "reward", "epoch", "started",
                                                       "epoch_started", "epoch_minutes")})  # fmt: skip
