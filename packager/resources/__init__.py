"""Data files: limits, defaults, tolerances and the report page."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any


def read_text(name: str) -> str:
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def read_toml(name: str) -> dict[str, Any]:
    return tomllib.loads(read_text(name))


def template_path(*parts: str) -> Path:
    """A file under ``templates/`` (``packager/templates`` when installed; a link to the repository's
    ``templates/`` in a checkout)."""
    return Path(str(files("packager").joinpath("templates", *parts)))


def handler_path(name: str) -> Path:
    """A handler file that runs inside bundles (``handlers/``, installed as ``packager/handlers``)."""
    return Path(str(files("packager").joinpath("handlers", name)))


def fill(text: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; every placeholder must have a value."""
    import re

    def swap(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return re.sub(r"\{\{(\w+)\}\}", swap, text)
