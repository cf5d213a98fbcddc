"""Finds targets through the ``packager.targets`` entry-point group, and only that way."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from packager.errors import MissingDependencyError, UnknownTargetError, did_you_mean
from packager.target import Target

GROUP = "packager.targets"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def target_names() -> list[str]:
    return sorted(_entry_points())


def load_target(name: str) -> Target:
    points = _entry_points()
    if name not in points:
        raise UnknownTargetError(
            f"unknown target '{name}'{did_you_mean(name, points)} (installed: {', '.join(sorted(points)) or 'none'})"
        )
    try:
        cls = points[name].load()
    except ImportError as exc:
        raise MissingDependencyError(
            f"target '{name}' cannot be loaded: {exc}",
            hint=f'pip install -c constraints.txt "packager[{name}]"',
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise UnknownTargetError(f"entry point '{name}' in {GROUP} is not a packager Target")
    return cls()


def resolve_targets(requested: list[str]) -> list[Target]:
    """Expand ``all`` and load each named target once, in the order given."""
    names: list[str] = []
    for item in requested:
        for name in target_names() if item == "all" else [item]:
            if name not in names:
                names.append(name)
    return [load_target(name) for name in names]
