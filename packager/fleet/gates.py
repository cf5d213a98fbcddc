"""A gated rollout's plan and its gates, and the bounds the controller decides with.

A gate is ``<metric> <= <limit>`` or ``<metric> >= <limit>``; the limit is a number, or relative
to the stable version's figure: ``1.2 * stable``, ``stable + 0.005``, ``stable``. Metrics:

- ``load_failure_rate``, ``error_rate``, ``shadow_agreement``: shares of events, tested with
  Wilson score bounds on the candidate's counts.
- ``p50_ms``, ``p95_ms``, ``p99_ms``: latency quantiles, tested as shares too: ``p95_ms <= T``
  holds exactly when at most 5% of the candidate's calls take longer than T, so the controller
  bounds the share of sampled calls over T against 0.05.
- ``drift_psi``: the largest PSI of the candidate's counted features against its build's
  reference bins since the step began (``packager.fleet.drift``), among features with at least
  ``MIN_COUNT`` counted values; an upper limit, a number. PSI is a point estimate, not a bound:
  the minimum count is what keeps a few calls from deciding.

Why these bounds: the counts are small and the rates near 0, where Wilson's interval keeps its
coverage (the normal approximation does not). The controller looks at every tick, so each look
spends part of the error budget: look k uses alpha * 6 / (pi^2 k^2), which sums to alpha over any
number of looks. Looks are counted from the time the step has run (one per ``tick_minutes`` past
its minimum), an upper bound on the ticks that really looked, so no counter has to be stored and
a missed tick only makes the bounds more careful.

A relative limit compares two samples, the candidate's and stable's, both uncertain:

- a rate gate ``c <= k * stable + d`` bounds the difference c - k*s by MOVER (Zou and Donner's
  method of variance estimates recovery, Newcombe's hybrid score interval when k = 1): each
  share's own Wilson bounds at the look's level, recombined (``mover``);
- a latency gate ``p95_ms <= k * stable`` takes stable's p95 between distribution-free bounds
  (order statistics at binomial ranks, ``quantile_ranks``) and tests the candidate's share of
  calls over k times each: it fails only when too many calls are slower than the most lenient
  limit, and passes only when few enough are slower than the strictest; stable's bounds and the
  candidate's each spend half the look's alpha.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from packager.errors import UsageError

RATES = {"load_failure_rate": ("load_failures", "loads"), "error_rate": ("errors", "calls"),
         "shadow_agreement": ("shadow_agreed", "shadow_runs")}  # fmt: skip
QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
DRIFT = "drift_psi"
METRICS = (*RATES, *QUANTILES, DRIFT)
_NUMBER = r"[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?"
_GATE = re.compile(rf"\s*([a-z0-9_]+)\s*(<=|>=)\s*(?:({_NUMBER})\s*\*\s*stable|stable\s*([+-])\s*({_NUMBER})"
                   rf"|(stable)|({_NUMBER}))\s*")  # fmt: skip


@dataclass(frozen=True)
class Gate:
    text: str
    metric: str
    op: str  # "<=" or ">="
    scale: float  # limit = scale * stable + offset, or offset alone when not relative
    offset: float
    relative: bool

    def limit(self, stable: float | None) -> float | None:
        """The limit for this tick (None: relative to a stable figure there is none of yet)."""
        if not self.relative:
            return self.offset
        return None if stable is None else self.scale * stable + self.offset


def parse_gate(text: str) -> Gate:
    match = _GATE.fullmatch(text)
    if match is None:
        raise UsageError(f"gate {text[:80]!r} is not '<metric> <= <limit>'",
                         hint="e.g. --gate 'load_failure_rate <= 0.01' --gate 'p95_ms <= 1.2 * stable' "
                              "--gate 'error_rate <= stable + 0.005'")  # fmt: skip
    metric, op, scale, sign, offset, bare, number = match.groups()
    if metric not in METRICS:
        raise UsageError(f"gate {text!r}: no metric {metric!r}", hint=f"metrics: {', '.join(METRICS)}")
    if metric in QUANTILES and op != "<=":
        raise UsageError(f"gate {text!r}: a latency gate is an upper limit", hint=f"write {metric} <= ...")
    if metric == DRIFT and (op != "<=" or number is None):
        raise UsageError(f"gate {text!r}: a drift gate is an upper limit on PSI, a number",
                         hint="e.g. --gate 'drift_psi <= 0.2'")  # fmt: skip
    text = " ".join(text.split())
    if scale is not None:
        return Gate(text, metric, op, float(scale), 0.0, True)
    if offset is not None:
        return Gate(text, metric, op, 1.0, float(offset) * (-1 if sign == "-" else 1), True)
    if bare is not None:
        return Gate(text, metric, op, 1.0, 0.0, True)
    return Gate(text, metric, op, 1.0, float(number), False)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Steps of percent (the last is 100: then the candidate becomes stable), the gates, and how
    much a step must have seen before the controller looks: devices of the candidate and minutes."""

    version: str
    steps: tuple[int, ...]
    gates: tuple[Gate, ...]
    min_devices: int
    min_minutes: float
    step: int = 0
    step_started: str = ""
    alpha: float = 0.05

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "steps": list(self.steps), "gates": [g.text for g in self.gates],
                "min_devices": self.min_devices, "min_minutes": self.min_minutes, "step": self.step,
                "step_started": self.step_started, "alpha": self.alpha}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        return cls(version=str(data["version"]), steps=tuple(int(s) for s in data["steps"]),
                   gates=tuple(parse_gate(g) for g in data["gates"]), min_devices=int(data["min_devices"]),
                   min_minutes=float(data["min_minutes"]), step=int(data["step"]),
                   step_started=str(data["step_started"]), alpha=float(data.get("alpha", 0.05)))  # fmt: skip

    @property
    def percent(self) -> int:
        return self.steps[self.step]


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise UsageError(f"--steps {text[:80]!r} is not rising percents ending at 100", hint="e.g. --steps 1,5,25,100")
    return steps


def alpha_at(alpha: float, look: int) -> float:
    """The error budget of look ``look`` (1, 2, ...): alpha * 6 / (pi^2 look^2), summing to alpha."""
    return alpha * 6 / (math.pi**2 * max(1, look) ** 2)


def wilson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """One-sided Wilson score bounds (lower, upper) of a share, each at level ``alpha``."""
    if trials <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - alpha)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def mover(hits: int, trials: int, base_hits: int, base_trials: int, scale: float,
          alpha: float) -> tuple[float, float, float]:  # fmt: skip
    """(estimate, lower, upper) of c - scale * s, the candidate's share c and stable's s, each
    bound one-sided at level ``alpha``: MOVER over the two shares' Wilson bounds."""
    c, s = hits / trials, base_hits / base_trials
    c_low, c_high = wilson(hits, trials, alpha)
    s_low, s_high = wilson(base_hits, base_trials, alpha)
    estimate = c - scale * s
    lower = estimate - math.sqrt((c - c_low) ** 2 + (scale * (s_high - s)) ** 2)
    upper = estimate + math.sqrt((c_high - c) ** 2 + (scale * (s - s_low)) ** 2)
    return estimate, lower, upper


def quantile_ranks(count: int, q: float, alpha: float) -> tuple[int, int] | None:
    """The ranks (1-based, in ``count`` sorted values) of the values that bound the q-quantile
    below and above, each one-sided at level ``alpha`` (the binomial rank by its normal
    approximation, widened by one rank each side); None when ``count`` is too small for either."""
    if count <= 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha)
    spread = z * math.sqrt(count * q * (1 - q))
    low, high = math.floor(count * q - spread) - 1, math.ceil(count * q + spread) + 1
    if low < 1 or high > count:
        return None
    return low, high
