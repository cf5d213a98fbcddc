"""A/B tests and bandits: arms, the rewards devices report for them, and the next allocation.

An experiment lives in the signed channel pointer (``experiment``): its arms (``VERSION`` or
``VERSION:VARIANT``), its policy, the allocation of the current epoch, the epoch's number and
start, and the reward's name. Devices are placed in arms by a hash of their id and the epoch
(``packager.registry.resolve``), so a device keeps its arm within an epoch.

Rewards are what apps send with ``model.feedback(reward)``, tagged with the version and variant
that answered. An arm's count, sum and sum of squares since the experiment began come from one
SQL query over the telemetry segments (``REWARDS``). Its posterior: when every reward is within
[0, 1], Beta(1 + sum, 1 + n - sum) (exact for 0/1 rewards, the usual fractional update for
bounded ones); otherwise Normal(mean, s / sqrt(n)) under a flat prior. Thompson sampling gives
each arm its probability of being the best arm, estimated from ``DRAWS`` joint draws of the
posteriors (seeded by the model, channel and epoch, so a tick is reproducible), with a floor of
``FLOOR`` per arm so that no arm stops being measured. A ``fixed`` policy keeps its allocation.
Regret, estimated: the sum over arms of n times (the best posterior mean minus the arm's).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packager.errors import UsageError
from packager.fleet.aggregate import local_files, run_query, segment_keys
from packager.registry import channels
from packager.registry.docs import Pointer, experiment_settings, iso
from packager.registry.names import check_name
from packager.registry.store import Store

DRAWS = 4000
FLOOR = 0.01
REWARDS = """
SELECT version, variant, count(reward) AS n, coalesce(sum(reward), 0) AS total,
       coalesce(sum(reward * reward), 0) AS squares, min(reward) AS low, max(reward) AS high
FROM read_json($files, format = 'newline_delimited', compression = 'gzip', columns = $columns)
WHERE received >= $since AND received <= $until AND event = 'feedback' AND reward IS NOT NULL
GROUP BY version, variant
"""


@dataclass(frozen=True)
class ArmStats:
    """One arm's rewards since the experiment began."""

    arm: str
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float | None = None
    high: float | None = None

    @property
    def mean(self) -> float | None:
        return None if self.n == 0 else self.total / self.n

    def bounded(self) -> bool:
        return self.n == 0 or (self.low is not None and self.high is not None and self.low >= 0 and self.high <= 1)

    def posterior(self, bounded: bool) -> tuple[str, float, float]:
        """("beta", a, b) or ("normal", mean, sd)."""
        if bounded:
            return "beta", 1 + self.total, 1 + self.n - self.total
        if self.n == 0:
            return "normal", 0.0, 1e6
        variance = max(self.squares / self.n - (self.total / self.n) ** 2, 0.0) * self.n / max(self.n - 1, 1)
        return "normal", self.total / self.n, math.sqrt(max(variance, 1e-12) / self.n)

    def posterior_mean(self, bounded: bool) -> float:
        kind, a, b = self.posterior(bounded)
        return a / (a + b) if kind == "beta" else a


def parse_arms(texts: Sequence[str]) -> list[str]:
    """``--arm`` values, checked: ``VERSION`` or ``VERSION:VARIANT``."""
    arms = []
    for text in texts:
        version, _, variant = text.partition(":")
        check_name("version", version)
        if variant:
            check_name("version", variant)
        arms.append(text)
    return arms


def parse_policy(text: str, arms: int) -> tuple[str, list[float]]:
    """``thompson`` (equal shares to begin) or ``fixed:50,50`` (one weight per arm)."""
    if text == "thompson":
        return "thompson", [1 / arms] * arms
    name, _, weights = text.partition(":")
    try:
        shares = [float(w) for w in weights.split(",")] if name == "fixed" else []
    except ValueError:
        shares = []
    if len(shares) != arms or any(not math.isfinite(w) or w < 0 for w in shares) or sum(shares) <= 0:
        raise UsageError(f"--policy {text[:60]!r} is not 'thompson' or 'fixed:W1,W2,...' with one weight per arm",
                         hint=f"e.g. --policy fixed:{','.join(['1'] * arms)} or --policy thompson")  # fmt: skip
    return "fixed", [w / sum(shares) for w in shares]


def rewards(store: Store, pointer: Pointer, now: datetime) -> list[ArmStats]:
    """Each arm's rewards from the experiment's start to ``now``."""
    experiment = pointer.experiment or {}
    arms = [str(a) for a in experiment.get("arms", ())]
    since = _time(str(experiment["started"]))
    keys = segment_keys(store, pointer.model, since, now)
    rows: list[dict[str, Any]] = []
    if keys:
        with local_files(store, keys) as files:
            if files:
                rows = run_query(REWARDS, {"files": files, "since": iso(since), "until": iso(now)})
    stats = []
    for arm in arms:
        version, _, variant = arm.partition(":")
        mine = [r for r in rows if r["version"] == version and (not variant or r["variant"] == variant)]
        lows = [float(r["low"]) for r in mine if r["low"] is not None]
        highs = [float(r["high"]) for r in mine if r["high"] is not None]
        stats.append(ArmStats(arm=arm, n=sum(int(r["n"]) for r in mine), total=sum(float(r["total"]) for r in mine),
                              squares=sum(float(r["squares"]) for r in mine), low=min(lows, default=None),
                              high=max(highs, default=None)))  # fmt: skip
    return stats


def p_best(stats: Sequence[ArmStats], seed: int) -> list[float]:
    """Each arm's probability of having the highest mean reward, from joint posterior draws."""
    bounded = all(s.bounded() for s in stats)
    posteriors = [s.posterior(bounded) for s in stats]
    rng = random.Random(seed)
    wins = [0] * len(stats)
    for _ in range(DRAWS):
        draws = [rng.betavariate(a, b) if kind == "beta" else rng.gauss(a, b) for kind, a, b in posteriors]
        wins[max(range(len(draws)), key=draws.__getitem__)] += 1
    return [w / DRAWS for w in wins]


def thompson(stats: Sequence[ArmStats], seed: int) -> list[float]:
    """The next allocation: each arm's probability of being best, at least ``FLOOR``."""
    chances = p_best(stats, seed)
    floor = min(FLOOR, 1 / len(stats))
    spare = 1 - floor * len(stats)
    return [round(floor + spare * c, 6) for c in _normalized(chances)]


def _normalized(values: Sequence[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values] if total > 0 else [1 / len(values)] * len(values)


def regret(stats: Sequence[ArmStats]) -> float:
    """Estimated cumulative regret: sum of n x (best posterior mean - the arm's)."""
    bounded = all(s.bounded() for s in stats)
    means = [s.posterior_mean(bounded) for s in stats]
    best = max(means)
    return sum(s.n * (best - m) for s, m in zip(stats, means, strict=True))


def seed_of(pointer: Pointer, epoch: int) -> int:
    digest = hashlib.sha256(f"{pointer.model}\x00{pointer.channel}\x00{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def report(store: Store, pointer: Pointer, now: datetime) -> dict[str, Any] | None:
    """The experiment as ``fleet status`` shows it: each arm's rewards, posterior, chance of
    being best and share of this epoch, and the estimated regret."""
    experiment = pointer.experiment
    if experiment is None:
        return None
    stats = rewards(store, pointer, now)
    bounded = all(s.bounded() for s in stats)
    chances = p_best(stats, seed_of(pointer, int(experiment["epoch"])))
    arms = []
    for s, chance, share in zip(stats, chances, experiment["allocation"], strict=True):
        kind, a, b = s.posterior(bounded)
        arms.append({"arm": s.arm, "rewards": s.n, "mean_reward": None if s.mean is None else round(s.mean, 6),
                     "posterior": {"kind": kind, ("alpha" if kind == "beta" else "mean"): round(a, 6),
                                   ("beta" if kind == "beta" else "sd"): round(b, 6)},
                     "p_best": round(chance, 4), "allocation": share})  # fmt: skip
    return {**dict(experiment), "arms_now": arms, "regret": round(regret(stats), 4)}


def reallocate(store: Store, pointer: Pointer, now: datetime, *, keys: Path | None) -> dict[str, Any] | None:
    """A Thompson experiment whose epoch has run its minutes gets the next allocation in a new
    epoch (a signed pointer, its numbers in the history); None when nothing is due."""
    experiment = pointer.experiment
    if experiment is None or experiment["policy"] != "thompson":
        return None
    if (now - _time(str(experiment["epoch_started"]))).total_seconds() < float(experiment["epoch_minutes"]) * 60:
        return None
    stats = rewards(store, pointer, now)
    epoch = int(experiment["epoch"]) + 1
    allocation = thompson(stats, seed_of(pointer, epoch))
    allocation = _normalized(allocation)
    record = {"decision": "allocate", "epoch": epoch, "allocation": [round(a, 6) for a in allocation],
              "rewards": [s.n for s in stats], "means": [None if s.mean is None else round(s.mean, 6) for s in stats],
              "regret": round(regret(stats), 4)}  # fmt: skip
    moved = {**experiment, "allocation": allocation, "epoch": epoch, "epoch_started": iso(now)}

    def change(old: Pointer) -> Pointer:
        if old.generation != pointer.generation:
            return old  # another writer moved first: the next tick looks again
        return old.next("allocate", now, experiment=experiment_settings(**moved), record=record)

    channels.update(store, pointer.model, pointer.channel, change, keys=keys, now=now)
    return record


def start(*, arms: list[str], policy: str, reward: str, epoch_minutes: float, now: datetime) -> dict[str, Any]:
    """A new experiment's pointer entry (epoch 0, begun ``now``)."""
    name, allocation = parse_policy(policy, len(arms))
    try:
        return experiment_settings(arms=arms, policy=name, allocation=allocation, reward=reward, epoch=0,
                                   started=iso(now), epoch_started=iso(now), epoch_minutes=epoch_minutes)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc), hint="e.g. --arm 1 --arm 2 --policy thompson --reward clicked") from exc


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
