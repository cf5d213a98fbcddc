"""The Python device client: resolve, download (Range resume), verify (sha256, TUF with a pinned
root), install into a cache, load in the right runtime, fall back, report telemetry.

    from packager.client import Client

    with Client("https://models.example.com", "digits", cache_dir="~/.cache/packager") as client:
        model = client.load()
        outputs = model.predict({"x": batch})
"""

from __future__ import annotations

from packager.client.client import Client, Installed, Model
from packager.client.profile import detect_profile

__all__ = ["Client", "Installed", "Model", "detect_profile"]
