"""Drift: what devices see against what the model was built on, without raw inputs leaving them.

At build time, ``reference`` summarises the samples (build.json ``model.reference``, published in
the version document): per input *feature* fixed quantile bins (the inner edges at the deciles of
the samples) and the samples' counts over them; per output, the top-1 class histogram (an output
whose last axis holds 2 to 64 classes) or quantile bins of its values. A feature is a column of a
``[batch, F]`` input (F <= 64), a channel of an image (axis 1 when it holds 1 to 4 values, NCHW;
else the last axis when it does, NHWC), or else the whole input.

Devices count a sample of their calls over those bins (``counts``) and send the sums as an
``inputs`` event's ``bins``: ``{"in:<feature>": [n, ...], "out:<output>": [n, ...]}``. The fleet
sums them per version over a window (``BINS``, SQL) and compares each feature with the reference
and with the window before by the population stability index, PSI = sum (a - e) ln(a / e) over
the bins' shares (each share floored at 1e-4). PSI above ``THRESHOLD`` (0.2, the usual line
between a moderate and a significant shift) with at least ``MIN_COUNT`` observations is drift.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from packager.registry.docs import Pointer, iso
from packager.registry.names import version_key
from packager.registry.store import Store

BINS = 10
MAX_FEATURES = 64
MAX_CLASSES = 64
MAX_VALUES = 1_000_000
THRESHOLD = 0.2
MIN_COUNT = 200
FLOOR = 1e-4
QUERY = """
WITH e AS (SELECT version, bins FROM read_json($files, format = 'newline_delimited', compression = 'gzip',
                                               columns = $columns)
           WHERE received > $since AND received <= $until AND event = 'inputs' AND bins IS NOT NULL),
     f AS (SELECT version, unnest(map_entries(bins)) AS kv FROM e),
     b AS (SELECT version, kv.key AS feature, unnest(kv.value) AS n, generate_subscripts(kv.value, 1) AS bin FROM f)
SELECT version, feature, bin, sum(n) AS n FROM b GROUP BY ALL ORDER BY version, feature, bin
"""
COLUMNS = {"event": "VARCHAR", "version": "VARCHAR", "bins": "MAP(VARCHAR, BIGINT[])", "received": "VARCHAR"}


# --- build side: the reference -------------------------------------------------------------------


def reference(samples: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The reference statistics of the build's samples and the source model's outputs on them."""
    import numpy as np

    features: dict[str, Any] = {}
    for name, value in samples.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fiub" or array.ndim == 0:
            continue
        for feature, values in _features(name, array):
            values = _thinned(values)
            edges = _edges(values)
            features[f"in:{feature}"] = {"edges": edges, "counts": _count(values, edges)}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fiub" or array.ndim == 0:
            continue
        if array.ndim >= 2 and 2 <= array.shape[-1] <= MAX_CLASSES:
            top = array.reshape(-1, array.shape[-1]).argmax(axis=1)
            features[f"out:{name}"] = {"classes": int(array.shape[-1]),
                                       "counts": np.bincount(top, minlength=array.shape[-1]).tolist()}  # fmt: skip
        else:
            values = _thinned(array.astype(np.float64).ravel())
            edges = _edges(values)
            features[f"out:{name}"] = {"edges": edges, "counts": _count(values, edges)}
    return {"bins": BINS, "features": dict(list(features.items())[:256])}


def _thinned(values: Any) -> Any:
    """At most ``MAX_VALUES`` of ``values``, evenly strided (an image's channel over the samples
    can hold tens of millions: deciles do not need them all)."""
    return values if values.size <= MAX_VALUES else values[:: values.size // MAX_VALUES + 1]


def _features(name: str, array: Any) -> list[tuple[str, Any]]:
    import numpy as np

    values = array.astype(np.float64)
    if values.ndim == 2 and values.shape[1] <= MAX_FEATURES:
        return [(f"{name}[{i}]", values[:, i]) for i in range(values.shape[1])]
    if values.ndim >= 3 and 1 <= values.shape[1] <= 4:
        return [(f"{name}[c{i}]", values[:, i].ravel()) for i in range(values.shape[1])]
    if values.ndim >= 3 and 1 <= values.shape[-1] <= 4:
        return [(f"{name}[c{i}]", values[..., i].ravel()) for i in range(values.shape[-1])]
    return [(name, values.ravel())]


def _edges(values: Any) -> list[float]:
    """The inner edges at the deciles of ``values``, distinct, to 6 significant digits."""
    import numpy as np

    if values.size == 0:
        return []
    cuts = np.quantile(values, [i / BINS for i in range(1, BINS)])
    return sorted({float(f"{c:.6g}") for c in cuts})


def _count(values: Any, edges: list[float]) -> list[int]:
    import numpy as np

    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).tolist()


# --- device side: counting calls -----------------------------------------------------------------


def counts(ref: Mapping[str, Any], inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, list[int]]:
    """One call's inputs and outputs counted over the reference's bins (the keys it has)."""
    import numpy as np

    got: dict[str, list[int]] = {}
    features = ref.get("features", {})
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fiub" or array.ndim == 0:
            continue
        for feature, values in _features(name, array):
            entry = features.get(f"in:{feature}")
            if entry is not None and "edges" in entry:
                got[f"in:{feature}"] = _count(values, entry["edges"])
    for name, value in outputs.items():
        entry = features.get(f"out:{name}")
        if entry is None:
            continue
        array = np.asarray(value)
        if "classes" in entry:
            if array.ndim >= 2 and array.shape[-1] == entry["classes"]:
                top = array.reshape(-1, array.shape[-1]).argmax(axis=1)
                got[f"out:{name}"] = np.bincount(top, minlength=entry["classes"]).tolist()
        else:
            got[f"out:{name}"] = _count(array.astype(np.float64).ravel(), entry["edges"])
    return got


def add(total: dict[str, list[int]], more: Mapping[str, list[int]]) -> None:
    for key, values in more.items():
        mine = total.setdefault(key, [0] * len(values))
        if len(mine) == len(values):
            total[key] = [a + b for a, b in zip(mine, values, strict=True)]


# --- fleet side: PSI -----------------------------------------------------------------------------


def psi(expected: list[int], actual: list[int]) -> float | None:
    """The population stability index of ``actual``'s counts against ``expected``'s."""
    if len(expected) != len(actual) or not sum(expected) or not sum(actual):
        return None
    e_total, a_total = sum(expected), sum(actual)
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / e_total, FLOOR), max(a / a_total, FLOOR)
        value += (q - p) * math.log(q / p)
    return value


def observed(store: Store, model: str, since: datetime, until: datetime) -> dict[str, dict[str, list[int]]]:
    """version -> feature -> summed counts of the ``inputs`` events received in (since, until]."""
    # here, not at the top: devices import this module for ``counts`` and never read segments
    from packager.fleet.aggregate import local_files, run_query, segment_keys

    keys = segment_keys(store, model, since, until)
    if not keys:
        return {}
    with local_files(store, keys) as files:
        if not files:
            return {}
        rows = run_query(QUERY, {"files": files, "since": iso(since), "until": iso(until)}, columns=COLUMNS)
    found: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        bins = found.setdefault(str(row["version"]), {}).setdefault(str(row["feature"]), [])
        index = int(row["bin"]) - 1
        bins.extend([0] * (index + 1 - len(bins)))
        bins[index] = int(row["n"])
    return found


def report(store: Store, model: str, versions: Mapping[str, Mapping[str, Any]], window: timedelta,
           now: datetime) -> dict[str, Any]:  # fmt: skip
    """Per version with a reference: each feature's PSI against the reference and against the
    window before, its count, and whether it drifted; ``drifted`` lists the features that did."""
    current = observed(store, model, now - window, now)
    before = observed(store, model, now - 2 * window, now - window)
    out: dict[str, Any] = {"threshold": THRESHOLD, "min_count": MIN_COUNT,
                           "window_seconds": int(window.total_seconds()), "versions": {}}  # fmt: skip
    for version, doc in versions.items():
        ref = ((doc.get("model") or {}).get("reference") or {}).get("features")
        seen = current.get(version)
        if not ref or not seen:
            continue
        rows = []
        for feature, counts_now in sorted(seen.items()):
            entry = ref.get(feature)
            if entry is None:
                continue
            total = sum(counts_now)
            against_ref = psi(entry["counts"], counts_now)
            previous = (before.get(version) or {}).get(feature)
            against_before = psi(previous, counts_now) if previous else None
            drift = total >= MIN_COUNT and against_ref is not None and against_ref > THRESHOLD
            rows.append({"feature": feature, "count": total, "psi": _round(against_ref),
                         "psi_previous": _round(against_before), "drift": drift})  # fmt: skip
        out["versions"][version] = {"features": rows, "drifted": [r["feature"] for r in rows if r["drift"]]}
    return out


def report_for(store: Store, pointer: Pointer, window: timedelta, now: datetime) -> dict[str, Any]:
    """``report`` for the versions the channel serves (their documents read from the store)."""
    docs = {}
    for version in pointer.versions():
        blob = store.get(version_key(pointer.model, version))
        if blob is not None:
            docs[version] = json.loads(blob.data)
    return report(store, pointer.model, docs, window, now)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
