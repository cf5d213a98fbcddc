"""Resolution: which variant of which version a device gets. A pure function of its inputs.

Keep the variants whose runtime (name, and minimum version at most the device's), platform,
arch (native libraries), memory estimate and download size fit the profile; rank them by
meeting the latency budget (p50 measured on the build host x the platform's factor in
registry.toml: a coarse device-class estimate), then fidelity (verified before unverified,
then lower max abs error), then size, then id. None fits: the model's cloud endpoint, with the
constraint that excluded the most variants as the reason. Rollout cohorts are sticky: a hash of
(device_id, model, channel) mapped to [0, 100) against the candidate's percent.

An experiment (the pointer's ``experiment``) puts every device with an id in one of its arms: a
hash of (device_id, model, channel, epoch) against the allocation's cumulative shares, so a
device keeps its arm within an allocation epoch. The arm names a version, and maybe the one
variant of it to send (when that variant does not fit, the version's best fitting one).

A shadow run (the pointer's ``shadow``) takes a second, independent hash: a device of the stable
cohort under the shadow's percent gets ``shadow`` in its resolution, the variant of the shadow
version it runs beside stable (the same target and precision as its own where one fits).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from packager.errors import RegistryError
from packager.registry.docs import Pointer, facts, iso
from packager.registry.profile import DeviceProfile

MIB = 1024 * 1024
CONSTRAINTS = ("runtime", "platform", "arch", "memory", "download size", "free storage")
_NUMERIC = re.compile(r"v?(\d+(?:\.\d+)*)")


@dataclass(frozen=True, kw_only=True)
class Resolution:
    model: str
    version: str
    cohort: str
    variant: Mapping[str, Any] | None
    fallbacks: tuple[Mapping[str, Any], ...]
    cloud: Mapping[str, Any] | None
    reason: str
    expires: str
    shadow: Mapping[str, Any] | None = None  # {"version", "variant", "sample", "cpu_budget"}
    arm: int | None = None  # the experiment arm's index (cohort "experiment")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"model": self.model, "version": self.version, "cohort": self.cohort,
                "variant": None if self.variant is None else dict(self.variant),
                "fallbacks": [dict(f) for f in self.fallbacks],
                "cloud": None if self.cloud is None else dict(self.cloud), "reason": self.reason,
                "expires": self.expires}  # fmt: skip
        if self.shadow is not None:
            doc["shadow"] = dict(self.shadow)
        if self.arm is not None:
            doc["arm"] = self.arm
        return doc


def cohort_bucket(device_id: str, model: str, channel: str) -> float:
    """The device's place in [0, 100) for this model and channel; the same every time."""
    digest = hashlib.sha256(f"{device_id}\x00{model}\x00{channel}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def cohort(pointer: Pointer, device_id: str | None) -> str:
    """The resolution's cohort of ``device_id``: ``candidate`` when a rollout runs and its bucket
    is under the percent, ``experiment`` in an experiment, else ``stable``."""
    return _cohort_name(cohort_of(pointer)(device_id))


def in_shadow(pointer: Pointer, device_id: str | None) -> bool:
    """Whether the device runs the pointer's shadow version (its own hash, independent of the
    rollout's: shadow devices are a sample of the stable cohort)."""
    if pointer.shadow is None or not device_id:
        return False
    return cohort_bucket(device_id, pointer.model, f"{pointer.channel}\x00shadow") < float(pointer.shadow["percent"])


def cohort_of(pointer: Pointer) -> Callable[[str | None], str]:
    """The device's group: ``candidate``, ``shadow`` (stable, running the shadow beside it) or
    ``stable``; the pointer's part of the hashed bytes encoded once (a server computes it for
    every resolve)."""
    if pointer.experiment is not None:
        return _arm_of(pointer)
    percent = pointer.percent if pointer.candidate is not None else 0
    shadow = float(pointer.shadow["percent"]) if pointer.shadow is not None else 0.0
    if percent <= 0 and shadow <= 0:
        return lambda device_id: "stable"
    suffix = f"\x00{pointer.model}\x00{pointer.channel}".encode()
    shadow_suffix = suffix + b"\x00shadow"
    sha256 = hashlib.sha256

    def group(device_id: str | None) -> str:
        if not device_id:
            return "stable"
        key = device_id.encode()
        if percent > 0 and int.from_bytes(sha256(key + suffix).digest()[:8], "big") / 2**64 * 100 < percent:
            return "candidate"
        if shadow > 0 and int.from_bytes(sha256(key + shadow_suffix).digest()[:8], "big") / 2**64 * 100 < shadow:
            return "shadow"
        return "stable"

    return group


def _arm_of(pointer: Pointer) -> Callable[[str | None], str]:
    """``arm:<i>``: the device's arm in the experiment's current epoch (a device without an id:
    ``stable``)."""
    experiment = pointer.experiment or {}
    suffix = f"\x00{pointer.model}\x00{pointer.channel}\x00epoch-{experiment['epoch']}".encode()
    edges, total = [], 0.0
    for share in experiment["allocation"]:
        total += float(share) * 100
        edges.append(total)
    sha256 = hashlib.sha256

    def group(device_id: str | None) -> str:
        if not device_id:
            return "stable"
        bucket = int.from_bytes(sha256(device_id.encode() + suffix).digest()[:8], "big") / 2**64 * 100
        for index, edge in enumerate(edges):
            if bucket < edge:
                return f"arm:{index}"
        return f"arm:{len(edges) - 1}"

    return group


def version_ok(have: str | None, need: str) -> bool:
    """Whether runtime version ``have`` is at least ``need`` (dotted numbers). A minimum that is
    not numeric (``c99``) asks only that the runtime is there."""
    if have is None:
        return False
    wanted = _NUMERIC.fullmatch(need.strip())
    if wanted is None:
        return True
    got = _NUMERIC.match(have.strip())
    if got is None:
        return False
    a = [int(x) for x in got.group(1).split(".")]
    b = [int(x) for x in wanted.group(1).split(".")]
    width = max(len(a), len(b))
    return a + [0] * (width - len(a)) >= b + [0] * (width - len(b))


def failures(variant: Mapping[str, Any], profile: DeviceProfile) -> list[str]:
    """The constraints of ``profile`` that ``variant`` breaks (empty: it fits)."""
    failed = []
    runtime = variant["runtime"]
    if not version_ok(profile.runtimes.get(runtime["name"]), str(runtime["min_version"])):
        failed.append("runtime")
    if profile.platform not in variant["platforms"]:
        failed.append("platform")
    if variant.get("arch") is not None and profile.arch not in variant["arch"]:
        failed.append("arch")
    memory = variant.get("peak_memory_mb")
    if profile.memory_mb is not None and memory is not None and memory > profile.memory_mb:
        failed.append("memory")
    if profile.max_download_mb is not None and download_bytes(variant) > profile.max_download_mb * MIB:
        failed.append("download size")
    if profile.storage_free_mb is not None and download_bytes(variant) > profile.storage_free_mb * MIB:
        failed.append("free storage")
    return failed


def download_bytes(variant: Mapping[str, Any]) -> int:
    """What a device downloads of a variant (documents published before device_bytes: all of it)."""
    return int(variant.get("device_bytes", variant["bytes"]))


def estimated_latency_ms(variant: Mapping[str, Any], profile: DeviceProfile) -> float | None:
    p50 = (variant.get("latency_ms") or {}).get("p50")
    if p50 is None:
        return None
    return float(p50) * float(facts()["latency_factor"].get(profile.platform, 1.0))


def rank_key(variant: Mapping[str, Any], profile: DeviceProfile) -> tuple[Any, ...]:
    """Budget met, then verified, then lower error, then smaller, then id (deterministic)."""
    latency = estimated_latency_ms(variant, profile)
    budget = profile.latency_budget_ms
    meets = budget is None or (latency is not None and latency <= budget)
    fidelity = variant.get("fidelity") or {}
    err = fidelity.get("max_abs_err")
    return (not meets, fidelity.get("status") != "verified", math.inf if err is None else float(err),
            download_bytes(variant), variant["id"])  # fmt: skip


def _default_url(sha256: str) -> str:
    return f"/v1/artifacts/{sha256}"


def resolve(pointer: Pointer, versions: Mapping[str, Mapping[str, Any]], profile: DeviceProfile, *,
            now: datetime, artifact_url: Callable[[str], str] = _default_url) -> Resolution:  # fmt: skip
    """The Resolution of ``profile`` against a channel ``pointer`` and its version documents."""
    if pointer.stable is None:
        raise RegistryError(f"{pointer.model} has no stable version on channel {pointer.channel}")
    group = cohort_of(pointer)(profile.device_id)
    version: str = pointer.stable
    pinned: str | None = None  # an arm's one variant
    if group == "candidate" and pointer.candidate in versions:
        version = str(pointer.candidate)
    elif group == "candidate":
        group = "stable"
    elif group.startswith("arm:"):
        version, _, pinned = str((pointer.experiment or {})["arms"][int(group[4:])]).partition(":")
    if version not in versions:
        raise RegistryError(f"{pointer.model} version {version} is missing from the registry")
    doc = versions[version]
    devices = [v for v in doc["variants"] if v.get("device", True)]
    fitting = sorted((v for v in devices if not failures(v, profile)),
                     key=lambda v: (pinned is not None and v["id"] != pinned, *rank_key(v, profile)))  # fmt: skip
    ttl = timedelta(seconds=int(facts()["resolve"]["ttl_seconds"]))
    chosen = [_served(v, artifact_url) for v in fitting]
    reason = _reason_fit(fitting[0], profile, len(fitting), len(devices)) if fitting else _reason_none(devices, profile)
    shadow = _shadow(pointer, versions, profile, fitting[0], artifact_url) if group == "shadow" and fitting else None
    return Resolution(model=pointer.model, version=version, cohort=_cohort_name(group),
                      variant=chosen[0] if chosen else None, fallbacks=tuple(chosen[1:]), cloud=doc.get("cloud"),
                      reason=reason if fitting or doc.get("cloud") else reason + "; no cloud endpoint is configured",
                      expires=iso(now + ttl), shadow=shadow,
                      arm=int(group[4:]) if group.startswith("arm:") else None)  # fmt: skip


def _cohort_name(group: str) -> str:
    if group.startswith("arm:"):
        return "experiment"
    return "candidate" if group == "candidate" else "stable"


def _shadow(pointer: Pointer, versions: Mapping[str, Mapping[str, Any]], profile: DeviceProfile,
            own: Mapping[str, Any], artifact_url: Callable[[str], str]) -> dict[str, Any] | None:  # fmt: skip
    """What a shadow device runs beside ``own``: the shadow version's variant of the same target
    and precision when one fits, else its best fitting one; None when none fits."""
    settings = pointer.shadow or {}
    doc = versions.get(str(settings.get("version")))
    if doc is None:
        return None
    fitting = [v for v in doc["variants"] if v.get("device", True) and not failures(v, profile)]
    if not fitting:
        return None
    best = min(fitting, key=lambda v: ((v["target"], v["precision"]) != (own["target"], own["precision"]),
                                       *rank_key(v, profile)))  # fmt: skip
    return {"version": settings["version"], "variant": _served(best, artifact_url), "sample": settings["sample"],
            "cpu_budget": settings["cpu_budget"]}  # fmt: skip


def _served(variant: Mapping[str, Any], artifact_url: Callable[[str], str]) -> dict[str, Any]:
    main = variant["main"]
    return {"id": variant["id"], "target": variant["target"], "precision": variant["precision"],
            "runtime": dict(variant["runtime"]), "url": artifact_url(main["sha256"]), "sha256": main["sha256"],
            "bytes": main["bytes"], "path": main["path"],
            "files": [{**f, "url": artifact_url(f["sha256"])} for f in variant["files"]]} | (
            {"state": variant["state"]} if variant.get("state") else {})  # fmt: skip


def _reason_fit(variant: Mapping[str, Any], profile: DeviceProfile, fit: int, total: int) -> str:
    latency = estimated_latency_ms(variant, profile)
    budget = profile.latency_budget_ms
    if budget is None:
        timing = "no latency budget"
    elif latency is None:
        timing = "latency not measured"
    else:
        timing = f"~{latency:.3g} ms {'within' if latency <= budget else 'over'} the {budget:g} ms budget"
    fidelity = variant["fidelity"]
    err = fidelity.get("max_abs_err")
    quality = fidelity["status"] + ("" if err is None else f", max abs err {err:.3g}")
    size = f"{download_bytes(variant)} bytes to download"
    return f"{variant['id']}: {fit} of {total} device variants fit; {timing}; {quality}; {size}"


def _reason_none(variants: list[Mapping[str, Any]], profile: DeviceProfile) -> str:
    if not variants:
        return "this version has no device variant: use the cloud endpoint"
    counts = {name: 0 for name in CONSTRAINTS}
    for variant in variants:
        for name in failures(variant, profile):
            counts[name] += 1
    worst = max(CONSTRAINTS, key=lambda name: counts[name])  # ties: the first in CONSTRAINTS
    return (
        f"no variant fits this {profile.platform} device: {worst} excluded {counts[worst]} of "
        f"{len(variants)} variants; use the cloud endpoint"
    )
