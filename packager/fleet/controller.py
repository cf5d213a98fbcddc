"""The rollout controller: one pass (``tick``) over every gated rollout and experiment of a registry.

For each channel whose pointer carries a plan for its candidate, ``evaluate`` reads the fleet
numbers since the step began and tests each gate (``packager.fleet.gates``): a gate fails when
the candidate is worse than its limit with confidence, passes when it is within it with
confidence, and is undecided otherwise. Any failed gate halts the rollout (the candidate goes,
as ``packager rollback`` does); every gate passed moves to the next step (the last, 100%, makes
the candidate stable); anything else holds. A halt or a step is a new signed pointer whose
history entry holds the numbers behind it; a hold writes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packager.fleet import drift
from packager.fleet.aggregate import fleet, latency_ranks, slower_than
from packager.fleet.gates import DRIFT, QUANTILES, RATES, Gate, Plan, alpha_at, mover, quantile_ranks, wilson
from packager.registry import channels
from packager.registry.docs import Pointer, iso
from packager.registry.names import version_key
from packager.registry.store import Store


@dataclass(frozen=True)
class Verdict:
    gate: str
    verdict: str  # "pass", "fail", "undecided"
    value: float | None  # the candidate's figure (a share, or the share of calls over the limit)
    limit: float | None
    lower: float | None = None
    upper: float | None = None
    trials: int = 0


@dataclass(frozen=True)
class Decision:
    model: str
    channel: str
    action: str  # "advance", "promote", "halt", "hold"
    percent: int  # the candidate's share after this decision
    reason: str
    look: int = 0
    alpha: float = 0.0
    devices: int = 0
    minutes: float = 0.0
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    def record(self) -> dict[str, Any]:
        """What the pointer's history keeps of this decision."""
        return {"decision": self.action, "reason": self.reason, "look": self.look, "alpha": round(self.alpha, 6),
                "devices": self.devices, "minutes": round(self.minutes, 1),
                "gates": [{k: v for k, v in asdict(v).items() if v is not None} for v in self.verdicts]}  # fmt: skip


def evaluate(store: Store, pointer: Pointer, now: datetime, *, tick_minutes: float) -> Decision | None:
    """The decision for ``pointer``'s gated rollout at ``now``; None when it has none running."""
    if pointer.plan is None or pointer.candidate is None:
        return None
    plan = Plan.from_json(pointer.plan)
    if plan.version != pointer.candidate:
        return None  # a plan for a candidate since replaced (a publish): nothing to run
    started = datetime.strptime(plan.step_started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    minutes = max(0.0, (now - started).total_seconds() / 60)
    window = max(now - started, timedelta(minutes=1))
    rows = {
        (r["version"], r["variant"]): r for r in fleet(store, pointer.model, window, now=now, pointer=pointer)["rows"]
    }
    cand, stable = rows.get((plan.version, None)), rows.get((str(pointer.stable), None))
    devices = int(cand["devices"]) if cand else 0
    base: dict[str, Any] = {"model": pointer.model, "channel": pointer.channel, "devices": devices, "minutes": minutes}
    if minutes < plan.min_minutes or devices < plan.min_devices:
        why = (f"waiting: {devices} of {plan.min_devices} devices, {minutes:.0f} of {plan.min_minutes:g} minutes "
               f"at {plan.percent}%")  # fmt: skip
        return Decision(action="hold", percent=plan.percent, reason=why, **base)
    look = 1 + math.floor((minutes - plan.min_minutes) / max(tick_minutes, 1e-9))
    alpha = alpha_at(plan.alpha, look)
    verdicts = tuple(_check(g, cand or {}, stable or {}, alpha, store, pointer.model, plan.version, started, now)
                     for g in plan.gates)  # fmt: skip
    failed = [v.gate for v in verdicts if v.verdict == "fail"]
    common: dict[str, Any] = {**base, "look": look, "alpha": alpha, "verdicts": verdicts}
    if failed:
        return Decision(action="halt", percent=0, reason=f"gate failed: {'; '.join(failed)}", **common)
    if all(v.verdict == "pass" for v in verdicts):
        nxt = plan.steps[plan.step + 1] if plan.step + 1 < len(plan.steps) else 100
        action = "promote" if nxt == 100 else "advance"
        return Decision(action=action, percent=nxt, reason=f"every gate passed at {plan.percent}%", **common)
    open_gates = [v.gate for v in verdicts if v.verdict != "pass"]
    return Decision(action="hold", percent=plan.percent, reason=f"undecided: {'; '.join(open_gates)}", **common)


def _check(gate: Gate, cand: Mapping[str, Any], stable: Mapping[str, Any], alpha: float, store: Store, model: str,
           version: str, since: datetime, now: datetime) -> Verdict:  # fmt: skip
    limit = gate.limit(_number(stable.get(gate.metric)))
    if limit is None:
        return Verdict(gate.text, "undecided", None, None)
    if gate.metric == DRIFT:
        return _drift(gate.text, store, model, version, since, now, limit)
    if gate.metric in QUANTILES:  # p95 <= T exactly when at most 5% of calls take longer than T
        if gate.relative:
            return _slower_than_stable(gate, stable, alpha, store, model, version, since, now, limit)
        slower, trials = slower_than(store, model, version, since, now, limit)
        share_limit = 1 - QUANTILES[gate.metric]
        return _bounded(gate.text, "<=", slower, trials, share_limit, alpha, limit)
    hits, total = RATES[gate.metric]
    if gate.relative:
        return _against_stable(gate, cand, stable, alpha, limit)
    return _bounded(gate.text, gate.op, int(cand.get(hits) or 0), int(cand.get(total) or 0), limit, alpha, limit)


def _against_stable(gate: Gate, cand: Mapping[str, Any], stable: Mapping[str, Any], alpha: float,
                    limit: float) -> Verdict:  # fmt: skip
    """A rate against stable's: c - k*s against the offset, both samples' uncertainty in the
    bounds (MOVER). Reported in the candidate's terms: its share, the limit at stable's estimate,
    and the bounds of c - k*s moved by k*s."""
    hits, total = RATES[gate.metric]
    trials, base_trials = int(cand.get(total) or 0), int(stable.get(total) or 0)
    if trials == 0 or base_trials == 0:
        return Verdict(gate.text, "undecided", None, limit)
    _, lower, upper = mover(int(cand.get(hits) or 0), trials, int(stable.get(hits) or 0), base_trials,
                            gate.scale, alpha)  # fmt: skip
    shift = limit - gate.offset  # k times stable's share
    if gate.op == "<=":
        verdict = "fail" if lower > gate.offset else "pass" if upper <= gate.offset else "undecided"
    else:
        verdict = "fail" if upper < gate.offset else "pass" if lower >= gate.offset else "undecided"
    value = int(cand.get(hits) or 0) / trials
    return Verdict(gate.text, verdict, round(value, 6), round(limit, 6), round(lower + shift, 6),
                   round(upper + shift, 6), trials)  # fmt: skip


def _slower_than_stable(gate: Gate, stable: Mapping[str, Any], alpha: float, store: Store, model: str,
                        version: str, since: datetime, now: datetime, limit: float) -> Verdict:  # fmt: skip
    """A latency quantile against k times stable's: stable's quantile between distribution-free
    bounds (half the look's alpha), the candidate's share of calls over k times each bound
    (the other half). Fails only against the lenient limit, passes only against the strict one."""
    q = QUANTILES[gate.metric]
    ranks = quantile_ranks(int(stable.get("predicts") or 0), q, alpha / 2)
    found = None if ranks is None else latency_ranks(store, model, str(stable.get("version")), since, now, ranks)
    if found is None:
        return Verdict(gate.text, "undecided", None, limit)
    strict, lenient = (gate.scale * v + gate.offset for v in found)
    over_lenient, trials = slower_than(store, model, version, since, now, lenient)
    over_strict, _ = slower_than(store, model, version, since, now, strict)
    if trials == 0:
        return Verdict(gate.text, "undecided", None, limit)
    lower = wilson(over_lenient, trials, alpha / 2)[0]
    upper = wilson(over_strict, trials, alpha / 2)[1]
    verdict = "fail" if lower > 1 - q else "pass" if upper <= 1 - q else "undecided"
    return Verdict(gate.text, verdict, round(over_strict / trials, 6), round(limit, 6), round(lower, 6),
                   round(upper, 6), trials)  # fmt: skip


def _drift(text: str, store: Store, model: str, version: str, since: datetime, now: datetime,
           limit: float) -> Verdict:  # fmt: skip
    """The candidate's largest PSI (features with enough counted values) against ``limit``."""
    blob = store.get(version_key(model, version))
    doc = {} if blob is None else json.loads(blob.data)
    found = drift.report(store, model, {version: doc}, max(now - since, timedelta(minutes=1)), now)
    rows = [r for r in found["versions"].get(version, {}).get("features", []) if r["count"] >= drift.MIN_COUNT]
    if not rows:
        return Verdict(text, "undecided", None, limit)
    worst = max(float(r["psi"] or 0.0) for r in rows)
    counted = min(int(r["count"]) for r in rows)
    return Verdict(text, "fail" if worst > limit else "pass", round(worst, 6), limit, trials=counted)


def _bounded(text: str, op: str, hits: int, trials: int, share_limit: float, alpha: float,
             limit: float) -> Verdict:  # fmt: skip
    if trials == 0:
        return Verdict(text, "undecided", None, limit)
    lower, upper = wilson(hits, trials, alpha)
    if op == "<=":
        verdict = "fail" if lower > share_limit else "pass" if upper <= share_limit else "undecided"
    else:
        verdict = "fail" if upper < share_limit else "pass" if lower >= share_limit else "undecided"
    return Verdict(text, verdict, round(hits / trials, 6), round(limit, 6), round(lower, 6), round(upper, 6), trials)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def apply(store: Store, pointer: Pointer, decision: Decision, *, keys: Path | None, now: datetime) -> Pointer:
    """Write ``decision`` as a new pointer generation (nothing for a hold); a pointer that moved
    since it was evaluated is left alone."""
    if decision.action == "hold":
        return pointer
    plan = Plan.from_json(pointer.plan)

    def change(old: Pointer) -> Pointer:
        if old.generation != pointer.generation:
            return old  # another writer moved first: the next tick looks again
        record = {"record": decision.record()}
        # a shadow run of the candidate ends with it: halted, or now stable
        shadow = None if old.in_shadow(old.candidate) else old.shadow
        if decision.action == "halt":
            return old.next("halt", now, candidate=None, percent=0, plan=None, shadow=shadow, **record)
        if decision.action == "promote":
            return old.next("promote", now, stable=old.candidate, candidate=None, percent=0, plan=None,
                            shadow=shadow, **record)  # fmt: skip
        moved = replace(plan, step=plan.step + 1, step_started=iso(now))
        return old.next("advance", now, percent=moved.percent, plan=moved.to_json(), **record)

    return channels.update(store, pointer.model, pointer.channel, change, keys=keys, now=now)


def status(store: Store, pointer: Pointer, now: datetime, *, tick_minutes: float) -> dict[str, Any] | None:
    """The gated rollout of ``pointer`` as ``fleet status`` shows it: the plan, and what a tick
    would decide now (nothing is written)."""
    decision = evaluate(store, pointer, now, tick_minutes=tick_minutes)
    if decision is None:
        return None
    return {"plan": dict(pointer.plan or {}), "now": {"action": decision.action, "percent": decision.percent,
                                                      **decision.record()}}  # fmt: skip


def pointers(store: Store) -> list[Pointer]:
    """Every channel pointer of the registry."""
    found = []
    for key in store.list("models/"):
        parts = key.split("/")
        if len(parts) != 4 or parts[2] != "channels" or not parts[3].endswith(".json") or parts[3].count(".") != 1:
            continue
        found.append(channels.read_pointer(store, parts[1], parts[3][: -len(".json")]))
    return found


def tick(store: Store, *, keys: Path | None, now: datetime | None = None,
         tick_minutes: float = 5.0) -> list[Decision]:  # fmt: skip
    """One controller pass: every gated rollout evaluated and its decision written; every
    Thompson experiment whose epoch is over given its next allocation."""
    from packager.fleet.experiment import reallocate

    now = now or datetime.now(UTC)
    decisions = []
    for pointer in pointers(store):
        if pointer.plan is not None and pointer.candidate is not None:
            decision = evaluate(store, pointer, now, tick_minutes=tick_minutes)
            if decision is not None:
                apply(store, pointer, decision, keys=keys, now=now)
                decisions.append(decision)
        if pointer.experiment is not None:
            record = reallocate(store, pointer, now, keys=keys)
            if record is not None:
                shares = ", ".join(
                    f"{arm} {share:.1%}"
                    for arm, share in zip(pointer.experiment["arms"], record["allocation"], strict=True)
                )
                decisions.append(Decision(model=pointer.model, channel=pointer.channel, action="allocate", percent=0,
                                          reason=f"epoch {record['epoch']}: {shares}"))  # fmt: skip
    return decisions
