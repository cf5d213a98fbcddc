"""The plugin interface: what a target declares and what the core gives it.

A target is a class registered under the ``packager.targets`` entry-point group. It states its
capabilities as class attributes, returns a pure plan (a list of steps) for a model, and says how
to run one of its variants so that the core can validate it. The core never asks which target
it is running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from packager.runtimes import Runner, RuntimeUnavailable
from packager.spec import ModelSpec
from packager.vocab import PRECISIONS, SOURCE_FORMATS

__all__ = [
    "PRECISIONS",
    "SOURCE_FORMATS",
    "Runner",
    "RuntimeUnavailable",
    "Step",
    "StepContext",
    "Target",
    "VariantInfo",
]


@dataclass(frozen=True, kw_only=True)
class VariantInfo:
    """What a step produces when it produces a deployable variant."""

    id: str
    precision: str
    runtime: str
    min_version: str
    main_file: str
    notes: str = ""
    arch: str = ""  # set for variants bound to one CPU architecture (a compiled library)


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """Everything a step may use. Steps read nothing else: no cwd, no environment."""

    spec: ModelSpec
    options: Any
    out_dir: Path
    tmp_dir: Path
    inputs: Mapping[str, Path]
    log: Callable[[str], None]
    cache_dir: Path
    checks: list[dict[str, Any]] = field(default_factory=list)

    def check(self, name: str, value: int | float, limit: int | float) -> bool:
        """Record a budget check for build.json; returns whether it holds."""
        ok = value <= limit
        self.checks.append({"name": name, "value": value, "limit": limit, "ok": ok})
        return ok

    def unchecked(self, name: str, reason: str) -> None:
        """Record a check that could not run here, and why (never counted as passed)."""
        self.checks.append({"name": name, "ok": None, "reason": reason})


@dataclass(frozen=True, kw_only=True)
class Step:
    """One unit of work: reads the artifacts of ``requires``, writes only under its out_dir.

    ``run`` returns the path of the artifact it made (a file or folder under out_dir).
    ``inputs`` in its context maps each required step's name to that step's artifact, and
    ``"model"`` to the first one's.
    Steps whose ``variant`` is set make a deployable variant; the core validates it.
    """

    name: str
    description: str
    run: Callable[[StepContext], Path]
    requires: tuple[str, ...] = ()
    variant: VariantInfo | None = None
    skipped: str = ""  # planned but not built, and why (recorded in build.json)


class Target:
    """Base class of targets. Subclasses set the class attributes and implement plan/runner."""

    name: ClassVar[str]
    summary: ClassVar[str]
    emits: ClassVar[str]
    accepts: ClassVar[frozenset[str]] = SOURCE_FORMATS
    precisions: ClassVar[tuple[str, ...]] = PRECISIONS
    tools: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    budgets: ClassVar[Mapping[str, int]] = {}
    # Takes static shapes only: every dim but the batch fixed at one sample's (recorded per variant).
    static_shapes: ClassVar[bool] = False
    # Checking a variant costs more than converting it (a page in a browser): the build converts
    # such targets first, so that their checks run beside the other targets' conversions.
    slow_checks: ClassVar[bool] = False
    Options: ClassVar[type] = type(None)

    def check(self, spec: ModelSpec) -> None:
        """Raise a PackagerError when this target cannot take the model (e.g. an op)."""

    def warm_up(self) -> None:
        """Start what checking this target's variants will need (a browser), on a thread of the
        build's while the model is imported; never raises (the check itself reports failures)."""

    def plan(self, spec: ModelSpec, options: Any, precisions: tuple[str, ...]) -> list[Step]:
        raise NotImplementedError

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> Runner:
        """Load a variant in its runtime; raise RuntimeUnavailable when that runtime is not here."""
        raise NotImplementedError

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        """An estimate of the memory a device needs to run one sample, or None."""
        return None
