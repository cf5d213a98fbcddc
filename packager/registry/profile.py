"""DeviceProfile: what a device says about itself, parsed and validated from JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packager.errors import ProfileError, did_you_mean
from packager.registry.docs import normalize_arch
from packager.vocab import RUNTIMES

PLATFORMS = ("ios", "android", "web", "linux", "macos", "windows")
ACCELERATORS = ("gpu", "npu", "ane", "nnapi", "webgpu", "webgl", "wasm-simd")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,31}")
_STRINGS = ("device_id", "arch", "os_version", "app_version", "network")
_NUMBERS = ("memory_mb", "storage_free_mb", "max_download_mb", "latency_budget_ms")
FIELDS = ("platform", "runtimes", "accelerators", *_STRINGS, *_NUMBERS)


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """A device's facts. Sizes are MiB (``memory_mb``, ``storage_free_mb``, ``max_download_mb``);
    None means unknown (not checked)."""

    platform: str
    device_id: str | None = None
    arch: str | None = None
    os_version: str | None = None
    app_version: str | None = None
    runtimes: Mapping[str, str] = field(default_factory=dict)
    memory_mb: float | None = None
    storage_free_mb: float | None = None
    accelerators: tuple[str, ...] = ()
    network: str | None = None
    max_download_mb: float | None = None
    latency_budget_ms: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> DeviceProfile:
        """Parse a profile; ProfileError names the field that is wrong and why."""
        if not isinstance(data, Mapping):
            raise ProfileError("a device profile must be a JSON object")
        for key in data:
            if key not in FIELDS:
                raise ProfileError(f"unknown profile field {str(key)[:40]!r}{did_you_mean(str(key), FIELDS)}")
        platform = data.get("platform")
        if platform not in PLATFORMS:
            raise ProfileError(f"platform must be one of {', '.join(PLATFORMS)}, not {str(platform)[:40]!r}")
        values: dict[str, Any] = {k: _text(k, data.get(k)) for k in _STRINGS}
        if values["arch"] is not None:
            values["arch"] = normalize_arch(values["arch"])
        values.update({k: _number(k, data.get(k)) for k in _NUMBERS})
        return cls(platform=platform, runtimes=_runtimes(data.get("runtimes", {})),
                   accelerators=_accelerators(data.get("accelerators", [])), **values)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in FIELDS}
        out["runtimes"], out["accelerators"] = dict(self.runtimes), list(self.accelerators)
        return out


def device_id_field(value: Any) -> str | None:
    """The ``device_id`` field checked as ``from_json`` checks it (ProfileError otherwise)."""
    return _text("device_id", value)


def _text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    # at most 128 characters, each printable ASCII (0x20-0x7e)
    if not isinstance(value, str) or len(value) > 128 or not (value.isascii() and value.isprintable()):
        raise ProfileError(f"{key} must be printable ASCII text of at most 128 characters")
    return value


MAX_NUMBER = 1e15  # past any memory, storage, size or latency a profile states (and exact as a float)


def _number(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{key} must be a non-negative number, not {str(value)[:40]!r}")
    # An int of hundreds of digits would overflow a float: compared as it is, before any conversion.
    if not (0 <= value <= MAX_NUMBER) or (isinstance(value, float) and not math.isfinite(value)):
        raise ProfileError(f"{key} must be a non-negative number of at most {MAX_NUMBER:.0e}, not {str(value)[:40]!r}")
    return float(value)


def _runtimes(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > len(RUNTIMES):
        raise ProfileError(f"runtimes must be an object of runtime name -> version ({', '.join(RUNTIMES)})")
    for name, version in value.items():
        if name not in RUNTIMES:
            raise ProfileError(f"unknown runtime {str(name)[:40]!r}{did_you_mean(str(name), RUNTIMES)}"
                               f" (known: {', '.join(RUNTIMES)})")  # fmt: skip
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ProfileError(f"runtimes.{name} must be a version string such as '1.17.0'")
    return dict(value)


def _accelerators(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > len(ACCELERATORS):
        raise ProfileError(f"accelerators must be a list from {', '.join(ACCELERATORS)}")
    for item in value:
        if item not in ACCELERATORS:
            raise ProfileError(f"unknown accelerator {str(item)[:40]!r}{did_you_mean(str(item), ACCELERATORS)}")
    return tuple(sorted(set(value)))
