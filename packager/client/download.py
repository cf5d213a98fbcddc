"""Downloading one artifact: HTTP Range resume into a .part file, then sha256 and length checks.

A cut connection keeps what arrived; the next try (in this call, or the next run) asks for
``Range: bytes=<size of the .part>-``. The server answers 206 (append), 200 (it sent the whole
file: start over) or 416 (the .part is not a prefix of the file: start over). Bytes whose sha256
or length do not match are deleted and refused: nothing unverified is ever installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from packager.errors import DownloadError, IntegrityError

log = logging.getLogger("packager.client")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, kw_only=True)
class Wanted:
    """An artifact to fetch: where from, and what its bytes must be."""

    url: str
    sha256: str
    size: int


@dataclass(kw_only=True)
class Fetched:
    """What a download moved over the network (for telemetry)."""

    bytes: int = 0
    ms: float = 0.0
    resumed_from: int = 0
    requests: int = 0


def download(http: httpx.Client, wanted: Wanted, part: Path, *, attempts: int,
             check: Callable[[str, int], None] | None = None) -> Fetched:  # fmt: skip
    """Fetch ``wanted`` into ``part`` and verify it; on return ``part`` holds exactly its bytes.

    ``check(sha256, size)`` (optional) adds a check of the finished file (TUF's signed hash and
    length). Raises DownloadError when every attempt was cut off (``part`` is kept for the next
    call), IntegrityError when the bytes are wrong (``part`` is deleted).
    """
    if _size(part) > wanted.size:  # not a prefix of this artifact
        part.unlink()
    fetched = Fetched(resumed_from=_size(part))
    start = time.perf_counter()
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        if _size(part) >= wanted.size:
            break
        try:
            fetched.bytes += _get(http, wanted, part)
            fetched.requests += 1
            last = None
        except (httpx.TransportError, _Restart) as exc:
            fetched.requests += 1
            last = exc
            log.info("download of %s stopped at %d of %d bytes: %s", wanted.sha256[:12], _size(part), wanted.size,
                     exc)  # fmt: skip
    fetched.ms = (time.perf_counter() - start) * 1000
    if last is not None and _size(part) < wanted.size:
        raise DownloadError(f"downloading {wanted.url} stopped at {_size(part)} of {wanted.size} bytes "
                            f"after {fetched.requests} tries: {last}")  # fmt: skip
    _verify(wanted, part, check)
    return fetched


class _Restart(Exception):
    """The server's answer means the .part is useless: it was cleared; try again from byte 0."""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _get(http: httpx.Client, wanted: Wanted, part: Path) -> int:
    """One request: append to ``part`` from its current size. Returns the body bytes received."""
    have = _size(part)
    headers = {"Range": f"bytes={have}-"} if have else {}
    received = 0
    with http.stream("GET", wanted.url, headers=headers) as response:
        if response.status_code == 416:
            part.unlink(missing_ok=True)
            raise _Restart(f"the server refused range bytes={have}- (416); starting over")
        if response.status_code not in (200, 206):
            _raise_for(response, wanted)
        mode = _mode(response, have, part)
        with part.open(mode) as handle:
            # As the bytes arrive (no re-chunking buffer): a cut connection loses nothing received.
            for data in response.iter_bytes():
                handle.write(data)
                received += len(data)
    return received


def _mode(response: httpx.Response, have: int, part: Path) -> str:
    """'ab' to append a 206 that starts where the .part ends, 'wb' for a whole 200."""
    if response.status_code == 200:
        return "wb"
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None or int(match.group(1)) != have:
        part.unlink(missing_ok=True)
        raise _Restart(f"a 206 that does not start at byte {have} ({response.headers.get('content-range')!r})")
    return "ab"


def _raise_for(response: httpx.Response, wanted: Wanted) -> None:
    response.read()
    detail = response.text[:200]
    with contextlib.suppress(ValueError, KeyError, TypeError):
        detail = response.json()["error"]["message"]
    raise DownloadError(f"GET {wanted.url} answered {response.status_code}: {detail}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(wanted: Wanted, part: Path, check: Callable[[str, int], None] | None) -> None:
    size, got = _size(part), sha256_of(part)
    try:
        if size != wanted.size or got != wanted.sha256:
            raise IntegrityError(f"{wanted.url}: got {size} bytes with sha256 {got}, expected {wanted.size} bytes "
                                 f"with sha256 {wanted.sha256}; deleted them")  # fmt: skip
        if check is not None:
            check(got, size)
    except Exception:
        part.unlink(missing_ok=True)
        raise
