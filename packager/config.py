"""Options, parsed from ``[tool.packager]`` (pyproject.toml) or ``packager.toml``.

Precedence, highest first: CLI flag > ``PACKAGER_*`` environment variable > per-target table
(``[tool.packager.target.<name>]``) > global table > the defaults in resources/defaults.toml.
A target's own keys take the same route: ``--set <target>.<key>=<value>`` >
``PACKAGER_TARGET_<TARGET>_<KEY>`` (e.g. ``PACKAGER_TARGET_LAMBDA_ZIP_ENGINE=native``) > its table.
Unknown keys are errors that name the key and its closest valid spelling.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.errors import ConfigError, did_you_mean
from packager.plugins import target_names
from packager.resources import read_toml
from packager.spec import Preprocessing
from packager.target import PRECISIONS

GLOBAL_KEYS = {
    "name": str, "version": str, "out": str, "targets": list, "precisions": list,
    "samples": str, "num_samples": int, "seed": int, "strict": bool, "latency": bool, "step_timeout": int,
    "input_shapes": dict, "labels": list, "preprocessing": dict, "tolerance": dict, "target": dict,
}  # fmt: skip
TARGET_KEYS = {"precisions": list, "tolerance": dict, "latency": bool}
# What each key of [tool.packager] means (`packager config` prints them with their defaults).
GLOBAL_HELP = {
    "name": "the model's name in the output and the registry (default: the model file's stem)",
    "version": "the version built (default: 1); a version folder in --out is replaced only with --force",
    "out": "the output folder (--out)",
    "targets": 'targets built when --target is not given; ["all"] builds every installed one',
    "precisions": "precisions built where a target has them (--precision)",
    "samples": "a .npz of sample inputs, one array per input (--samples); default: generated",
    "num_samples": "how many samples are generated when there is no samples file",
    "seed": "the seed of the generated samples",
    "strict": "fail the build when any variant fails validation, not only fp32 (--strict)",
    "latency": "measure each variant's latency here (--no-latency turns it off)",
    "step_timeout": "seconds one step (a converter in the worker process) may run before it is stopped",
    "input_shapes": "static-shape targets' fixed input shapes, {x = [1, 3, 320, 320]} (--input-shape)",
    "labels": "class labels of a classifier's outputs, in order",
    "preprocessing": "baked into every bundle: mean, std (per channel), scale, channel_axis",
    "tolerance": "[tolerance.<precision>] atol, rtol, min_top1_agreement: when a variant passes",
    "target": "[target.<name>]: precisions, tolerance, latency for that target, and its own keys",
}
PREPROCESSING_KEYS = {"mean": (list, float, int), "std": (list, float, int),
                      "scale": (float, int), "channel_axis": int}  # fmt: skip
TOLERANCE_KEYS = {"atol": (float, int), "rtol": (float, int), "min_top1_agreement": (float, int)}
ENV_KEYS = {
    "name": str,
    "version": str,
    "out": str,
    "targets": list,
    "precisions": list,
    "samples": str,
    "num_samples": int,
    "seed": int,
    "strict": bool,
    "latency": bool,
    "step_timeout": int,
}


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    atol: float
    rtol: float
    min_top1_agreement: float


@dataclass(frozen=True, kw_only=True)
class TargetSettings:
    """What the core uses for one target after precedence is applied."""

    precisions: tuple[str, ...]
    tolerance: Mapping[str, Tolerance]
    latency: bool
    options: Any = None


@dataclass(frozen=True, kw_only=True)
class Config:
    """The parsed configuration: global values plus the raw per-target tables."""

    values: Mapping[str, Any]
    target_tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    origin: str = "defaults"

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def preprocessing(self) -> Preprocessing:
        table = self.values.get("preprocessing") or {}

        def tup(v: Any) -> tuple[float, ...] | None:
            if v is None:
                return None
            return tuple(float(x) for x in (v if isinstance(v, list) else [v]))

        scale = table.get("scale")
        return Preprocessing(
            mean=tup(table.get("mean")), std=tup(table.get("std")),
            scale=None if scale is None else float(scale), channel_axis=table.get("channel_axis"),
        )  # fmt: skip

    def for_target(self, name: str, options_cls: type, cli: Mapping[str, Any]) -> TargetSettings:
        """Settings for one target: defaults < global < per-target < env < CLI.

        ``cli["options"]`` maps target names to their ``--set`` keys and raw string values.
        """
        table = dict(self.target_tables.get(name, {}))
        own = {k: table.pop(k) for k in list(table) if k not in TARGET_KEYS}
        own.update(self._option_overrides(name, options_cls, cli.get("options") or {}))
        merged = {k: self.values.get(k) for k in TARGET_KEYS}
        tolerance = _merge_tolerance(self.values.get("tolerance", {}), table.get("tolerance", {}))
        merged.update({k: v for k, v in table.items() if k != "tolerance"})
        for key in ("precisions", "latency"):
            if key in self.values.get("_env", {}):
                merged[key] = self.values["_env"][key]
            if cli.get(key) is not None:
                merged[key] = cli[key]
        return TargetSettings(
            precisions=_precisions(merged["precisions"], f"target.{name}.precisions"),
            tolerance=tolerance,
            latency=bool(merged["latency"]),
            options=_target_options(options_cls, own, f"{self.origin}: target.{name}"),
        )

    def _option_overrides(self, name: str, options_cls: type,
                          cli: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:  # fmt: skip
        """A target's keys from ``PACKAGER_TARGET_<TARGET>_<KEY>``, then ``--set``, typed as its options."""
        prefix = f"PACKAGER_TARGET_{name.upper().replace('-', '_')}_"
        raw = {k.removeprefix(prefix).lower(): (v, k) for k, v in self.values.get("_target_env", {}).items()
               if k.startswith(prefix)}  # fmt: skip
        raw.update({k: (v, f"--set {name}.{k}") for k, v in cli.get(name, {}).items()})
        return {key: _parse_option(options_cls, key, value, where) for key, (value, where) in raw.items()}


def _parse_option(options_cls: type, key: str, raw: str, where: str) -> Any:
    """A string from the environment or the CLI as the type of the option's default."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)} if dataclasses.is_dataclass(options_cls) else {}
    if key not in fields:
        raise ConfigError(f"{where}: unknown key `{key}`{did_you_mean(key, fields)}"
                          f" (valid keys: {', '.join(sorted(fields)) or 'none'})")  # fmt: skip
    default = fields[key].default
    kind = type(default) if default is not dataclasses.MISSING else str
    try:
        return _parse_env(raw, kind)
    except ValueError as exc:
        raise ConfigError(f"{where}={raw!r}: {exc}") from exc


def describe() -> list[tuple[str, str, str]]:
    """Every key as (key, default, meaning): [tool.packager]'s, then each installed target's own."""
    from packager.plugins import load_target

    defaults = read_toml("defaults.toml")
    rows = [(key, _shown(defaults.get(key)), meaning) for key, meaning in GLOBAL_HELP.items()]
    for name in target_names():
        options = getattr(load_target(name), "Options", None)
        if not dataclasses.is_dataclass(options):
            continue
        helps = getattr(options, "HELP", {})
        for f in dataclasses.fields(options):
            rows.append((f"target.{name}.{f.name}", _shown(f.default), helps.get(f.name, "")))
    return rows


def _shown(value: Any) -> str:
    if value is None or value is dataclasses.MISSING:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{…}"
    return str(value)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where downloaded runtime wheels and tools are kept between builds."""
    env = environ if environ is not None else os.environ
    if env.get("PACKAGER_CACHE_DIR"):
        return Path(env["PACKAGER_CACHE_DIR"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "packager"


def load(cwd: Path, explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read defaults, then the project's file, then the environment."""
    values: dict[str, Any] = read_toml("defaults.toml")
    origin = "defaults"
    table, origin = _read_project_table(cwd, explicit)
    prefix = "tool.packager." if origin.endswith("pyproject.toml") else ""
    _check_table(table, GLOBAL_KEYS, origin, prefix)
    targets = table.pop("target", {})
    installed = target_names()
    for tname, ttable in targets.items():
        if not isinstance(ttable, dict):
            raise ConfigError(f"{origin}: `{prefix}target.{tname}` must be a table")
        if tname not in installed:
            raise ConfigError(f"{origin}: `{prefix}target.{tname}` is not an installed target"
                              f"{did_you_mean(tname, installed)} (installed: {', '.join(installed)})")  # fmt: skip
        _check_types(ttable, TARGET_KEYS, origin, f"{prefix}target.{tname}.", allow_extra=True)
    tolerance = _merge_tolerance(values.pop("tolerance"), table.pop("tolerance", {}), origin)
    values.update(table)
    values["tolerance"] = {k: dataclasses.asdict(v) for k, v in tolerance.items()}
    env = _read_env(environ if environ is not None else os.environ)
    values.update(env)
    values["_env"] = env
    source = environ if environ is not None else os.environ
    values["_target_env"] = {k: v for k, v in source.items() if k.startswith("PACKAGER_TARGET_") and v != ""}
    _precisions(values["precisions"], f"{prefix}precisions")
    return Config(values=values, target_tables=targets, origin=origin)


def _read_project_table(cwd: Path, explicit: Path | None) -> tuple[dict[str, Any], str]:
    candidates = [explicit] if explicit else [cwd / "packager.toml", cwd / "pyproject.toml"]
    for path in candidates:
        if path is None or not path.is_file():
            if explicit:
                raise ConfigError(f"config file '{explicit}' does not exist")
            continue
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path.name} is not valid TOML: {exc}") from exc
        if path.name == "pyproject.toml":
            table = data.get("tool", {}).get("packager")
            if table is None:
                continue
            return dict(table), path.name
        return _unwrapped(data, path.name), path.name
    return {}, "defaults"


def _unwrapped(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A packager.toml holds the keys at its top level; one written as the README's pyproject.toml
    examples are, under ``[tool.packager]``, is read the same."""
    tool = data.get("tool")
    if not isinstance(tool, dict) or "packager" not in tool:
        return data
    others = sorted(k for k in data if k != "tool") + sorted(f"tool.{k}" for k in tool if k != "packager")
    if others or not isinstance(tool["packager"], dict):
        raise ConfigError(f"{name}: keys go either at the top level or under [tool.packager], not both "
                          f"(found {', '.join(others) or 'tool.packager = a value'})")  # fmt: skip
    return dict(tool["packager"])


def _check_table(table: Mapping[str, Any], keys: Mapping[str, Any], origin: str, prefix: str) -> None:
    _check_types(table, keys, origin, prefix)
    _check_types(table.get("preprocessing", {}), PREPROCESSING_KEYS, origin, prefix + "preprocessing.")


def _check_types(table: Mapping[str, Any], keys: Mapping[str, Any], origin: str, prefix: str,
                 allow_extra: bool = False) -> None:  # fmt: skip
    for key, value in table.items():
        if key not in keys:
            if allow_extra:
                continue
            raise ConfigError(
                f"{origin}: unknown key `{prefix}{key}`{did_you_mean(key, keys)}"
                f" (valid keys: {', '.join(sorted(keys))})"
            )
        want = keys[key]
        if isinstance(value, bool) and want is not bool and bool not in _as_tuple(want):
            raise ConfigError(f"{origin}: `{prefix}{key}` must be {_type_name(want)}, not a boolean")
        if not isinstance(value, want):
            raise ConfigError(f"{origin}: `{prefix}{key}` must be {_type_name(want)}")


def _as_tuple(want: Any) -> tuple[type, ...]:
    return want if isinstance(want, tuple) else (want,)


def _type_name(want: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "an array", dict: "a table"}  # fmt: skip
    return " or ".join(names[t] for t in _as_tuple(want))


def _merge_tolerance(base: Mapping[str, Any], override: Mapping[str, Any],
                     origin: str = "config") -> dict[str, Tolerance]:  # fmt: skip
    merged: dict[str, Tolerance] = {}
    for precision in PRECISIONS:
        current = dict(base.get(precision, {}))
        if precision in override:
            _check_types(override[precision], TOLERANCE_KEYS, origin, f"tolerance.{precision}.")
            current.update(override[precision])
        merged[precision] = Tolerance(**{k: float(v) for k, v in current.items()})
    for key in override:
        if key not in PRECISIONS:
            raise ConfigError(f"{origin}: unknown key `tolerance.{key}`{did_you_mean(key, PRECISIONS)}")
    return merged


def _precisions(value: Any, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if item not in PRECISIONS:
            raise ConfigError(f"`{key}`: invalid precision '{item}'{did_you_mean(item, PRECISIONS)}"
                              f" (choose from: {', '.join(PRECISIONS)})")  # fmt: skip
    return tuple(p for p in PRECISIONS if p in items)


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, kind in ENV_KEYS.items():
        raw = environ.get(f"PACKAGER_{key.upper()}")
        if raw is None or raw == "":
            continue
        try:
            found[key] = _parse_env(raw, kind)
        except ValueError as exc:
            raise ConfigError(f"PACKAGER_{key.upper()}={raw!r}: {exc}") from exc
    return found


def _parse_env(raw: str, kind: type) -> Any:
    if kind is list:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if kind is bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return raw


def _target_options(options_cls: type, table: Mapping[str, Any], where: str) -> Any:
    if not dataclasses.is_dataclass(options_cls):
        if table:
            raise ConfigError(f"{where}: this target takes no options, got {', '.join(table)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    for key in table:
        if key not in fields:
            valid = list(fields) + list(TARGET_KEYS)
            raise ConfigError(f"{where}: unknown key `{key}`{did_you_mean(key, valid)}"
                              f" (valid keys: {', '.join(sorted(valid))})")  # fmt: skip
    try:
        return options_cls(**table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
