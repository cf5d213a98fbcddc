"""Names and keys of the registry layout, validated in one place (no traversal, bounded length)."""

from __future__ import annotations

import re

from packager.errors import InvalidNameError, RegistryError

MAX_NAME = 64
# Never ending in '.': a version "1." would make the key "1..json".
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?")
_HEX = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*")  # "=": partitions (model=m)
MAX_KEY = 512


def check_name(kind: str, value: str) -> str:
    """``value`` when it is a valid model, channel or version name; else InvalidNameError.

    Names start with a letter or digit, hold only letters, digits, '.', '_' and '-', do not end
    with '.', hold no '..', and are at most 64 characters (they become path segments, URL parts
    and, with '.json' appended, file names).
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        shown = value if isinstance(value, str) else type(value).__name__
        raise InvalidNameError(f"invalid {kind} name {shown[:80]!r}: {_why_not(value)}")
    return value


def _why_not(value: object) -> str:
    """The rule a name breaks, first one first."""
    if not isinstance(value, str):
        return "a name is text"
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if not (value[0].isascii() and value[0].isalnum()):
        return "it must start with a letter or digit"
    if ".." in value:
        return "it must not hold '..'"
    if value.endswith("."):
        return "it must not end with '.'"
    return "use only letters, digits, '.', '_' and '-'"


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise InvalidNameError(f"invalid sha256 {str(value)[:80]!r}: 64 lowercase hex digits expected")
    return value


def check_key(key: str) -> str:
    """A store key: '/'-separated safe segments, no '..', no leading '/', bounded length."""
    if len(key) > MAX_KEY or not _KEY.fullmatch(key) or ".." in key:
        raise RegistryError(f"invalid registry key {key[:120]!r}", hint="this is a bug; please report it")
    return key


def artifact_key(sha256: str) -> str:
    return f"artifacts/sha256/{check_sha256(sha256)}"


def version_key(model: str, version: str) -> str:
    return f"models/{check_name('model', model)}/versions/{check_name('version', version)}.json"


def versions_prefix(model: str) -> str:
    return f"models/{check_name('model', model)}/versions/"


def pointer_key(model: str, channel: str) -> str:
    return f"models/{check_name('model', model)}/channels/{check_name('channel', channel)}.json"


def pointer_copy_key(model: str, channel: str, sha256: str) -> str:
    """The immutable copy of one pointer document, named as TUF's consistent snapshots name it."""
    return f"models/{check_name('model', model)}/channels/{check_sha256(sha256)}.{check_name('channel', channel)}.json"


def consistent_key(target_path: str, sha256: str) -> str:
    """Where the bytes of a TUF target live: mutable pointers by their hash-prefixed copy."""
    parts = target_path.split("/")
    if len(parts) == 4 and parts[0] == "models" and parts[2] == "channels":
        return f"{'/'.join(parts[:3])}/{check_sha256(sha256)}.{parts[3]}"
    return target_path
