"""Write-API tokens: random secrets shown once, stored as salted scrypt hashes, scoped per model.

A token reads ``pkt_<id>_<secret>``: the id picks its entry in the tokens file (so a check costs
one scrypt, not one per entry), the secret holds 256 random bits. The file (JSON, mode 0600)::

    {"schema": 1, "tokens": [{"id", "model": "<model>" | "*", "salt", "scrypt", "n", "r", "p",
                              "created", "note"}]}

The server reads it again whenever its modification time changes, so ``packager token add``
takes effect without a restart.

Checking a secret costs one scrypt (about 50 ms of CPU): ``Tokens.verify`` runs it on a worker
thread, at most ``SCRYPT_AT_ONCE`` at a time, so a burst of wrong secrets never holds the event
loop, and a secret that passed is remembered by its SHA-256 for ``VERIFIED_SECONDS`` (a client
publishing many files, or rolling out, pays scrypt once). The memory is bounded and dropped when
the tokens file changes, so a revoked token stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from packager.errors import ServiceError, UsageError
from packager.registry.docs import iso
from packager.registry.names import check_name
from packager.resources import read_toml

ANY_MODEL = "*"

_TOKEN = re.compile(r"pkt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="packager"'}
SCRYPT_AT_ONCE = 2
VERIFIED_SECONDS = 60.0
VERIFIED_MOST = 1024


def _forbidden() -> ServiceError:
    return ServiceError(403, "forbidden", "the token is not valid for this server")


@cache
def _params() -> dict[str, int]:
    return {k: int(v) for k, v in read_toml("server.toml")["tokens"].items()}


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32).hex()


@dataclass(frozen=True, kw_only=True)
class Entry:
    id: str
    model: str
    salt: bytes
    digest: str
    n: int
    r: int
    p: int

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(_hash(secret, self.salt, self.n, self.r, self.p), self.digest)

    def allows(self, model: str) -> bool:
        return self.model in (ANY_MODEL, model)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        tokens = data["tokens"]
        if data.get("schema") != 1 or not isinstance(tokens, list):
            raise ValueError("not a schema 1 tokens file")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read the tokens file {path}: {exc}",
                         hint="make it with `packager token add --model M --tokens FILE`") from exc  # fmt: skip
    return list(tokens)


def add_token(path: Path, model: str, *, note: str = "", now: datetime | None = None) -> str:
    """Append a new token for ``model`` (or "*": every model) to ``path``; return it (shown once)."""
    if model != ANY_MODEL:
        check_name("model", model)
    tokens = _read(path)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    params = _params()
    tokens.append({"id": token_id, "model": model, "salt": salt.hex(), "scrypt": _hash(secret, salt, **params),
                   **params, "created": iso(now or datetime.now(UTC)), "note": note})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"schema": 1, "tokens": tokens}, handle, indent=1)
        handle.write("\n")
    os.replace(tmp, path)
    return f"pkt_{token_id}_{secret}"


class Tokens:
    """The tokens the server accepts; ``path`` None means the write API is closed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: float | None = None
        self._entries: dict[str, Entry] = {}
        self._verified: OrderedDict[bytes, tuple[Entry, float]] = OrderedDict()  # sha256(token) -> entry, until
        self._limiter: Any = None  # anyio's CapacityLimiter, made on the event loop that first needs it

    def _entries_now(self) -> dict[str, Entry]:
        if self.path is None:
            return {}
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if stamp != self._stamp:
            self._entries = {t["id"]: Entry(id=t["id"], model=t["model"], salt=bytes.fromhex(t["salt"]),
                                            digest=t["scrypt"], n=int(t["n"]), r=int(t["r"]), p=int(t["p"]))
                             for t in _read(self.path)}  # fmt: skip
            self._stamp = stamp
        return self._entries

    def check(self, authorization: str | None, model: str) -> Entry:
        """The entry of a bearer token that may write ``model``; else a 401 or 403 ServiceError.
        Runs scrypt in the calling thread: servers call ``verify``."""
        entry, secret, key = self._find(authorization)
        if not self._remembered(entry, key):
            self._settle(entry, key, entry.matches(secret))
        return self._scoped(entry, model)

    async def verify(self, authorization: str | None, model: str) -> Entry:
        """``check`` for the event loop: scrypt on a worker thread (``SCRYPT_AT_ONCE`` at a time),
        skipped for a secret verified in the last ``VERIFIED_SECONDS``."""
        import anyio.to_thread

        entry, secret, key = self._find(authorization)
        if not self._remembered(entry, key):
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(SCRYPT_AT_ONCE)
            ok = await anyio.to_thread.run_sync(entry.matches, secret, limiter=self._limiter)
            self._settle(entry, key, ok)
        return self._scoped(entry, model)

    def _find(self, authorization: str | None) -> tuple[Entry, str, bytes]:
        if not authorization:
            raise ServiceError(401, "unauthorized", "this endpoint needs a bearer token", headers=CHALLENGE)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError(401, "unauthorized", "send the token as 'Authorization: Bearer <token>'",
                               headers=CHALLENGE)  # fmt: skip
        match = _TOKEN.fullmatch(token.strip())
        entry = self._entries_now().get(match.group(1)) if match else None
        if match is None or entry is None:
            raise _forbidden()
        return entry, match.group(2), hashlib.sha256(token.strip().encode()).digest()

    def _remembered(self, entry: Entry, key: bytes) -> bool:
        """Whether the token hashing to ``key`` passed scrypt for ``entry`` lately; a memory of an
        entry the tokens file no longer holds (revoked, re-read) counts for nothing."""
        held = self._verified.get(key)
        if held is None:
            return False
        if held[0] is entry and held[1] > time.monotonic():
            return True
        del self._verified[key]
        return False

    def _settle(self, entry: Entry, key: bytes, ok: bool) -> None:
        if not ok:
            raise _forbidden()
        self._verified[key] = (entry, time.monotonic() + VERIFIED_SECONDS)
        while len(self._verified) > VERIFIED_MOST:
            self._verified.popitem(last=False)

    @staticmethod
    def _scoped(entry: Entry, model: str) -> Entry:
        if not entry.allows(model):
            raise ServiceError(403, "forbidden", f"the token may not write model {model!r}")
        return entry
