"""Device profiles drawn at random, every field of them: the resolve tests' generator, and the one
bench/manifest_server.py rotates through."""

from __future__ import annotations

import random
from typing import Any

from packager.registry.profile import ACCELERATORS, PLATFORMS
from packager.vocab import RUNTIMES

RUNTIME_VERSIONS = ["0.9", "1.12", "1.13", "1.17.0", "1.20", "2.13", "2.16", "4.22.0", "7", "c99"]


def random_profile(rng: random.Random, i: int) -> dict[str, Any]:
    """A device profile with every field drawn at random (absent fields are unknown)."""
    profile: dict[str, Any] = {"platform": rng.choice(PLATFORMS), "device_id": f"device-{i}"}
    runtimes = rng.sample(RUNTIMES, rng.randint(0, 3))
    profile["runtimes"] = {name: rng.choice(RUNTIME_VERSIONS) for name in runtimes}
    optional = {
        "arch": lambda: rng.choice(["x86_64", "amd64", "arm64", "aarch64", "armv7"]),
        "memory_mb": lambda: rng.choice([0.5, 2, 64, 2048]),
        "storage_free_mb": lambda: rng.choice([0.001, 0.05, 1, 1000]),
        "max_download_mb": lambda: rng.choice([0.005, 0.02, 0.1, 50]),
        "latency_budget_ms": lambda: rng.choice([0.001, 1, 100]),
        "accelerators": lambda: rng.sample(ACCELERATORS, rng.randint(0, 2)),
        "os_version": lambda: "14.2",
    }
    for key, make in optional.items():
        if rng.random() < 0.6:
            profile[key] = make()
    return profile
