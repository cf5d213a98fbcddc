"""What this device is: a DeviceProfile detected from the host, without importing any runtime."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import platform
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

from packager.registry.docs import normalize_arch
from packager.registry.profile import DeviceProfile
from packager.resources import read_toml

MIB = 1024 * 1024
_PLATFORMS = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "windows", "android": "android",
              "ios": "ios"}  # fmt: skip
# Distributions that install each runtime's Python module, first found wins.
_ORT_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


@cache
def settings() -> dict[str, Any]:
    """packager/resources/client.toml."""
    return read_toml("client.toml")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def litert_as_tensorflow(version: str) -> str:
    """The TensorFlow version whose TFLite models LiteRT ``version`` runs (client.toml's table)."""
    table = settings()["litert_tensorflow"]
    ours = _numbers(version)
    found = [(_numbers(k), v) for k, v in table.items() if _numbers(k) <= ours]
    return str(max(found)[1]) if found else str(table[min(table, key=_numbers)])


def _numbers(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def c_library_loads() -> bool:
    """Whether a C library built by a compiler for this OS can be loaded here (libc via ctypes)."""
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def runtimes() -> dict[str, str]:
    """Installed runtimes by the registry's names (onnxruntime, tflite, c) and their versions."""
    found: dict[str, str] = {}
    ort = next((v for v in map(_version, _ORT_DISTS) if v), None)
    if ort:
        found["onnxruntime"] = ort
    litert = _version("ai-edge-litert")
    tflite = litert_as_tensorflow(litert) if litert else _version("tflite-runtime")
    if tflite:
        found["tflite"] = tflite
    if sys.platform.startswith("linux") and c_library_loads():
        found["c"] = "c99"
    return found


def memory_mb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB
    except (AttributeError, ValueError, OSError):
        return None


def detect_profile(cache_dir: Path, device_id: str | None = None) -> DeviceProfile:
    """This host as a DeviceProfile: platform, arch, memory, free storage under ``cache_dir``,
    and the runtimes installed (found from package metadata; nothing heavy is imported)."""
    free = shutil.disk_usage(cache_dir).free / MIB if cache_dir.exists() else None
    return DeviceProfile(platform=_PLATFORMS.get(sys.platform, "linux"), device_id=device_id,
                         arch=normalize_arch(platform.machine() or "unknown"), os_version=platform.release()[:128],
                         runtimes=runtimes(), memory_mb=memory_mb(), storage_free_mb=free)  # fmt: skip
