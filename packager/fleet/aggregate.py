"""Telemetry read back: per (version, variant) of a model over a window, with its cohort.

The segments are gzip'd JSON Lines under ``telemetry/model=<model>/date=<yyyy-mm-dd>/`` in the
registry's store (``packager.server.telemetry``). The window names the dates to read; DuckDB
reads those files (a folder store's own files; another store's are copied to a temporary folder
first, since DuckDB's S3 reader is an extension it would download) and one SQL query groups them.
The query is plain SQL over the same columns, so a fleet too big for one machine runs it on
Athena or Spark over the same partitioned prefix (README, "Fleet").

Per row: ``devices`` (distinct device ids), ``loads``, ``load_failures`` (a ``load`` with
``ok: false``; an older client's ``load`` without ``ok`` counts as a load that worked),
``load_failure_rate``, ``predicts``, ``errors``, ``error_rate`` (errors over predicts and errors),
``p50_ms``/``p95_ms``/``p99_ms`` (``predict`` latency, linear interpolation), ``shadow_runs``,
``shadow_agreed`` and ``shadow_agreement`` (the share of ``shadow`` events with ``agree: true``),
``max_shadow_diff``, ``shadow_p50_ms`` and ``shadow_base_p50_ms`` (the candidate's and stable's
median time on the same shadowed calls), ``feedback`` and ``mean_reward``, ``calls`` (predicts and errors). A row with
``variant: null`` sums a version's variants. ``slower_than`` counts a version's calls over a
latency, what a latency gate tests (``packager.fleet.gates``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packager.errors import UsageError, require
from packager.registry.docs import Pointer, iso
from packager.registry.store import LocalStore, Store

_WINDOW = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = timedelta(days=31)
COLUMNS = {"event": "VARCHAR", "model": "VARCHAR", "version": "VARCHAR", "variant": "VARCHAR",
           "device_id": "VARCHAR", "ms": "DOUBLE", "ok": "BOOLEAN", "reward": "DOUBLE", "agree": "BOOLEAN",
           "diff": "DOUBLE", "base_ms": "DOUBLE", "received": "VARCHAR"}  # fmt: skip
QUERY = """
WITH e AS (SELECT * FROM read_json($files, format = 'newline_delimited', compression = 'gzip',
                                   columns = $columns)
           WHERE received >= $since AND received <= $until)
SELECT version, variant,
       count(DISTINCT device_id) AS devices,
       count(*) FILTER (WHERE event = 'load') AS loads,
       count(*) FILTER (WHERE event = 'load' AND ok = false) AS load_failures,
       count(*) FILTER (WHERE event = 'predict') AS predicts,
       count(*) FILTER (WHERE event = 'error') AS errors,
       quantile_cont(ms, 0.50) FILTER (WHERE event = 'predict') AS p50_ms,
       quantile_cont(ms, 0.95) FILTER (WHERE event = 'predict') AS p95_ms,
       quantile_cont(ms, 0.99) FILTER (WHERE event = 'predict') AS p99_ms,
       count(*) FILTER (WHERE event = 'shadow') AS shadow_runs,
       count(*) FILTER (WHERE event = 'shadow' AND agree) AS shadow_agreed,
       avg(CASE WHEN agree THEN 1.0 ELSE 0.0 END) FILTER (WHERE event = 'shadow') AS shadow_agreement,
       max(diff) FILTER (WHERE event = 'shadow') AS max_shadow_diff,
       quantile_cont(ms, 0.50) FILTER (WHERE event = 'shadow') AS shadow_p50_ms,
       quantile_cont(base_ms, 0.50) FILTER (WHERE event = 'shadow') AS shadow_base_p50_ms,
       count(*) FILTER (WHERE event = 'feedback' AND reward IS NOT NULL) AS feedback,
       avg(reward) FILTER (WHERE event = 'feedback') AS mean_reward
FROM e
WHERE version IS NOT NULL
GROUP BY GROUPING SETS ((version, variant), (version))
ORDER BY version, variant NULLS FIRST
"""


def parse_window(text: str) -> timedelta:
    """``90m``, ``1h``, ``7d``: at most 31 days."""
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"window {text[:40]!r} is not a number of minutes, hours or days",
                         hint="write it as 30m, 1h or 7d")  # fmt: skip
    window = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if window > MAX_WINDOW:
        raise UsageError(f"window {text} is longer than {MAX_WINDOW.days} days", hint="ask for 31d or less")
    return window


def segment_keys(store: Store, model: str, since: datetime, until: datetime) -> list[str]:
    """The telemetry segments of ``model`` on the UTC dates from ``since`` to ``until``."""
    keys: list[str] = []
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        keys.extend(k for k in store.list(f"telemetry/model={model}/date={day:%Y-%m-%d}/") if k.endswith(".jsonl.gz"))
        day += timedelta(days=1)
    return sorted(keys)


@contextmanager
def local_files(store: Store, keys: list[str]) -> Iterator[list[str]]:
    """Paths DuckDB can read for ``keys``: a folder store's own files, else copies in a temporary
    folder removed afterwards."""
    if isinstance(store, LocalStore):
        yield [str(store.root / key) for key in keys]
        return
    folder = Path(tempfile.mkdtemp(prefix="packager-fleet-"))
    try:
        paths = []
        for index, key in enumerate(keys):
            blob = store.get(key)
            if blob is not None:
                path = folder / f"{index:06d}.jsonl.gz"
                path.write_bytes(blob.data)
                paths.append(str(path))
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fleet(store: Store, model: str, window: timedelta, *, now: datetime | None = None,
          pointer: Pointer | None = None) -> dict[str, Any]:  # fmt: skip
    """The fleet document of ``model``: the window, and a row per version and variant."""
    until = now or datetime.now(UTC)
    since = until - window
    keys = segment_keys(store, model, since, until)
    rows: list[dict[str, Any]] = []
    if keys:
        with local_files(store, keys) as files:
            rows = _query(files, iso(since), iso(until)) if files else []
    for row in rows:
        row["cohort"] = cohort_of(row["version"], pointer)
        row["calls"] = row["predicts"] + row["errors"]
        row["load_failure_rate"] = _rate(row["load_failures"], row["loads"])
        row["error_rate"] = _rate(row["errors"], row["predicts"] + row["errors"])
    return {"model": model, "since": iso(since), "until": iso(until), "window_seconds": int(window.total_seconds()),
            "segments": len(keys), "stable": pointer.stable if pointer else None,
            "candidate": pointer.candidate if pointer else None,
            "shadow": dict(pointer.shadow) if pointer and pointer.shadow else None, "rows": rows}  # fmt: skip


SLOWER = """
SELECT count(*) FILTER (WHERE ms > $limit) AS slower, count(*) AS predicts
FROM read_json($files, format = 'newline_delimited', compression = 'gzip', columns = $columns)
WHERE received >= $since AND received <= $until AND event = 'predict' AND version = $version AND ms IS NOT NULL
"""


def slower_than(store: Store, model: str, version: str, since: datetime, until: datetime,
                limit_ms: float) -> tuple[int, int]:  # fmt: skip
    """(predict events of ``version`` slower than ``limit_ms``, all its predict events) in the window."""
    keys = segment_keys(store, model, since, until)
    if not keys:
        return 0, 0
    with local_files(store, keys) as files:
        if not files:
            return 0, 0
        (row,) = run_query(SLOWER, {"files": files, "since": iso(since), "until": iso(until), "version": version,
                               "limit": float(limit_ms)})  # fmt: skip
    return int(row["slower"]), int(row["predicts"])


RANKED = """
SELECT r, ms FROM (
    SELECT ms, row_number() OVER (ORDER BY ms) AS r
    FROM read_json($files, format = 'newline_delimited', compression = 'gzip', columns = $columns)
    WHERE received >= $since AND received <= $until AND event = 'predict' AND version = $version AND ms IS NOT NULL)
WHERE r IN ($low, $high) ORDER BY r
"""


def latency_ranks(store: Store, model: str, version: str, since: datetime, until: datetime,
                  ranks: tuple[int, int]) -> tuple[float, float] | None:  # fmt: skip
    """The ``version``'s predict latencies at two ranks (1-based, fastest first) in the window;
    None when it has fewer calls than the higher rank."""
    keys = segment_keys(store, model, since, until)
    if not keys:
        return None
    with local_files(store, keys) as files:
        if not files:
            return None
        rows = run_query(RANKED, {"files": files, "since": iso(since), "until": iso(until), "version": version,
                                  "low": ranks[0], "high": ranks[1]})  # fmt: skip
    found = {int(r["r"]): float(r["ms"]) for r in rows}
    return (found[ranks[0]], found[ranks[1]]) if len(found) == 2 else None


def _query(files: list[str], since: str, until: str) -> list[dict[str, Any]]:
    return [_clean(row) for row in run_query(QUERY, {"files": files, "since": since, "until": until})]


def run_query(sql: str, params: dict[str, Any], columns: Mapping[str, str] = COLUMNS) -> list[dict[str, Any]]:
    require("duckdb", "fleet")
    import duckdb

    with duckdb.connect(":memory:") as con:
        con.execute("SET threads = 1")
        cursor = con.execute(sql, {**params, "columns": dict(columns)})
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """Floats rounded for reading (latencies to the microsecond, shares to 4 places)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float):
            value = round(value, 3 if key.endswith("_ms") else 4)
        out[key] = value
    return out


def cohort_of(version: str, pointer: Pointer | None) -> str:
    if pointer is not None and version == pointer.stable:
        return "stable"
    if pointer is not None and version == pointer.candidate:
        return "candidate"
    if pointer is not None and pointer.in_shadow(version):
        return "shadow"
    return "other"


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)
