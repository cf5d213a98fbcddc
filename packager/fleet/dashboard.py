"""What the dashboard draws (``GET /v1/models/{m}/dashboard``, ``/dashboard/{m}``): one document
per model and window, read from the same places as ``fleet status``.

- ``series``: per version, the load failure rate, error rate, p95 latency and devices in each
  time slot of the window (``SERIES``, one DuckDB query grouped by slot), on one time axis;
- ``rollout``: the candidate's share over time, from the channel pointer's history (each entry
  is the state before a change, so the state after it is the next entry's, or the pointer's own);
- ``allocations``: each arm's share per epoch of an experiment (the ``allocate`` decisions);
- ``outputs``: each served version's top-1 class (or value bin) shares on devices against its
  build's reference, from the ``inputs`` events' ``out:`` counts;
- ``drift``, ``experiment``, ``gates`` and ``fleet``: the reports of ``packager fleet status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from packager.errors import UsageError
from packager.fleet import drift
from packager.fleet.aggregate import cohort_of, fleet, local_files, run_query, segment_keys
from packager.registry.docs import Pointer, iso
from packager.registry.names import version_key
from packager.registry.store import Store

MAX_SLOTS = 500
FIGURES = ("devices", "load_failure_rate", "error_rate", "p95_ms")
# slot lengths the dashboard picks from: the shortest that cuts the window into 100 slots or fewer
STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
SERIES = """
WITH e AS (SELECT event, version, device_id, ms, ok,
                  CAST(floor((epoch(CAST(received AS TIMESTAMPTZ)) - $start) / $step) AS BIGINT) AS slot
           FROM read_json($files, format = 'newline_delimited', compression = 'gzip', columns = $columns)
           WHERE received >= $since AND received <= $until AND version IS NOT NULL)
SELECT version, slot,
       count(DISTINCT device_id) AS devices,
       count(*) FILTER (WHERE event = 'load') AS loads,
       count(*) FILTER (WHERE event = 'load' AND ok = false) AS load_failures,
       count(*) FILTER (WHERE event = 'predict') AS predicts,
       count(*) FILTER (WHERE event = 'error') AS errors,
       quantile_cont(ms, 0.95) FILTER (WHERE event = 'predict') AS p95_ms
FROM e GROUP BY version, slot ORDER BY version, slot
"""


def step_for(window: timedelta, step: timedelta | None) -> int:
    """The slot length in seconds: ``step`` when given (at most ``MAX_SLOTS`` slots a window),
    else the shortest of ``STEPS`` that gives at most 100."""
    seconds = window.total_seconds()
    if step is None:
        return next((s for s in STEPS if seconds / s <= 100), STEPS[-1])
    if seconds / step.total_seconds() > MAX_SLOTS:
        raise UsageError(f"a step of {int(step.total_seconds())} s cuts the window into more than {MAX_SLOTS} slots",
                         hint=f"ask for a step of at least {int(seconds // MAX_SLOTS) + 1} s")  # fmt: skip
    return int(step.total_seconds())


def series(store: Store, model: str, pointer: Pointer | None, since: datetime, until: datetime,
           step: int) -> dict[str, Any]:  # fmt: skip
    """Per version, each slot's figures on one axis of slot starts (epoch seconds); None where a
    slot has nothing to measure (no loads for a rate, no predicts for a latency)."""
    start = int(since.timestamp()) // step * step
    times = list(range(start, int(until.timestamp()) + 1, step))
    rows: list[dict[str, Any]] = []
    keys = segment_keys(store, model, since, until)
    if keys:
        with local_files(store, keys) as files:
            if files:
                rows = run_query(SERIES, {"files": files, "since": iso(since), "until": iso(until),
                                          "start": start, "step": step})  # fmt: skip
    versions: dict[str, dict[str, Any]] = {}
    for row in rows:
        slot = int(row["slot"])
        if not 0 <= slot < len(times):
            continue
        version = str(row["version"])
        if version not in versions:
            versions[version] = {"cohort": cohort_of(version, pointer), **{k: [None] * len(times) for k in FIGURES}}
        lines = versions[version]
        calls = int(row["predicts"]) + int(row["errors"])
        lines["devices"][slot] = int(row["devices"])
        lines["load_failure_rate"][slot] = _share(int(row["load_failures"]), int(row["loads"]))
        lines["error_rate"][slot] = _share(int(row["errors"]), calls)
        lines["p95_ms"][slot] = None if row["p95_ms"] is None else round(float(row["p95_ms"]), 3)
    return {"step_seconds": step, "times": times, "versions": versions}


def rollout_timeline(pointer: Pointer) -> list[dict[str, Any]]:
    """The channel's states in time order: when each began, what made it, stable, candidate and
    the candidate's percent, and the reason a controller gave."""
    history = list(pointer.history)
    states: list[dict[str, Any]] = []
    if history:  # the state before the first change the history still holds (at: unknown)
        states.append({"at": None, "action": None, "stable": history[0].get("stable"),
                       "candidate": history[0].get("candidate"), "percent": history[0].get("percent", 0),
                       "reason": None})  # fmt: skip
    for index, entry in enumerate(history):
        after: Any = history[index + 1] if index + 1 < len(history) else pointer.to_json()
        states.append({"at": entry.get("at"), "action": entry.get("action"), "stable": after.get("stable"),
                       "candidate": after.get("candidate"), "percent": after.get("percent", 0),
                       "reason": _why(entry)})  # fmt: skip
    return states


def _why(entry: Mapping[str, Any]) -> str | None:
    """A controller's reason; for an experiment's new epoch, its allocation."""
    if entry.get("decision") == "allocate" and entry.get("allocation"):
        shares = ", ".join(f"{share:.0%}" for share in entry["allocation"])
        return f"epoch {entry.get('epoch')}: {shares} (regret {entry.get('regret')})"
    reason = entry.get("reason")
    return None if reason is None else str(reason)


def allocations(pointer: Pointer) -> dict[str, Any] | None:
    """Each arm's share per epoch of the channel's experiment: epoch 0 (even under Thompson, the
    fixed weights otherwise), the epochs its history still holds (an ``allocate`` entry is stamped
    when its epoch began), and the running one."""
    experiment = pointer.experiment
    if experiment is None:
        return None
    arms, started = list(experiment["arms"]), str(experiment["started"])
    first = list(experiment["allocation"]) if experiment["policy"] == "fixed" else [1 / len(arms)] * len(arms)
    epochs = [{"at": started, "epoch": 0, "allocation": first}]
    epochs += [{"at": h["at"], "epoch": h["epoch"], "allocation": list(h["allocation"])} for h in pointer.history
               if h.get("decision") == "allocate" and str(h.get("at", "")) >= started and h.get("epoch")]  # fmt: skip
    if epochs[-1]["epoch"] != experiment["epoch"]:
        epochs.append({"at": experiment["epoch_started"], "epoch": experiment["epoch"],
                       "allocation": list(experiment["allocation"])})  # fmt: skip
    return {"arms": arms, "epochs": epochs}


def outputs(store: Store, pointer: Pointer, since: datetime, until: datetime) -> dict[str, Any]:
    """Per served version and output: the reference's shares over its classes (or bins) and the
    devices' shares over the same, with how many values they counted."""
    seen = drift.observed(store, pointer.model, since, until)
    found: dict[str, Any] = {}
    for version in pointer.versions():
        features = (reference_of(store, pointer.model, version) or {}).get("features") or {}
        for key, entry in features.items():
            if not key.startswith("out:"):
                continue
            counted = (seen.get(version) or {}).get(key) or []
            found.setdefault(version, {})[key[len("out:"):]] = {
                "classes": entry.get("classes"), "edges": entry.get("edges"),
                "reference": _shares(entry["counts"]), "observed": _shares(counted) if sum(counted) else None,
                "count": sum(counted)}  # fmt: skip
    return found


def reference_of(store: Store, model: str, version: str) -> dict[str, Any] | None:
    blob = store.get(version_key(model, version))
    if blob is None:
        return None
    reference = (json.loads(blob.data).get("model") or {}).get("reference")
    return reference if isinstance(reference, dict) else None


def status_document(store: Store, pointer: Pointer, window: timedelta, now: datetime, *,
                    tick_minutes: float) -> dict[str, Any]:  # fmt: skip
    """What ``packager fleet status`` and ``GET /v1/models/{m}/fleet`` show: the fleet rows over
    ``window``, what a controller tick would decide now, the experiment and the drift."""
    from packager.fleet.controller import status
    from packager.fleet.experiment import report

    doc = fleet(store, pointer.model, window, now=now, pointer=pointer)
    doc.update(
        {
            "rollout": status(store, pointer, now, tick_minutes=tick_minutes),
            "experiment": report(store, pointer, now),
            "drift": drift.report_for(store, pointer, window, now),
        }
    )
    return doc


def document(store: Store, pointer: Pointer, window: timedelta, now: datetime | None = None, *,
             step: timedelta | None = None, tick_minutes: float = 5.0) -> dict[str, Any]:  # fmt: skip
    """Everything the dashboard page draws for ``pointer``'s model over ``window``."""
    from packager.fleet.controller import status
    from packager.fleet.experiment import report

    until = now or datetime.now(UTC)
    since = until - window
    return {"model": pointer.model, "channel": pointer.channel, "now": iso(until), "since": iso(since),
            "stable": pointer.stable, "candidate": pointer.candidate, "percent": pointer.percent,
            "series": series(store, pointer.model, pointer, since, until, step_for(window, step)),
            "rollout": {"timeline": rollout_timeline(pointer),
                        "status": status(store, pointer, until, tick_minutes=tick_minutes)},
            "experiment": report(store, pointer, until), "allocations": allocations(pointer),
            "outputs": outputs(store, pointer, since, until),
            "drift": drift.report_for(store, pointer, window, until),
            "fleet": fleet(store, pointer.model, window, now=until, pointer=pointer)["rows"]}  # fmt: skip


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 4) for c in counts] if total else [0.0] * len(counts)
